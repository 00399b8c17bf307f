"""A page's settings, declared once: the widget, its value across page switches, and its place in a link.

Each page lists its settings (explorer/page_settings.py) as ``Setting``s: the widget's key, the
kind of value, its default and bounds (numbers or functions of the model and data), its name in a
link or why a link leaves it out. From that one declaration

- ``draw`` draws the widget (its bounds and default from the declaration, never restated);
- the value outlives the widget: Streamlit drops a widget's state on any run that does not draw
  it (another page, a branch not taken), so every run first copies the widgets' values into the
  page's own state (``remember``, a non-widget key), and a page's run seeds each of its widgets
  that Streamlit forgot from there (``reseed``), where the value still fits the model and data;
- explorer.links writes the values into a link and reads them back, checked by ``check``.

A bound or an option list may be a function ``f(ctx, state)`` of the sidebar's context and the
page's current values (e.g. an image index below the dataset's length).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import streamlit as st

from explorer.text import number

KEPT = "_page_state"                  # page -> {setting key: value}: the pages' own state
MAX_INDICES = 200                     # a selection in a link: at most this many image indices
MAX_VECTOR = 64                       # numbers in one slider vector
WIDGETS = ("slider", "number", "select", "radio", "multiselect", "select_slider", "toggle", "text", None)


class LinkError(ValueError):
    """A value does not fit its setting here; the message says what was expected."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of a page. ``kind``: int, float, bool, choice, choices (a list of options), vector
    (numbered sliders ``key0``, ``key1``, ...), indices (dataset images; the text of a box where
    ``widget`` is "text") or text. ``param``: its name in a link; None: a link leaves it out, and
    ``left_out`` says what the sidebar then names, while ``in_use(state)`` holds."""
    key: str
    kind: str
    param: str | None = None
    default: Any = None
    lo: Any = None
    hi: Any = None
    step: Any = None
    options: Any = None
    widget: str | None = None
    label: str = ""
    help: str | None = None
    left_out: str = ""
    in_use: Callable[[Mapping], bool] | None = None     # the setting is part of the view now (default: always)
    implies: Mapping | None = None                      # restoring it from a link also sets these values
    count: Any = None                                   # vector: how many numbers (None: as many as given)
    validate: Callable[[str], None] | None = None       # text: raises LinkError when the text may not be used

    def resolve(self, attr: str, ctx, state: Mapping):
        v = getattr(self, attr)
        return v(ctx, state) if callable(v) else v

    def keys(self, state: Mapping) -> list[str]:
        """The widget keys that hold it (a vector: one per slider present in ``state``)."""
        if self.kind != "vector":
            return [self.key]
        out, i = [], 0
        while f"{self.key}{i}" in state:
            out.append(f"{self.key}{i}")
            i += 1
        return out


@dataclasses.dataclass(frozen=True)
class Page:
    name: str                          # the page's url path
    settings: tuple[Setting, ...]
    note: str = ""                     # what a link to this page never carries, said on every visit

    def __getitem__(self, key: str) -> Setting:
        for s in self.settings:
            if s.key == key:
                return s
        raise KeyError(key)


# ---------------------------------------------------------------------------------------------
# Values: checked against the declaration, written short in a link


def short(v: float) -> str:
    """A number in a link: 4 significant digits (a slider's resolution); whole numbers without ".0"."""
    text = f"{float(v):.4g}"
    return text[:-2] if text.endswith(".0") else text


def rounded(v: float) -> float:
    """The value a link would carry: a page that seeds a slider with it draws what the link reopens."""
    return float(short(v))


def _number(raw, kind, lo, hi, what: str, step=None):
    if lo is not None and hi is not None and hi < lo:
        raise LinkError(f"{what} does not apply to this model and data")
    if isinstance(raw, bool) or (kind is int and isinstance(raw, float) and not raw.is_integer()):
        raise LinkError(f"{what} must be a whole number")
    try:
        v = kind(raw)
    except (TypeError, ValueError, OverflowError):
        raise LinkError(f"{what} must be {'a whole number' if kind is int else 'a number'}") from None
    if not (isinstance(v, int) or math.isfinite(v)) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise LinkError(f"{what} must be from {number(lo)} to {number(hi)}")
    if kind is int and step and lo is not None and (v - lo) % step:
        raise LinkError(f"{what} must be {number(lo)} plus a multiple of {number(step)}")
    return v


def _options_text(opts) -> str:
    return ", ".join(map(str, opts[:12])) + (", ..." if len(opts) > 12 else "")


def check(s: Setting, value, ctx, state: Mapping):
    """``value`` as this setting holds it, or LinkError saying what fits here (for this model and data)."""
    name = s.param or s.key
    lo, hi = s.resolve("lo", ctx, state), s.resolve("hi", ctx, state)
    if s.kind in ("int", "float"):
        step = s.resolve("step", ctx, state) if s.kind == "int" else None
        return _number(value, int if s.kind == "int" else float, lo, hi, name, step)
    if s.kind == "bool":
        if not isinstance(value, bool):
            raise LinkError(f"{name} must be 1 or 0")
        return value
    if s.kind == "choice":
        opts = list(s.resolve("options", ctx, state))
        if value not in opts:
            raise LinkError(f"{name} must be one of {_options_text(opts)}")
        return value
    if s.kind == "choices":
        opts = list(s.resolve("options", ctx, state))
        if not isinstance(value, (list, tuple)) or any(v not in opts for v in value):
            raise LinkError(f"{name} may hold only {_options_text(opts)} here")
        return list(value)
    if s.kind == "vector":
        n = s.resolve("count", ctx, state)
        if len(value) > MAX_VECTOR:
            raise LinkError(f"{name} may hold at most {MAX_VECTOR} numbers")
        if n is not None and len(value) != n:
            raise LinkError(f"{name} must hold {n} comma-separated numbers for this model, got {len(value)}")
        return [float(_number(v, float, lo, hi, name)) for v in value]
    if s.kind == "indices":
        picked = parse_indices(value) if isinstance(value, str) else list(value)
        if len(picked) > MAX_INDICES:
            raise LinkError(f"{name} may name at most {MAX_INDICES} images")
        n = _data_len(ctx)
        vals = [_number(v, int, 0, n - 1, name) for v in picked]
        return ", ".join(map(str, vals)) if s.widget == "text" else vals
    if not isinstance(value, str):
        raise LinkError(f"{name} must be text")
    if s.validate is not None:
        s.validate(value)
    return value


def parse_indices(text: str) -> list[str]:
    return [p for p in text.replace(",", " ").split() if p]


def _data_len(ctx) -> int:
    return len(ctx.data) if ctx is not None and ctx.data is not None else 0


def from_link(s: Setting, raw: str, ctx, state: Mapping):
    """A link's text for this setting, parsed and checked."""
    if s.kind == "bool":
        if raw not in ("0", "1"):
            raise LinkError(f"{s.param} must be 1 or 0")
        return raw == "1"
    if s.kind == "choice":
        opts = list(s.resolve("options", ctx, state))
        match = [o for o in opts if str(o) == raw]
        if not match:
            raise LinkError(f"{s.param} must be one of {_options_text(opts)}")
        return match[0]
    if s.kind == "choices":
        return check(s, [p for p in raw.split(",") if p], ctx, state)
    if s.kind == "vector":
        return check(s, raw.split(","), ctx, state)
    return check(s, raw, ctx, state)          # a number, image indices or text: checked as a value is


def to_link(s: Setting, value) -> str | None:
    """The link's text for a value (None: nothing to write)."""
    if value is None:
        return None
    if s.kind == "float":
        return short(value)
    if s.kind == "bool":
        return "1" if value else "0"
    if s.kind == "vector":
        return ",".join(short(v) for v in value) or None
    if s.kind == "choices":
        return ",".join(map(str, value))
    if s.kind == "indices":
        vals = parse_indices(value) if isinstance(value, str) else list(map(str, value))
        return ",".join(vals) if 0 < len(vals) <= MAX_INDICES else None
    return str(value)


def indices_count(s: Setting, value) -> int:
    if value is None:
        return 0
    return len(parse_indices(value)) if isinstance(value, str) else len(value)


# ---------------------------------------------------------------------------------------------
# The page's own state


def kept(page: str, state=None) -> dict:
    state = st.session_state if state is None else state
    return state.setdefault(KEPT, {}).setdefault(page, {})


def value(page: Page, key: str, state=None):
    """A setting's current value: its widget's, else the page's own (None when it has none)."""
    state = st.session_state if state is None else state
    s = page[key]
    if s.kind == "vector":
        keys = s.keys(state)
        return [state[k] for k in keys] if keys else kept(page.name, state).get(key)
    return state[key] if key in state else kept(page.name, state).get(key)


def values(page: Page, state=None) -> dict:
    state = st.session_state if state is None else state
    return {s.key: v for s in page.settings if (v := value(page, s.key, state)) is not None}


def put(page: Page, key: str, v, state=None) -> None:
    """Set a setting, in the page's own state and in its widget (call before the widget is drawn)."""
    state = st.session_state if state is None else state
    s = page[key]
    kept(page.name, state)[key] = v
    if s.kind == "vector":
        for k in s.keys(state):
            del state[k]
        for i, x in enumerate(v):
            state[f"{key}{i}"] = x
    elif s.widget is not None:
        state[key] = v


def remember(pages: Sequence[Page], state=None) -> None:
    """At the start of a run: the widget values the last run drew (the user's edits included) become
    the pages' own state, before Streamlit forgets the widgets this run does not draw."""
    state = st.session_state if state is None else state
    for page in pages:
        own = kept(page.name, state)
        for s in page.settings:
            if s.kind == "vector":
                keys = s.keys(state)
                if keys:
                    own[s.key] = [state[k] for k in keys]
            elif s.widget is not None and s.key in state:
                own[s.key] = state[s.key]


def reseed(page: Page, ctx, state=None) -> None:
    """Before a page runs: each widget Streamlit forgot gets the page's own value back, where it
    still fits this model and data (else the widget starts at its default)."""
    state = st.session_state if state is None else state
    own = kept(page.name, state)
    for s in page.settings:
        if s.widget is None and s.kind != "vector" or s.key not in own:
            continue
        present = bool(s.keys(state)) if s.kind == "vector" else s.key in state
        if present:
            continue
        try:
            v = check(s, own[s.key], ctx, {**own})
        except (LinkError, TypeError):
            continue
        if s.kind == "vector":
            for i, x in enumerate(v):
                state[f"{s.key}{i}"] = x
        else:
            state[s.key] = v


# ---------------------------------------------------------------------------------------------
# Drawing a declared widget


def draw(page: Page, key: str, ctx, where=None, **extra):
    """Draw the setting's widget with its declared label, bounds and default; returns its value (a
    number as a link writes it, so a link reopens the same pixels). A value that no longer fits
    (another model, another dataset) goes back to the default."""
    v = _draw(page, key, ctx, where, **extra)
    return rounded(v) if page[key].kind == "float" and v is not None else v


def _draw(page: Page, key: str, ctx, where=None, **extra):
    s, where = page[key], where if where is not None else st
    state = st.session_state
    current = values(page)
    lo, hi, step = s.resolve("lo", ctx, current), s.resolve("hi", ctx, current), s.resolve("step", ctx, current)
    try:                      # (typed text stays as typed: the page says what is wrong with it)
        check(s, state[key], ctx, current) if key in state and s.widget != "text" else None
    except (LinkError, TypeError):
        del state[key]
    if key not in state:
        state[key] = s.resolve("default", ctx, current)
    label = extra.pop("label", s.label)
    kw = dict(key=key, help=extra.pop("help", s.help), **extra)
    w = s.widget
    if w == "slider":
        return where.slider(label, lo, hi, step=step, **kw)
    if w == "number":
        return where.number_input(label, lo, hi, step=step, **kw)
    if w in ("select", "radio", "multiselect", "select_slider"):
        opts = list(range(lo, hi + 1)) if s.kind == "int" else list(s.resolve("options", ctx, current))
        fn = {"select": where.selectbox, "radio": where.radio, "multiselect": where.multiselect,
              "select_slider": where.select_slider}[w]
        return fn(label, opts, **kw)
    if w == "toggle":
        return where.toggle(label, **kw)
    return where.text_input(label, **kw)


def vector_keys(s: Setting, n: int) -> list[str]:
    return [f"{s.key}{i}" for i in range(n)]


def follow(page: Page, key: str, signature, start: Sequence[float]) -> None:
    """A vector of sliders that starts at ``start`` (e.g. the base code): a new ``signature`` (a new
    base, a new model) moves them there; the same one keeps the user's edits, after a visit to
    another page too. Sliders a link restored (no signature yet) keep the link's values."""
    own = kept(page.name)
    mark = f"{key}_signature"
    present = value(page, key)
    if own.get(mark) == signature and present is not None and len(present) == len(start):
        return
    if own.get(mark) is None and present is not None and len(present) == len(start) and own.get(f"{key}_linked"):
        own[mark] = signature
        return
    put(page, key, [rounded(v) for v in start])
    own[mark] = signature
    own.pop(f"{key}_linked", None)


def _mark_chosen(page: str, flag: str) -> None:
    kept(page)[flag] = True
    st.session_state[flag] = True


def class_follows(page: Page, key: str, ctx, image_class: int | None, names: Sequence[str], label: str = "Class",
                  where=None) -> tuple[int | None, str]:
    """A conditional model's class: it follows the chosen image's class until the user picks one.
    Returns the class (None for an unconditional model) and words for a caption ("class 3, from the
    image", "class 5, chosen")."""
    k = ctx.model.num_classes if ctx.model is not None else 0
    if not k:
        return None, ""
    flag = f"{key}_chosen"
    chosen = bool(value(page, flag))
    following = not chosen and image_class is not None and 0 <= int(image_class) < k
    if following:
        st.session_state[key] = int(image_class)
    y = int(draw(page, key, ctx, where, label=label, format_func=lambda i: names[i], on_change=_mark_chosen,
                 args=(page.name, flag)))
    how = "chosen" if chosen else "from the image" if following else "the first class (pick one)"
    return y, f"class {names[y]}, {how}"
