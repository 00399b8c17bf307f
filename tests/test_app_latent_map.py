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


def chart_spec(at) -> dict:
    import json

    return json.loads(next(c.proto.spec for c in at.get("plotly_chart") if '"spots"' in c.proto.spec))


def test_a_spot_typed_in_decodes_the_code_there():
    from explorer import spots

    at = open_app("latent_map")
    at.slider(key="map_points").set_value(500).run()
    assert not at.image
    assert any("Click anywhere on the map" in i.value for i in at.info)
    grid = next(t for t in chart_spec(at)["data"] if t.get("name") == "spots")
    assert grid["hoverinfo"] == "none" and grid["marker"]["opacity"] == 0          # invisible, but clickable
    assert grid["selected"]["marker"]["opacity"] > 0                              # a clicked spot shows,
    assert grid["selected"]["marker"]["size"] < 560 / spots.CLICK_GRID            # and a box's nodes don't merge
    at.number_input(key="map_spot_x").set_value(1.0)
    at.number_input(key="map_spot_y").set_value(-0.5).run()
    assert_clean(at)
    assert len(at.image) == 1
    assert at.image[0].captions[0].startswith("decoded at (1, -0.5); log p(z) under the prior")
    assert any("dropped ones are set to the mapped codes' mean" in c.value for c in at.caption)
    first = image_urls(at)
    at.number_input(key="map_spot_x").set_value(-2.0).run()
    assert image_urls(at) != first
    at.slider(key="map_points").set_value(600).run()         # another map: the old spot means nothing there
    assert at.number_input(key="map_spot_x").value is None and not at.image


def test_the_decoded_field_lays_images_over_the_priors_log_density():
    at = open_app("latent_map")
    at.slider(key="map_points").set_value(500).run()
    at.toggle(key="map_field").set_value(True).run()
    at.slider(key="map_field_tiles").set_value(6).run()
    assert_clean(at)
    spec = chart_spec(at)
    assert len(spec["layout"]["images"]) == 36
    assert all(i["source"].startswith("data:image/png;base64,") for i in spec["layout"]["images"])
    heat = next(t for t in spec["data"] if t["type"] == "heatmap")
    assert heat["colorbar"]["title"]["text"] == "log p(z), prior"
    assert spec["data"][0]["type"] == "heatmap"                  # under the click grid and the points


def test_a_click_is_read_from_the_chart_but_a_box_or_lasso_is_not():
    from explorer import spots

    click = {"selection": {"points": [{"curve_number": 0, "point_index": 5, "x": 1.5, "y": -2.0}], "box": [],
                           "lasso": []}}
    assert spots.clicked_spot(click) == (1.5, -2.0)
    lasso = {"selection": {"points": [{"x": 1.0, "y": 1.0}], "box": [], "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}}
    assert spots.clicked_spot(lasso) is None and spots.clicked_spot({"selection": {}}) is None
    fig = spots.add_click_grid(go.Figure([go.Scattergl(x=[0, 1], y=[0, 1], customdata=[10, 11])]), np.eye(2))
    assert fig.data[0].name == "spots" and len(fig.data[0].x) == spots.CLICK_GRID ** 2
    grid_click = {"selection": {"points": [{"curve_number": 0, "point_index": 3, "x": 0.1, "y": 0.2}]}}
    assert selection.selected_indices(grid_click, fig) == []        # a spot of the grid is no image


def test_a_run_folder_with_snapshots_plays_its_epochs(tmp_path):
    import json

    from tests.test_snapshots import tiny_run
    from vae_core.training.loop import train

    config, data = tiny_run(epochs=3)
    list(train(config, data, out_dir=tmp_path / "run"))
    at = open_app()
    at.sidebar.radio(key="model_kind").set_value("Folder").run()
    at.sidebar.text_input(key="model_folder").set_value(str(tmp_path / "run")).run()
    at.switch_page("explorer/pages/latent_map.py").run()
    assert_clean(at)
    assert "Training in motion" in [h.value for h in at.subheader]
    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if '"frames"' in c.proto.spec))
    assert [f["name"] for f in spec["frames"]] == ["0", "1", "2", "3"]
    assert [s["label"] for s in spec["layout"]["sliders"][0]["steps"]] == ["0", "1", "2", "3"]
    assert [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]] == ["Play", "Pause"]
    at2 = open_app("latent_map")                                                    # a shipped model kept none
    assert "Training in motion" not in [h.value for h in at2.subheader]


def test_above_the_point_budget_the_map_is_a_server_drawn_raster_that_pca_alone_draws(monkeypatch):
    import json

    monkeypatch.setenv("VAE_EXPLORER_MAX_MAP_POINTS", "1000")
    at = open_app("latent_map")
    assert_clean(at)
    assert at.slider(key="map_points").value == 5000 and at.slider(key="map_points").max == 5000
    assert "5,000 images of mnist-5k, PCA, drawn as a density raster" in caption(at)
    assert "mixes its images' class colours" in caption(at)
    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if '"spots"' in c.proto.spec))
    assert [i["source"][:22] for i in spec["layout"]["images"]] == ["data:image/png;base64,"]
    assert not any(t.get("customdata") for t in spec["data"])            # no point goes to the browser
    assert sorted(t["name"] for t in spec["data"] if t.get("name") != "spots") == [str(c) for c in range(10)]
    modes = next(c.proto.selection_mode for c in at.get("plotly_chart") if '"spots"' in c.proto.spec)
    assert len(modes) == 2                                              # points (a click) and box, no lasso
    at.selectbox(key="map_colour").set_value("none").run()
    assert "each pixel's shade counts its images, on a log scale" in caption(at)
    at.selectbox(key="map_colour").set_value("label").run()
    at.text_input(key="map_pick").set_value("3, 17").run()              # typed indices still show
    assert_clean(at)
    assert "2 images selected" in heading(at)
    at.radio(key="map_method").set_value("UMAP").run()
    assert any("above that the map is a density raster, drawn with PCA: choose PCA" in e for e in errors(at))
    at.radio(key="map_method").set_value("PCA").run()
    at.slider(key="map_points").set_value(1000).run()                    # within the budget: points again
    assert_clean(at)
    assert "drawn as a density raster" not in caption(at)
    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if '"spots"' in c.proto.spec))
    assert not spec["layout"].get("images")
    assert sum(1 for t in spec["data"] if t["type"] == "scattergl" and t.get("customdata")) == 10     # a trace a class
