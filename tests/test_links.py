"""Links that reopen a view (explorer/links.py): visitor input checked, every page's state round-trips."""
import types
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import controls, links
from explorer.page_settings import PAGES
from tests.app_conftest_helpers import APP, ROOT, assert_clean, image_urls, open_app


class _Data:
    def __init__(self, n, labels):
        import torch
        self.n, self.labels = n, (torch.arange(labels) if labels else None)
        self.factors, self.factor_names, self.class_names = None, (), ()

    def __len__(self):
        return self.n


def _ctx(n_data=100, units=20, classes=0, labels=10):
    model = types.SimpleNamespace(latent_shape=(units,), num_classes=classes)
    return types.SimpleNamespace(model=model, data=_Data(n_data, labels), info=None, model_key="m")


def test_valid_parameters_are_written_to_the_page_and_its_widgets():
    state = {}
    problems = links.restore(links.page("traverse"), _ctx(),
                             {"base": "Zero", "i": "99", "seed": "7", "z": ",".join(["0.5"] * 20), "dir": "Local",
                              "d": "1.0,-2.0", "rows": "3", "cols": "5"}, state)
    assert problems == []
    assert state["traverse_base"] == "Zero" and state["traverse_index"] == 99 and state["traverse_seed"] == 7
    assert state["traverse_rows"] == 3 and state["traverse_cols"] == 5 and state["traverse_dir_kind"] == "Local"
    assert state["traverse_z19"] == 0.5 and state["traverse_dir1"] == -2.0
    kept = controls.kept("traverse", state)
    assert kept["traverse_z"] == [0.5] * 20 and kept["traverse_z_linked"]      # the page keeps them over its base


@pytest.mark.parametrize("param, raw, says", [
    ("i", "100", "from 0 to 99"), ("i", "-1", "from 0 to 99"), ("i", "3.5", "whole number"),
    ("seed", "abc", "whole number"), ("z", "0.1,0.2", "20 comma-separated"), ("z", ",".join(["nan"] * 20), "from -4"),
    ("z", ",".join(["1e400"] * 20), "from -4"), ("cols", "4", "multiple of 2"), ("base", "From the latent map", "one of"),
    ("dir", "<script>", "one of"), ("d", ",".join(["0"] * 65), "at most 64"), ("class", "0", "does not apply"),
    ("i", "9" * 5000, "longer than"), ("from", "1,2,100", "from 0 to 99"),
    ("from", ",".join(["1"] * 201), "at most 200"),
    ("seed", "99999999999", "must be from 0 to 2,147,483,647"),          # an integer written as one
])
def test_a_bad_parameter_is_dropped_with_a_message_that_names_it(param, raw, says):
    state = {}
    problems = links.restore(links.page("traverse"), _ctx(), {param: raw}, state)
    assert len(problems) == 1 and says in problems[0] and (param in problems[0] or "longer" in says), problems
    assert not [k for k in state if k != controls.KEPT] and not controls.kept("traverse", state)


@pytest.mark.parametrize("raw", ["../../etc/passwd", "/etc", "~/runs/x", "tests/fixtures", "checkpoints/mnist-mlp",
                                 "C:\\x"])
def test_a_link_never_names_a_file_on_the_server(raw):
    state = {}
    problems = links.restore(links.page("sidebar"), None, {"model": raw, "hub": raw, "data": raw}, state)
    assert len(problems) == 3 and not [k for k in state if k != controls.KEPT]
    assert all("model_folder" not in k for k in state)


def test_hub_models_and_revisions_are_checked():
    state = {}
    assert links.restore(links.page("sidebar"), None, {"hub": "org/my.vae-1", "rev": "v1.0"}, state) == []
    assert state["model_kind"] == "Hub" and state["model_hub"] == "org/my.vae-1" and state["model_revision"] == "v1.0"
    assert len(links.restore(links.page("sidebar"), None, {"rev": "../x"}, {})) == 1


