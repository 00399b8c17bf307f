"""Latent map page: projections, background UMAP, selecting points, 2-D codes."""
from explorer import jobs, widgets
from tests.app_conftest_helpers import assert_clean, errors, image_urls, open_app

MAP_TIMEOUT = 120       # a fresh machine compiles umap-learn's numba code on its first map


def background_note(at) -> bool:
    """The progress bar of a slow map, standing over the PCA map meanwhile."""
    return any("PCA is shown until it is ready" in p.proto.text for p in at.get("progress"))


def wait_for_maps(at):
    """Wait until the server's job queue has no map waiting or running, then rerun the page."""
    assert jobs.queue().wait_idle(MAP_TIMEOUT), "the background map did not finish"
    at.run()


def chart(at):
    return [e for e in at.main if getattr(e, "key", None) == "map_chart"] or at.get("plotly_chart")


def test_pca_map_and_showing_points_by_index():
    at = open_app("latent_map")
    assert_clean(at)
    assert chart(at)
    assert at.slider(key="map_points").value == 5000
    assert at.selectbox(key="map_colour").value == "label"
    at.text_input(key="map_pick").set_value("3, 17").run()
    assert_clean(at)
    assert len(at.image) == 2                       # originals + reconstructions, then neighbours
    before = image_urls(at)
    at.slider(key="map_k").set_value(3).run()
    assert image_urls(at)[1] != before[1]
    at.text_input(key="map_pick").set_value("three").run()
    assert any("not a list of image indices" in e for e in errors(at))


def caption(at) -> str:
    return " ".join(c.value for c in at.caption)


def test_umap_runs_in_the_background_and_then_shows():
    at = open_app("latent_map")
    at.slider(key="map_points").set_value(300).run()
    at.radio(key="map_method").set_value("UMAP").run()
    assert not at.exception
    if background_note(at):                                     # (a kept map comes back at once)
        assert "300 images of mnist-5k, PCA" in caption(at)      # PCA stands in meanwhile
        wait_for_maps(at)
    assert_clean(at)
    assert not background_note(at)
    assert "300 images of mnist-5k, UMAP" in caption(at)
    at.slider(key="map_neighbors").set_value(5).run()           # new parameters: a new map
    assert not at.exception


def test_tsne_on_few_points():
    at = open_app("latent_map")
    at.slider(key="map_points").set_value(200).run()
    at.radio(key="map_method").set_value("t-SNE").run()
    at.slider(key="map_perplexity").set_value(10.0).run()
    wait_for_maps(at)
    assert_clean(at)
    assert not background_note(at)
    assert "200 images of mnist-5k, t-SNE" in caption(at)


def test_two_dimensional_codes_with_the_prior():
    at = open_app("latent_map", model="mnist-mlp-2d")
    assert at.radio(key="map_method").options[0] == "Codes (2-D latent)"
    at.radio(key="map_method").set_value("Codes (2-D latent)").run()
    assert_clean(at)


def test_selection_helpers():
    event = {"selection": {"points": [{"customdata": 4}, {"customdata": [9]}, {"x": 1}]}}
    assert widgets.selected_points(event) == [4, 9]
    assert widgets.selected_points(None) == []
    assert widgets.parse_indices("1, 2 3") == [1, 2, 3]
