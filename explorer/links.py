"""Links that reopen a view: each page's state in the URL's query parameters.

The page itself is the URL's path (Streamlit's routing: ``/traverse``); the query holds the model
(a shipped name, or a Hub repo id and revision: never a folder on the server), the dataset and
split, and the page's seed, view-defining sliders and selection. Every run writes the current
state to the address bar (``publish``); a session's first run reads it back (``restore``), so a
copied link opened anywhere, on a fresh server too, draws the same images.

A link is visitor input. Each parameter is parsed against the same bounds as its widget (a
dataset image index against the dataset's length, a class against the model's classes, the
unit sliders against the latent size); a bad one is dropped with one message naming it and its
default stands; nothing in a link names a file on the server, and nothing is read before it is
validated. Parameters are read once per session (a reloaded page is a new session).
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import streamlit as st

from explorer.text import literal

RESTORED_KEY = "_links_restored"     # per session: the link was read (on the session's first run)
MAP_SELECTION_KEY = "_links_map_selection"   # per session: the latent map's current selection
LATE_KEY = "_links_late"             # per session: values a page applies after it sets its own defaults
MAX_PARAM_CHARS = 4000               # a longer parameter is refused before it is parsed
MAX_VECTOR = 64                      # numbers in one slider vector (the unit sliders of a 64-unit model)
MAX_INDICES = 200                    # a selection in a link: at most this many image indices
# The bounds of the pages' widgets that a link sets (tests/test_links.py checks them against the pages)
TRAVERSE_BASES = ("Dataset image", "Random sample", "Zero")
TRAVERSE_RANGE = 4.0
TRAVERSE_STEPS = 9
TRAVERSE_PLANE = 10
DIRECTION_KINDS = ("Principal", "Local", "Factor", "Class A - B")
INTERPOLATE_STEPS = 24
MAP_METHODS = ("PCA", "t-SNE", "UMAP")
MAP_CODES_2D = "Codes (2-D latent)"
ANALYZE_DSPRITES = ("shape", "scale", "orientation", "posX", "posY")
CLASSES_GIVEN = ("the predicted class", "its label")
AUGMENT_SPREAD, AUGMENT_IMAGES, AUGMENT_FROM = 3.0, 64, ("posterior", "prior")
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
REVISION = re.compile(r"[\w][\w.\-/]{0,99}")


class LinkError(ValueError):
    """One parameter of a link is not valid; the message says what was expected."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One query parameter: how to read it from session state, and how to check it and write it back.

    ``parse(raw, ctx)`` returns {session key: value} or raises LinkError; ``show(state)`` returns
    the parameter's text or None when it is not part of the current view. ``late``: the page
    applies the values itself (``apply_late``), after it has set its own defaults."""
    param: str
    parse: Callable[[str, object], dict]
    show: Callable[[Mapping], str | None]
    late: bool = False
    left_out: Callable[[Mapping], str | None] = lambda s: None   # what of the view the link cannot carry


def _number(raw: str, kind, lo, hi, what: str):
    if hi < lo:
        raise LinkError(f"{what} does not apply to this model and data")
    try:
        v = kind(raw)
    except ValueError:
        raise LinkError(f"{what} must be {'a whole number' if kind is int else 'a number'}") from None
    if not (isinstance(v, int) or math.isfinite(v)) or not lo <= v <= hi:
        raise LinkError(f"{what} must be from {lo:g} to {hi:g}")
    return v


def integer(param: str, key: str, lo, hi, step: int = 1) -> Field:
    """``lo`` and ``hi`` may be functions of the context (e.g. of the dataset's length)."""
    def parse(raw, ctx):
        bottom, top = (lo(ctx) if callable(lo) else lo), (hi(ctx) if callable(hi) else hi)
        v = _number(raw, int, bottom, top, param)
        if (v - bottom) % step:
            raise LinkError(f"{param} must be {bottom} plus a multiple of {step}")
        return {key: v}
    return Field(param, parse, lambda s: str(int(s[key])) if key in s else None)


def number(param: str, key: str, lo: float, hi: float) -> Field:
    return Field(param, lambda raw, ctx: {key: float(_number(raw, float, lo, hi, param))},
                 lambda s: repr(float(s[key])) if key in s else None)


def choice(param: str, key: str, options) -> Field:
    """``options``: a sequence or a function of the context."""
    def parse(raw, ctx):
        opts = list(options(ctx) if callable(options) else options)
        for o in opts:
            if str(o) == raw:
                return {key: o}
        raise LinkError(f"{param} must be one of {', '.join(map(str, opts[:12]))}" + (", ..." if len(opts) > 12 else ""))
    return Field(param, parse, lambda s: str(s[key]) if key in s else None)


def choices(param: str, key: str, options) -> Field:
    """A multiselect's values, joined by commas; ``options`` may be a function of the context."""
    def parse(raw, ctx):
        opts = list(options(ctx) if callable(options) else options)
        picked = [p for p in raw.split(",") if p]
        bad = [p for p in picked if p not in opts]
        if bad:
            raise LinkError(f"{param} may hold only {', '.join(opts)} here")
        return {key: picked}
    return Field(param, parse, lambda s: ",".join(s[key]) if key in s else None)


def vector(param: str, prefix: str, count: Callable[[object], int] | None, lo: float, hi: float,
           late: bool = True) -> Field:
    """Numbered sliders ``prefix0``, ``prefix1``, ...: comma-separated values, one per slider
    (``count`` of them; None: as many as the page draws later, at most MAX_VECTOR)."""
    def parse(raw, ctx):
        parts = raw.split(",")
        if count is not None and len(parts) != count(ctx):
            raise LinkError(f"{param} must hold {count(ctx)} comma-separated numbers for this model, "
                            f"got {len(parts)}")
        if count is None and len(parts) > MAX_VECTOR:
            raise LinkError(f"{param} may hold at most {MAX_VECTOR} numbers")
        return {f"{prefix}{i}": float(_number(p, float, lo, hi, param)) for i, p in enumerate(parts)}

    def show(s):
        vals, i = [], 0
        while f"{prefix}{i}" in s:
            vals.append(repr(float(s[f"{prefix}{i}"])))
            i += 1
        return ",".join(vals) if vals else None
    return Field(param, parse, show, late)


def indices(param: str, key: str, size: Callable[[object], int], selected_key: str | None = None) -> Field:
    """A selection of dataset images, restored as the text of an index box (``3, 17, 42``); shown
    from ``selected_key`` (the page's whole selection, however it was made) where the page keeps it."""
    def parse(raw, ctx):
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if len(parts) > MAX_INDICES:
            raise LinkError(f"{param} may name at most {MAX_INDICES} images")
        n = size(ctx)
        vals = [_number(p, int, 0, n - 1, param) for p in parts]
        return {key: ", ".join(map(str, vals))}

    def show(s):
        if selected_key is not None and s.get(selected_key) is not None:
            chosen = list(s[selected_key])
            return ",".join(map(str, chosen)) if 0 < len(chosen) <= MAX_INDICES else None
        text = str(s.get(key) or "").strip()
        return re.sub(r"\s*,\s*", ",", text) if text else None

    def left_out(s):
        n = len(s.get(selected_key) or ()) if selected_key is not None else 0
        return (f"the selection of {n:,} images (a link carries at most {MAX_INDICES}; select fewer to share "
                "them)") if n > MAX_INDICES else None
    return Field(param, parse, show, left_out=left_out)


def remember_selection(picked) -> None:
    """The latent map's selection (typed, clicked, boxed or lassoed), for its link."""
    st.session_state[MAP_SELECTION_KEY] = [int(i) for i in picked]


# ---------------------------------------------------------------------------------------------
# What each page's link holds


def _shipped(ctx):
    from explorer import loaders
    return loaders.shipped_checkpoints()


def _datasets(ctx):
    from vae_core.data import app_datasets
    return app_datasets()


def _model_fields() -> tuple[Field, ...]:
    def parse_model(raw, ctx):
        if raw not in _shipped(ctx):
            raise LinkError("model must name a shipped checkpoint (" + ", ".join(_shipped(ctx)) + ")")
        return {"model_kind": "Shipped", "model_shipped": raw}

    def parse_hub(raw, ctx):
        if not REPO_ID.fullmatch(raw):
            raise LinkError("hub must be a Hub repo id, org/name")
        # The model loader opens an existing local folder before it asks the Hub: a link's id must
        # not be one (nor inside one) on this server.
        if Path(raw).exists() or Path(raw).parent.exists():
            raise LinkError("hub must be a Hub repo id, and this one is also a path on the server")
        return {"model_kind": "Hub", "model_hub": raw}

    def parse_rev(raw, ctx):
        if not REVISION.fullmatch(raw) or ".." in raw:
            raise LinkError("rev must be a Hub branch, tag or commit")
        return {"model_revision": raw}

    kind = lambda s: s.get("model_kind", "Shipped")                       # noqa: E731
    return (Field("model", parse_model, lambda s: s.get("model_shipped") if kind(s) == "Shipped" else None),
            Field("hub", parse_hub, lambda s: s.get("model_hub") or None if kind(s) == "Hub" else None),
            Field("rev", parse_rev, lambda s: s.get("model_revision") or None if kind(s) == "Hub" else None))


def common_fields() -> tuple[Field, ...]:
    from explorer.sidebar import SPLITS
    return _model_fields() + (choice("data", "dataset", _datasets), choice("split", "split", SPLITS))


def _data_len(ctx) -> int:
    return len(ctx.data) if ctx.data is not None else 0


def _classes(ctx) -> int:
    return ctx.model.num_classes - 1 if ctx.model is not None and ctx.model.num_classes else -1


def _units(ctx) -> int:
    from vae_core import explore
    return explore.num_units(ctx.model) if ctx.model is not None else 0


def _data_classes(ctx) -> int:
    return int(ctx.data.labels.max()) if ctx.data is not None and ctx.data.labels is not None else -1


def _layers(ctx) -> int:
    """Latent layers of a hierarchical VAE (0 for any other model)."""
    from vae_core import layers
    return len(layers.layer_names(ctx.model)) if ctx.model is not None and layers.is_hierarchical(ctx.model) else 0


def _smallest_layer(ctx) -> int:
    """The most rows of one layer's traversal that every layer has (the slider's top is its layer's size)."""
    return min(ctx.model.layer_sizes) if _layers(ctx) else 0


def _style_rows(ctx) -> int:
    """The Class & style grid's most styles: its Styles slider's top for this model's classes."""
    from vae_core import style
    return max(1, min(12, style.MAX_GRID_IMAGES // max(1, ctx.model.num_classes or 1))) if ctx.model is not None else 1


def map_colours(data) -> list[str]:
    """The Latent map's "Colour by" choices for a dataset: the page draws them, a link is checked against them."""
    if data is None:
        return ["none"]
    return (["label"] if data.labels is not None else []) + list(data.factor_names) + ["none"]


def _map_points(ctx) -> int:
    """The Points slider's top: the dataset, or the server's budget of a PCA map (raster included)."""
    from explorer import limits
    return min(_data_len(ctx), limits.settings().max_points("pca"))


def _analyses(ctx) -> list[str]:
    """The analyses the Analyze page offers for this dataset."""
    data = ctx.data
    factors = data is not None and data.factors is not None
    return (["Latent units", "Anomalies", "Reconstructions"] + (["Factors", "Directions and factors"] if factors else [])
            + (["Disentanglement"] if factors and data.factor_names == ANALYZE_DSPRITES else []))


def page_fields(page: str) -> tuple[Field, ...]:
    """The fields of one page (its url_path)."""
    seed = lambda key: integer("seed", key, 0, 2**31 - 1)               # noqa: E731
    if page == "sample":
        return (integer("n", "sample_count", 1, 100), number("t", "sample_temperature", 0.1, 2.0),
                seed("sample_seed"), integer("draw", "sample_draw", 0, 10**6), integer("class", "sample_class", 0, _classes),
                # a hierarchical VAE's inspector: a temperature per layer, and the resample-one-layer grid
                vector("layers", "sample_layer_temperature_", _layers, 0.0, 2.0, late=False),
                integer("rl", "sample_resample_layer", 0, lambda c: _layers(c) - 1),
                integer("rr", "sample_resample_rows", 1, 8), integer("rc", "sample_resample_cols", 2, 10))
    if page == "classes":
        return (integer("styles", "classes_styles", 1, _style_rows), number("t", "classes_temperature", 0.1, 2.0),
                seed("classes_seed"), integer("i", "style_src_index", 0, lambda c: _data_len(c) - 1),
                choice("given", "classes_given", CLASSES_GIVEN))
    if page == "augment":
        return (integer("i", "aug_src_index", 0, lambda c: _data_len(c) - 1),
                number("spread", "aug_scale", 0.0, AUGMENT_SPREAD), integer("n", "aug_count", 1, AUGMENT_IMAGES),
                seed("aug_seed"), choice("from", "aug_mode", AUGMENT_FROM))
    if page == "traverse":
        return (choice("base", "traverse_base", TRAVERSE_BASES),
                integer("i", "traverse_index", 0, lambda c: _data_len(c) - 1),
                seed("traverse_seed"), integer("class", "traverse_class", 0, _classes),
                vector("z", "traverse_z", _units, -TRAVERSE_RANGE, TRAVERSE_RANGE),
                choice("dir", "traverse_dir_kind", DIRECTION_KINDS),
                integer("da", "traverse_dir_a", 0, _data_classes), integer("db", "traverse_dir_b", 0, _data_classes),
                vector("d", "traverse_dir", None, -TRAVERSE_RANGE, TRAVERSE_RANGE),
                integer("rows", "traverse_rows", 1, _units), integer("cols", "traverse_cols", 3, TRAVERSE_STEPS, 2),
                integer("plane", "traverse_manifold", 3, TRAVERSE_PLANE),
                integer("layer", "traverse_layer", 0, lambda c: _layers(c) - 1),      # a hierarchical VAE's layer
                integer("lrows", "traverse_layer_rows", 1, _smallest_layer))
    if page == "interpolate":
        return (integer("a", "interp_a_index", 0, lambda c: _data_len(c) - 1),
                integer("b", "interp_b_index", 0, lambda c: _data_len(c) - 1),
                integer("steps", "interp_steps", 2, INTERPOLATE_STEPS), choice("path", "interp_method", ("linear", "spherical")),
                integer("class", "interp_decode_class", 0, _classes))
    if page == "latent_map":
        return (integer("points", "map_points", lambda c: min(100, _data_len(c)), _map_points),
                choice("method", "map_method", lambda c: ([MAP_CODES_2D] if c.model.latent_shape == (2,) else []) +
                       list(MAP_METHODS)),
                choice("colour", "map_colour", lambda c: map_colours(c.data)),
                number("perplexity", "map_perplexity", 1.0, 100.0), integer("neighbors", "map_neighbors", 5, 50),
                number("min_dist", "map_min_dist", 0.0, 0.99), indices("pick", "map_pick", _data_len, MAP_SELECTION_KEY))
    if page == "analyze":
        return (choices("show", "an_pick", _analyses),
                choice("n", "an_n", (250, 500, 1000, 2000, 5000)), integer("seed", "an_seed", 0, 10_000),
                integer("recon", "an_recon_count", 4, 32, 4), number("threshold", "an_threshold", 50.0, 99.9))
    return ()


# ---------------------------------------------------------------------------------------------
# Reading and writing the address bar


def _current_query() -> dict[str, str]:
    return {k: st.query_params.get(k) for k in st.query_params.keys()}


def restore(fields: Sequence[Field], ctx=None, query: Mapping[str, str] | None = None,
            state=None) -> list[str]:
    """Write the link's valid values into session state (``late`` ones aside for the page); return
    one problem per bad parameter (the parameter is dropped: its default stands)."""
    query = _current_query() if query is None else query
    state = st.session_state if state is None else state
    problems = []
    late = state.setdefault(LATE_KEY, {})
    for f in fields:
        raw = query.get(f.param)
        if raw is None:
            continue
        if len(raw) > MAX_PARAM_CHARS:
            problems.append(f"{f.param} is longer than {MAX_PARAM_CHARS:,} characters")
            continue
        try:
            values = f.parse(raw, ctx)
        except LinkError as e:
            problems.append(f"{e} (the link has \"{raw[:40]}\")")
            continue
        (late if f.late else state).update(values)
    return problems


def apply_late(prefix: str) -> None:
    """Called by a page after it has set its own defaults: the link's values for these sliders win, once."""
    late = st.session_state.get(LATE_KEY, {})
    for key in [k for k in late if k.startswith(prefix) and k[len(prefix):].isdigit()]:
        st.session_state[key] = late.pop(key)


def current(fields: Sequence[Field], state=None) -> dict[str, str]:
    state = st.session_state if state is None else state
    out = {}
    for f in fields:
        v = f.show(state)
        if v not in (None, ""):
            out[f.param] = v
    return out


def publish(page: str) -> list[str]:
    """Put this page's current state in the address bar (no rerun); returns what of it the link leaves out."""
    fields = common_fields() + page_fields(page)
    params = current(fields)
    if {k: st.query_params.get(k) for k in st.query_params.keys()} != params:
        st.query_params.from_dict(params)
    return [note for f in fields if (note := f.left_out(st.session_state))]


def first_run_restore(page: str, phase: str, ctx=None) -> None:
    """Phase "sidebar" (before the sidebar is drawn): the model and dataset; phase "page" (after):
    the page's own fields, checked against the model and data the sidebar loaded. Once a session."""
    if st.session_state.get(RESTORED_KEY) == "done":
        return
    problems = st.session_state.setdefault("_links_problems", [])
    if phase == "sidebar":
        problems.extend(restore(common_fields()))
        if "dataset" in st.session_state and "data" in st.query_params:
            from explorer.sidebar import LINK_DATASET_KEY
            st.session_state[LINK_DATASET_KEY] = True
        st.session_state[RESTORED_KEY] = "sidebar"
        return
    problems.extend(restore(page_fields(page), ctx))
    known = {f.param for f in common_fields() + page_fields(page)}
    unknown = [k for k in st.query_params.keys() if k not in known]
    if unknown:
        problems.append(f"this page has no setting called {', '.join(unknown[:5])}")
    st.session_state[RESTORED_KEY] = "done"
    if problems:
        # The link's names and values are a stranger's words: shown as plain text, never as markdown.
        st.warning(literal("Part of this link could not be used, so the defaults stand for it: " + "; ".join(problems) + "."))
    st.session_state.pop("_links_problems", None)


COPY_BUTTON = """
<button id="copy" style="font: 14px sans-serif; padding: 6px 12px; border: 1px solid #ccc; border-radius: 8px;
        background: white; cursor: pointer; width: 100%">Copy link to this view</button>
<input id="url" readonly style="display: none; width: 100%; margin-top: 4px; font: 12px monospace">
<script>
const button = document.getElementById("copy"), box = document.getElementById("url");
button.addEventListener("click", async () => {
  const url = window.parent.location.href;
  try {
    await navigator.clipboard.writeText(url);
    button.textContent = "Copied";
  } catch (e) {                                   // no clipboard (e.g. plain http): select it to copy by hand
    box.style.display = "block"; box.value = url; box.select();
    button.textContent = "Copy the selected link";
  }
  setTimeout(() => { button.textContent = "Copy link to this view"; }, 2000);
});
</script>
"""


def copy_control(container):
    """A button that copies the address bar (which ``publish`` keeps up to date, fragments included).
    The page's own address, read in the browser at the click: a link drawn by the server would miss
    a fragment's rerun (a Traverse slider moves only its fragment). Returns the place for
    ``show_left_out``, which the page's run fills once ``publish`` knows what the link leaves out."""
    with container:
        st.iframe(COPY_BUTTON, height=80)              # our constant HTML only: nothing from a visitor
        if st.session_state.get("model_kind") in ("Folder", "This session's run"):
            st.caption("A link names shipped and Hub models only: this model is not in it.")
        return st.empty()


def show_left_out(place, notes: list[str]) -> None:
    if notes:
        place.caption("This link leaves out " + "; ".join(notes) + ".")
    else:
        place.empty()