def test_state_round_trips_through_the_query_with_short_numbers():
    state = {"model_kind": "Shipped", "model_shipped": "mnist-mlp", "dataset": "mnist-5k", "split": "all",
             "traverse_base": "Random sample", "traverse_seed": 3, "traverse_z0": 0.1 + 0.2, "traverse_z1": -1.0,
             "traverse_dir_kind": "Principal", "traverse_dir0": 0.5}
    query = {**links.current(links.page("sidebar"), None, state), **links.current(links.page("traverse"), None, state)}
    assert "hub" not in query and query["z"] == "0.3,-1" and query["d"] == "0.5"        # 4 significant digits
    back = {}
    assert links.restore(links.page("sidebar"), None, query, back) == []
    assert links.restore(links.page("traverse"), _ctx(units=2), query, back) == []
    assert back["traverse_z0"] == 0.3 and back["traverse_seed"] == 3 and back["model_shipped"] == "mnist-mlp"


def test_links_know_no_page_keys():
    """links.py is a mechanism over the declarations: no widget key of any page is spelled in it."""
    source = Path(ROOT, "explorer/links.py").read_text()
    keys = [s.key for p in PAGES.values() for s in p.settings]
    assert keys and not [k for k in keys if f'"{k}' in source]


# ---------------------------------------------------------------------------------------------
# AppTest: a link opened in a new session draws the same images


