"""State survives navigation, and a link reopens the view: every page, with every shipped checkpoint.

For each page and model: change every declared setting the page draws (explorer/page_settings.py),
visit another page and come back (the same values, the same images), then open the page's link
in a fresh session (the same values for what the link carries, the same images, no warning).

Excluded, to keep the sweep quick (each is covered elsewhere): projections that run in the
background (t-SNE, UMAP: tests/test_app_latent_map.py), analyses that take seconds (Factors,
Directions and factors, Disentanglement: tests/test_app_analyze.py), Local directions (they
differentiate the decoder: tests/test_app_traverse.py), and image sources other than the dataset
(an upload or a drawing cannot travel in a link; tests/test_links.py checks the sidebar says so), and
a spot decoded on the map (it starts empty; a link does not carry it, and the sidebar says so).
"""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from explorer import controls
from explorer.page_settings import PAGES, SOURCE
from explorer.session import CONTEXT_KEY
from tests.app_conftest_helpers import APP, ROOT, assert_clean, image_urls, open_app

CHECKPOINTS = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").exists())
SLOW = {"t-SNE", "UMAP", "Local", "Factor", "Factors", "Directions and factors", "Disentanglement"}
WIDGETS = ("slider", "number_input", "selectbox", "radio", "multiselect", "select_slider", "toggle", "text_input")


def _declared(page: str) -> dict[str, controls.Setting]:
    """Widget key -> its setting (a vector's sliders each under their own key)."""
    return {s.key: s for s in PAGES[page].settings}


def _setting_of(page: str, key: str):
    own = _declared(page)
    if key in own:
        return own[key]
    for s in own.values():
        if s.kind == "vector" and key.startswith(s.key) and key[len(s.key):].isdigit():
            return s
    return None


def _widgets(at, page: str) -> dict:
    """The page's declared widgets that this run drew, by key (the image sources aside: see above)."""
    out = {}
    for kind in WIDGETS:
        for el in getattr(at, kind):
            key = getattr(el, "key", None)
            if key and _setting_of(page, key) is not None and not key.endswith("_source") and \
                    not getattr(el.proto, "disabled", False):
                out[key] = el
    return out


def _another(at, page: str, key: str, el):
    """A value other than the widget's own, from its declaration, that costs little to draw."""
    s, v = _setting_of(page, key), el.value
    ctx = at.session_state[CONTEXT_KEY]
    lo, hi = s.resolve("lo", ctx, {}), s.resolve("hi", ctx, {})
    if s.widget in ("select", "radio", "select_slider", "multiselect"):
        options = list(range(lo, hi + 1)) if s.kind == "int" else list(s.resolve("options", ctx, {}))
        options = [o for o in options if str(o) not in SLOW and o != SOURCE]
        if s.kind == "choices":
            return [options[-1]] if v != [options[-1]] else [options[0]]
        return next((o for o in options if o != v), v)
    if s.kind == "bool":
        return not v
    if s.kind == "indices":            # two images on the map (its points: a seeded subset of the data)
        _, idx = ctx.data.seeded_subset(int(at.slider(key="map_points").value), seed=0)
        return ", ".join(map(str, idx[:2].tolist()))
    step = s.resolve("step", ctx, {}) or 1
    if s.kind == "vector" or s.widget == "slider":
        lo, hi = el.min, el.max
        new = lo + step if abs(v - (lo + step)) > 1e-9 else lo
        return new if isinstance(v, float) else int(new)
    return v + step if hi is None or v + step <= hi else v - step


def _change_everything(at, page: str) -> None:
    done = set()
    for turn in range(3):           # widgets that appear after another's change (a class pair, a field's size)
        todo = {k: el for k, el in _widgets(at, page).items() if k not in done and el.value is not None
                and (turn or _setting_of(page, k).kind != "indices")}     # images typed once the map is drawn
        if not todo:
            return
        for key, el in todo.items():
            el.set_value(_another(at, page, key, el))
            done.add(key)
        at.run()
        assert_clean(at)


def _values(at, page: str, linked_only: bool = False) -> dict:
    """The widgets' values, numbers as a link writes them (4 significant digits: what the page uses)."""
    return {k: controls.rounded(el.value) if isinstance(el.value, float) else el.value
            for k, el in _widgets(at, page).items() if not linked_only or _setting_of(page, k).param is not None}


def _open_link(page: str, query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    return at.switch_page(f"explorer/pages/{page}.py").run()


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("model", CHECKPOINTS)
def test_every_setting_survives_another_page_and_travels_in_the_link(model, page):
    at = open_app(page, model=model)
    assert_clean(at)
    _change_everything(at, page)
    values, images, query = _values(at, page), image_urls(at), dict(at.query_params)
    if page == "classes" and not values:           # an unconditional model: the page says why it has nothing
        assert any("no class variable" in i.value for i in at.info)
        return
    assert values, f"{page} drew none of its declared settings"

    elsewhere = "sample" if page != "sample" else "train"
    at.switch_page(f"explorer/pages/{elsewhere}.py").run()       # Streamlit forgets the page's widgets here
    at.switch_page(f"explorer/pages/{page}.py").run()
    assert_clean(at)
    assert _values(at, page) == values                         # the page kept them
    assert image_urls(at) == images                            # the same pixels
    assert dict(at.query_params) == query                      # and the address bar follows

    fresh = _open_link(page, query)
    assert_clean(fresh)
    assert [w.value for w in fresh.warning] == [w.value for w in at.warning]     # none about the link
    assert _values(fresh, page, linked_only=True) == _values(at, page, linked_only=True)
    assert image_urls(fresh) == images


def test_the_settings_the_issue_lost_come_back_after_another_page():
    """Issue 23's examples: Sample's seed 7, Interpolate's image A 321, Traverse's image 77, a slider
    edit and its direction kind, each after a visit to another page (and the address bar with them)."""
    at = open_app("sample")
    at.number_input(key="sample_seed").set_value(7).run()
    at.switch_page("explorer/pages/interpolate.py").run()
    at.number_input(key="interp_a_index").set_value(321).run()
    at.switch_page("explorer/pages/traverse.py").run()
    at.number_input(key="traverse_index").set_value(77).run()
    at.slider(key="traverse_z3").set_value(1.5).run()
    at.radio(key="traverse_dir_kind").set_value("Class A - B").run()
    at.switch_page("explorer/pages/latent_map.py").run()
    at.switch_page("explorer/pages/traverse.py").run()
    assert_clean(at)
    assert at.number_input(key="traverse_index").value == 77
    assert at.slider(key="traverse_z3").value == 1.5
    assert at.radio(key="traverse_dir_kind").value == "Class A - B"
    assert at.query_params["i"] == "77" and at.query_params["dir"] == "Class A - B"
    at.switch_page("explorer/pages/interpolate.py").run()
    assert at.number_input(key="interp_a_index").value == 321 and at.query_params["a"] == "321"
    at.switch_page("explorer/pages/sample.py").run()
    assert at.number_input(key="sample_seed").value == 7 and at.query_params["seed"] == "7"
