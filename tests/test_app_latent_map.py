"""Latent map page: projections, background UMAP, selecting points, 2-D codes."""
import numpy as np
import plotly.graph_objects as go

from explorer import jobs, selection
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
    assert len(at.image) == 2                       # originals over reconstructions, then neighbours
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


def test_a_selection_is_read_over_every_trace_with_or_without_customdata():
    fig = go.Figure([go.Scattergl(x=[0, 1], y=[0, 1], customdata=[10, 11]),
                     go.Scattergl(x=[2, 3, 4], y=[2, 3, 4], customdata=[20, 21, 22])])
    event = {"selection": {"points": [
        {"curve_number": 0, "point_index": 1, "customdata": 11},
        {"curve_number": 1, "point_index": 2, "customdata": [22]},
        {"curve_number": 1, "point_index": 0},                          # customdata left out: found in the figure
        {"curve_number": 0, "point_index": 1, "customdata": 11},        # the same point twice counts once
        {"x": 1}]}}
    assert selection.selected_indices(event, fig) == [11, 22, 20]
    assert selection.selected_indices(None) == [] and selection.selected_indices({"selection": {}}) == []
    assert selection.parse_indices("1, 2 3") == [1, 2, 3]


def heading(at) -> str:
    return " ".join(h.value for h in at.subheader)


def test_a_selection_shows_its_true_count_a_page_at_a_time_with_neighbours_for_each_shown_image():
    at = open_app("latent_map")
    at.text_input(key="map_pick").set_value(", ".join(str(i) for i in range(100, 125))).run()
    assert_clean(at)
    assert "25 images selected" in heading(at)
    page = at.number_input(key="map_page")
    assert page.label == "Page (of 3)" and page.value == 1
    captions = [c for img in at.image for c in img.captions]
    assert any("originals (100, 101, 102, 103, 104, 105, 106, 107, 108, 109)" in c for c in captions)
    assert any("each row: a shown image" in c for c in captions)
    page.set_value(3).run()
    assert_clean(at)
    captions = [c for img in at.image for c in img.captions]
    assert any("originals (120, 121, 122, 123, 124)" in c for c in captions)
    assert any("Images 21 to 25 of 25" in c.value for c in at.caption)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Classes of the 25 selected images" in s for s in specs)         # the summary
    assert at.get("download_button") and at.button(key="map_to_traverse")


def test_indices_outside_the_dataset_or_the_map_are_explained():
    at = open_app("latent_map")
    at.slider(key="map_points").set_value(1000).run()
    mapped = set(jobs.queue().results.get(("codes", at.session_state["_ctx"].model_key,
                                           at.session_state["_ctx"].data_key, 1000))[1].tolist())
    unmapped = next(i for i in range(5000) if i not in mapped)
    at.text_input(key="map_pick").set_value(f"99999, {unmapped}").run()
    assert not at.exception
    notes = [w.value for w in at.warning]
    assert any("99,999 is not an image of mnist-5k: its images are numbered 0 to 4,999" in n for n in notes), notes
    assert any(f"{unmapped} is not among the 1,000 mapped points" in n for n in notes), notes
    assert not any("99,999 is not among" in n for n in notes)


def test_the_selections_mean_code_goes_to_traverse_and_to_interpolate():
    at = open_app("latent_map")
    at.text_input(key="map_pick").set_value("7, 8, 9").run()
    at.button(key="map_to_interp_a").click().run()
    assert any("Sent as Interpolate's A" in s.value for s in at.success)
    at.button(key="map_to_traverse").click().run()
    assert_clean(at)
    assert at.radio(key="traverse_base").value == "Latent map selection"
    assert any("base: the mean code of 3 selected images" in c.value for c in at.caption)
    at.switch_page("explorer/pages/interpolate.py").run()
    assert_clean(at)
    assert at.radio(key="interp_a_source").value == "Latent map selection"
    assert at.radio(key="interp_b_source").value == "Dataset"
    assert any("the mean code of 3 selected images to image 1" in c for img in at.image for c in img.captions)


def test_the_selection_csv_and_mean_code():
    import torch

    from vae_core import load_dataset

    data = load_dataset("mnist-5k", "test")
    text = selection.csv_bytes([0, 5], data).decode().splitlines()
    assert text[0] == "index,class" and text[1] == f"0,{data.class_names[int(data.labels[0])]}"
    codes = torch.arange(12.0).view(4, 3)
    assert selection.mean_code(codes, [0, 2], (3,)).tolist() == [[3.0, 4.0, 5.0]]
    s = selection.summarise(data, [0, 1, 2], np.arange(len(data)))
    assert s.counts.sum() == 3 and s.totals.sum() == len(data)


def test_a_dsprites_selection_is_summarised_by_its_factor_ranges():
    at = open_app("latent_map", model="dsprites-beta4")
    at.slider(key="map_points").set_value(300).run()
    assert at.sidebar.selectbox(key="dataset").value == "dsprites"
    mapped = jobs.queue().results.get(("codes", at.session_state["_ctx"].model_key,
                                       at.session_state["_ctx"].data_key, 300))[1].tolist()
    at.text_input(key="map_pick").set_value(", ".join(map(str, mapped[:12]))).run()
    assert_clean(at)
    assert "12 images selected" in heading(at)
    assert any("Factors of the 12 selected images" in c.proto.spec for c in at.get("plotly_chart"))
    assert any(c.value.startswith("Factor ranges: shape") for c in at.caption)