def _open_link(page: str, query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    return at.switch_page(f"explorer/pages/{page}.py").run()


def _round_trip(at, page):
    assert_clean(at)
    query, urls = dict(at.query_params), image_urls(at)
    again = _open_link(page, query)
    assert_clean(again)
    assert not again.warning, [w.value for w in again.warning]
    assert image_urls(again) == urls                     # media URLs are content hashes: the same pixels
    assert dict(again.query_params) == query
    return query


def test_sample_link():
    at = open_app("sample", model="mnist-cvae")
    at.number_input(key="sample_seed").set_value(11).run()
    at.slider(key="sample_temperature").set_value(0.7).run()
    at.selectbox(key="sample_class").set_value(4).run()
    q = _round_trip(at, "sample")
    assert q["model"] == "mnist-cvae" and q["seed"] == "11" and q["class"] == "4"


def test_traverse_link_with_unit_and_direction_sliders():
    at = open_app("traverse")
    at.number_input(key="traverse_index").set_value(12).run()
    at.slider(key="traverse_z7").set_value(2.5).run()
    at.radio(key="traverse_dir_kind").set_value("Local").run()
    at.slider(key="traverse_dir0").set_value(-1.5).run()
    q = _round_trip(at, "traverse")
    assert q["i"] == "12" and q["dir"] == "Local" and q["d"].startswith("-1.5,")


def test_interpolate_link():
    at = open_app("interpolate")
    at.number_input(key="interp_a_index").set_value(3).run()
    at.number_input(key="interp_b_index").set_value(40).run()
    at.slider(key="interp_steps").set_value(6).run()
    at.radio(key="interp_method").set_value("spherical").run()
    q = _round_trip(at, "interpolate")
    assert (q["a"], q["b"], q["steps"], q["path"]) == ("3", "40", "6", "spherical")


def test_latent_map_link_carries_the_selection():
    at = open_app("latent_map")
    at.text_input(key="map_pick").set_value("3, 17, 42").run()
    at.selectbox(key="map_colour").set_value("none").run()
    q = _round_trip(at, "latent_map")
    assert q["pick"] == "3,17,42" and q["method"] == "PCA" and q["colour"] == "none"


def test_analyze_link():
    at = open_app("analyze")
    at.number_input(key="an_seed").set_value(5).run()
    at.multiselect(key="an_pick").set_value(["Reconstructions"]).run()
    at.slider(key="an_recon_count").set_value(8).run()
    q = _round_trip(at, "analyze")
    assert q["show"] == "Reconstructions" and q["seed"] == "5" and q["recon"] == "8"


def test_a_bad_link_gives_one_message_and_the_defaults():
    at = _open_link("traverse", {"model": "../../etc/passwd", "data": "mnist-5k", "i": "99999", "z": "1,2",
                                 "base": "Zero", "secret": "x"})
    assert not at.exception and not at.error
    assert len(at.warning) == 1
    text = at.warning[0].value
    assert "model must be one of" in text and "mnist-mlp" in text and "i must be from 0 to" in text
    assert "z must hold 20" in text and "no setting called secret" in text
    assert at.sidebar.selectbox(key="model_shipped").value == "mnist-mlp"       # the default
    assert at.radio(key="traverse_base").value == "Zero"                         # the valid part is used
    at.slider(key="traverse_rows").set_value(3).run()
    assert not at.warning                                                         # said once, not on every rerun


def test_a_link_names_its_dataset_over_the_models_own():
    at = _open_link("sample", {"model": "mnist-mlp", "data": "digits"})
    assert at.sidebar.selectbox(key="dataset").value == "digits"


def test_a_latent_map_selection_travels_as_indices_up_to_a_limit():
    page = links.page("latent_map")
    assert links.current(page, None, {"map_pick": "4 , 8"})["pick"] == "4,8"                      # typed
    chart = {controls.KEPT: {"latent_map": {"map_selected": [5, 9, 40]}}}                          # lassoed
    assert links.current(page, None, chart)["sel"] == "5,9,40"
    too_many = {controls.KEPT: {"latent_map": {"map_selected": list(range(controls.MAX_INDICES + 1))}}}
    assert "sel" not in links.current(page, None, too_many)
    assert links.left_out(page, too_many) == [f"the selection of {controls.MAX_INDICES + 1} images (a link carries "
                                              "at most 200; select fewer to share them)"]
    back = {}
    assert links.restore(page, _ctx(), {"pick": "5,9,40", "sel": "1,2"}, back) == []
    assert back["map_pick"] == "5, 9, 40" and controls.kept("latent_map", back)["map_selected"] == [1, 2]


def test_a_selection_too_large_for_a_link_is_left_out_and_the_sidebar_says_so():
    at = open_app("latent_map")
    n = controls.MAX_INDICES + 50
    at.text_input(key="map_pick").set_value(", ".join(map(str, range(n)))).run()
    assert_clean(at)
    assert "pick" not in at.query_params
    assert any(f"leaves out the selection of {n} images" in c.value for c in at.sidebar.caption)
    at.text_input(key="map_pick").set_value("3, 17").run()                  # a selection it carries: no note
    assert at.query_params["pick"] == "3,17"
    assert not any("leaves out" in c.value for c in at.sidebar.caption)


def test_a_run_folder_model_is_left_out_of_the_link_and_the_sidebar_says_so(tmp_path):
    from vae_core import open_model, save_pretrained

    model, _ = open_model("mnist-mlp")
    save_pretrained(model, tmp_path / "run")
    at = open_app("sample")
    at.sidebar.radio(key="model_kind").set_value("Folder").run()
    at.sidebar.text_input(key="model_folder").set_value(str(tmp_path / "run")).run()
    assert_clean(at)
    assert "model" not in at.query_params and "hub" not in at.query_params
    assert not any(str(tmp_path) in v for v in at.query_params.values())
    assert any("this model is not in it" in c.value for c in at.sidebar.caption)


def test_an_analysis_the_dataset_does_not_offer_is_refused_by_the_link():
    at = _open_link("analyze", {"show": "Reconstructions,Disentanglement", "n": "250"})   # mnist: no factors
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and "show may hold only" in at.warning[0].value
    assert at.multiselect(key="an_pick").value == ["Latent units", "Reconstructions"]         # the default
    assert at.select_slider(key="an_n").value == 250


def test_class_and_style_link():
    at = open_app("classes", model="mnist-m2")
    at.slider(key="classes_styles").set_value(3).run()
    at.slider(key="classes_temperature").set_value(0.6).run()
    at.number_input(key="classes_seed").set_value(9).run()
    at.number_input(key="style_src_index").set_value(21).run()
    at.radio(key="classes_given").set_value("its label").run()
    q = _round_trip(at, "classes")
    assert (q["styles"], q["t"], q["seed"], q["i"], q["given"]) == ("3", "0.6", "9", "21", "its label")


def test_augment_link():
    at = open_app("augment", model="mnist-cvae")
    at.number_input(key="aug_src_index").set_value(14).run()
    at.slider(key="aug_scale").set_value(2.0).run()
    at.slider(key="aug_count").set_value(8).run()
    at.number_input(key="aug_seed").set_value(4).run()
    at.radio(key="aug_mode").set_value("prior").run()
    q = _round_trip(at, "augment")
    assert (q["i"], q["spread"], q["n"], q["seed"], q["from"]) == ("14", "2", "8", "4", "prior")


def test_the_hierarchical_inspectors_controls_travel_in_links():
    at = open_app("sample", model="mnist-hvae")
    at.slider(key="sample_layer_temperature_0").set_value(0.0).run()
    at.slider(key="sample_resample_rows").set_value(2).run()
    q = _round_trip(at, "sample")
    assert q["layers"].startswith("0,") and q["rr"] == "2"
    at = open_app("traverse", model="mnist-hvae")
    at.radio(key="traverse_layer").set_value(1).run()
    at.slider(key="traverse_layer_rows").set_value(3).run()
    q = _round_trip(at, "traverse")
    assert (q["layer"], q["lrows"]) == ("1", "3")


# ---------------------------------------------------------------------------------------------
# A link is a stranger's text: its names and values are shown literally in the warning


@pytest.mark.parametrize("query", [
    {"**Your session expired.** [Log in again](https://evil.example/login)": "1"},
    {"model": "[Fix it here](https://evil.example/x)"},
    {"data": "![x](https://evil.example/pixel.png)"},
    {"<img src=https://evil.example/p.png>": "`x`"},
])
def test_a_links_text_is_shown_literally_in_its_warning(query):
    from tests.test_text import shown, unescaped_punctuation

    at = _open_link("sample", query)
    assert not at.exception and not at.error
    assert len(at.warning) == 1
    text = at.warning[0].value
    for visitor in [*query, *query.values()]:
        if len(visitor) > 3:
            assert visitor[:40] in shown(text)          # shown, as its own characters
    assert unescaped_punctuation(text) == []            # all of it plain text: no link, image, emphasis or HTML
    assert "evil.example" in shown(text)


def test_a_hub_id_typed_or_linked_is_shown_literally_in_the_sidebar():
    from tests.test_text import unescaped_punctuation

    at = open_app("sample")
    at.sidebar.radio(key="model_kind").set_value("Hub").run()
    at.sidebar.text_input(key="model_hub").set_value("**evil**/[x](https://evil.example)").run()
    assert not at.exception
    shown = [e.value for e in at.sidebar.error] + [i.value for i in at.info]
    assert shown and all(unescaped_punctuation(v) == [] for v in shown), shown


# ---------------------------------------------------------------------------------------------
# Issue 23's "What was seen", one test each (items 1 and 4: above, and tests/test_app_state.py)


@pytest.mark.parametrize("model, own", [("mnist-hvae", "Layers"), ("mnist-vq", "Codebook")])
def test_an_analyze_link_names_every_analysis_the_page_offers_for_the_model(model, own):
    at = open_app("analyze", model=model)
    at.select_slider(key="an_n").set_value(250).run()
    assert own in at.multiselect(key="an_pick").value          # the page's default for this model
    again = _open_link("analyze", dict(at.query_params))
    assert_clean(again)
    assert not [w.value for w in again.warning if "link" in w.value]     # (an analysis may warn about the model)
    assert own in again.multiselect(key="an_pick").value


def test_a_traverse_base_from_a_map_selection_travels_as_its_images():
    at = open_app("latent_map")
    at.text_input(key="map_pick").set_value("7, 8, 9").run()
    at.button(key="map_to_traverse").click().run()
    assert_clean(at)
    q = dict(at.query_params)
    assert q["base"] == "Latent map selection" and q["from"] == "7,8,9"
    caption = [c.value for c in at.caption if "base:" in c.value]
    images = image_urls(at)
    at.switch_page("explorer/pages/latent_map.py").run()                     # and back: the same base, pixels
    at.switch_page("explorer/pages/traverse.py").run()
    assert at.radio(key="traverse_base").value == "Latent map selection"
    assert [c.value for c in at.caption if "base:" in c.value] == caption and image_urls(at) == images
    again = _round_trip(at, "traverse")
    assert again["from"] == "7,8,9"
    fresh = _open_link("traverse", q)
    assert fresh.radio(key="traverse_base").value == "Latent map selection"
    assert [c.value for c in fresh.caption if "base:" in c.value] == caption      # not "base: image 0"
    assert "the mean code of 3 selected images" in caption[0]


def test_a_map_selection_too_large_for_a_link_leaves_the_traverse_base_out_and_says_so():
    at = open_app("latent_map")
    n = controls.MAX_INDICES + 1
    at.slider(key="map_points").set_value(1000).run()
    picked = ", ".join(map(str, at.session_state["_ctx"].data.seeded_subset(1000, seed=0)[1][:n].tolist()))
    at.text_input(key="map_pick").set_value(picked).run()
    at.button(key="map_to_traverse").click().run()
    assert_clean(at)
    assert at.radio(key="traverse_base").value == "Latent map selection"
    assert "from" not in at.query_params
    assert any(f"leaves out the base code's selection of {n} images" in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("source", ["Upload", "Draw"])
def test_an_interpolate_link_says_it_leaves_out_an_uploaded_or_drawn_image(source):
    at = open_app("interpolate")
    if source not in at.radio(key="interp_a_source").options:
        pytest.skip("the drawing canvas is not installed")
    at.radio(key="interp_a_source").set_value(source).run()
    assert "a" not in at.query_params
    assert any("leaves out image A (an upload, a drawing or a code from the latent map" in c.value
               for c in at.sidebar.caption)
    at.radio(key="interp_a_source").set_value("Dataset").run()
    assert at.query_params["a"] == "0" and not any("leaves out" in c.value for c in at.sidebar.caption)


def test_an_interpolate_link_says_it_leaves_out_a_code_from_the_map():
    at = open_app("latent_map")
    at.text_input(key="map_pick").set_value("7, 8, 9").run()
    at.button(key="map_to_interp_b").click().run()
    at.switch_page("explorer/pages/interpolate.py").run()
    assert at.radio(key="interp_b_source").value == "Latent map selection"
    assert any("leaves out image B" in c.value for c in at.sidebar.caption)


def test_the_latent_maps_chart_selection_comes_back_after_another_page():
    """AppTest cannot lasso: the page's own record of the chart's selection stands in for one, as it is
    when the chart (whose state Streamlit forgets on another page) comes back without a selection."""
    at = open_app("latent_map")
    at.slider(key="map_points").set_value(100).run()
    mapped = at.session_state["_ctx"].data.seeded_subset(100, seed=0)[1][:3].tolist()
    at.switch_page("explorer/pages/sample.py").run()
    kept = at.session_state[controls.KEPT]
    kept["latent_map"]["map_selected"] = mapped
    at.session_state[controls.KEPT] = kept
    at.switch_page("explorer/pages/latent_map.py").run()
    assert_clean(at)
    assert at.slider(key="map_points").value == 100
    assert any("3 images selected" in h.value for h in at.subheader)
    assert at.query_params["sel"] == ",".join(map(str, mapped))
    at.run()                                                   # a rerun keeps it too
    assert any("3 images selected" in h.value for h in at.subheader)


def test_a_spot_decoded_on_the_map_is_kept_across_pages_and_named_as_left_out_of_the_link():
    at = open_app("latent_map")
    at.slider(key="map_points").set_value(100).run()
    at.number_input(key="map_spot_x").set_value(0.5).run()
    at.number_input(key="map_spot_y").set_value(-0.25).run()
    assert_clean(at)
    assert any("leaves out the spot decoded on the map" in c.value for c in at.sidebar.caption)
    at.switch_page("explorer/pages/sample.py").run()
    at.switch_page("explorer/pages/latent_map.py").run()
    assert (at.number_input(key="map_spot_x").value, at.number_input(key="map_spot_y").value) == (0.5, -0.25)
