"""Links that reopen a view: each page's state in the URL's query parameters, over the pages' declarations.

The page itself is the URL's path (Streamlit's routing: ``/traverse``); the query holds the
sidebar's model (a shipped name, or a Hub repo id and revision: never a folder on the server),
dataset and split, and the page's settings that have a name in a link (explorer/page_settings.py
declares them; this module knows no page's keys or bounds). Every run writes the current state
to the address bar (``publish``); a session's first run reads it back (``first_run_restore``), so
a copied link opened anywhere, on a fresh server too, draws the same images.

A link is visitor input. Each parameter is parsed and checked against its setting's bounds for
the model and data the link opened (explorer.controls.check); a bad one is dropped with one
message naming it, shown as plain text (explorer.text.literal), and its default stands. What a
link cannot carry (an upload, a drawing, a code chosen on the map, a selection over the link's
limit) is declared beside the setting, and the sidebar says so while the view uses it.
"""
from __future__ import annotations

import collections
from typing import Mapping

import streamlit as st

from explorer import controls
from explorer.controls import MAX_INDICES, LinkError, Page
from explorer.page_settings import PAGES, SIDEBAR
from explorer.text import literal

RESTORED_KEY = "_links_restored"     # per session: the link was read (on the session's first run)
PROBLEMS_KEY = "_links_problems"     # per session, during the first run: what of the link could not be used
LINK_DATASET_KEY = "_link_dataset"   # set by a link that names a dataset: the first model does not replace it
MAX_PARAM_CHARS = 4000               # a longer parameter is refused before it is parsed


def page(name: str) -> Page:
    """A page's declaration (the sidebar's for "sidebar"; an empty one for a page without settings)."""
    return SIDEBAR if name == "sidebar" else PAGES.get(name, Page(name, ()))


def _view(p: Page, state) -> Mapping:
    """The page's values over the rest of the session's state (for ``in_use``)."""
    return collections.ChainMap(controls.values(p, state), _Get(state))


class _Get(Mapping):
    """Session state as a read-only mapping (Streamlit's proxy is not a Mapping)."""
    def __init__(self, state):
        self.state = state

    def __getitem__(self, k):
        if k not in self.state:
            raise KeyError(k)
        return self.state[k]

    def __iter__(self):
        return iter(list(self.state.keys()))

    def __len__(self):
        return len(list(self.state.keys()))


# ---------------------------------------------------------------------------------------------
# Reading a link


def restore(p: Page, ctx=None, query: Mapping[str, str] | None = None, state=None) -> list[str]:
    """Write the link's valid values into the page's state and its widgets; return one problem per
    bad parameter (the parameter is dropped: its default stands)."""
    query = _current_query() if query is None else query
    state = st.session_state if state is None else state
    problems, own = [], controls.kept(p.name, state)
    for s in p.settings:
        raw = query.get(s.param) if s.param else None
        if raw is None:
            continue
        if len(raw) > MAX_PARAM_CHARS:
            problems.append(f"{s.param} is longer than {MAX_PARAM_CHARS:,} characters")
            continue
        try:
            v = controls.from_link(s, raw, ctx, own)
        except LinkError as e:
            problems.append(f'{e} (the link has "{raw[:40]}")')
            continue
        own[s.key] = v
        if s.kind == "vector":
            for i, x in enumerate(v):
                state[f"{s.key}{i}"] = x
            own[f"{s.key}_linked"] = True            # the page keeps them over its own starting values
        else:
            state[s.key] = v
        for k, implied in (s.implies or {}).items():
            own[k] = state[k] = implied
    return problems


def _current_query() -> dict[str, str]:
    return {k: st.query_params.get(k) for k in st.query_params.keys()}


def first_run_restore(page_name: str, phase: str, ctx=None) -> None:
    """Phase "sidebar" (before the sidebar is drawn): the model and dataset; phase "page" (after):
    the page's own settings, checked against the model and data the sidebar loaded. Once a session."""
    if st.session_state.get(RESTORED_KEY) == "done":
        return
    problems = st.session_state.setdefault(PROBLEMS_KEY, [])
    if phase == "sidebar":
        problems.extend(restore(SIDEBAR))
        if "dataset" in st.session_state and "data" in st.query_params:
            st.session_state[LINK_DATASET_KEY] = True
        st.session_state[RESTORED_KEY] = "sidebar"
        return
    p = page(page_name)
    problems.extend(restore(p, ctx))
    known = {s.param for s in SIDEBAR.settings + p.settings if s.param}
    unknown = [k for k in st.query_params.keys() if k not in known]
    if unknown:
        problems.append(f"this page has no setting called {', '.join(unknown[:5])}")
    st.session_state[RESTORED_KEY] = "done"
    if problems:
        # The link's names and values are a stranger's words: shown as plain text, never as markdown.
        st.warning(literal("Part of this link could not be used, so the defaults stand for it: " +
                           "; ".join(problems) + "."))
    st.session_state.pop(PROBLEMS_KEY, None)


# ---------------------------------------------------------------------------------------------
# Writing a link


def current(p: Page, ctx=None, state=None) -> dict[str, str]:
    """The link's parameters for the page's current values: each one that is part of the view and
    fits the model and data (a value kept from another model is not written)."""
    state = st.session_state if state is None else state
    view, out = _view(p, state), {}
    for s in p.settings:
        v = controls.value(p, s.key, state)
        if s.param is None or v is None or (s.in_use is not None and not s.in_use(view)):
            continue
        if ctx is not None:
            try:
                v = controls.check(s, v, ctx, view)
            except (LinkError, TypeError):
                continue
        text = controls.to_link(s, v)
        if text not in (None, ""):
            out[s.param] = text
    return out


def left_out(p: Page, state=None) -> list[str]:
    """What of the page's current view a link cannot carry, in words."""
    state = st.session_state if state is None else state
    view, notes = _view(p, state), [p.note] if p.note else []
    for s in p.settings:
        if s.kind == "indices" and s.param is not None:
            n = controls.indices_count(s, controls.value(p, s.key, state))
            if n > MAX_INDICES and (s.in_use is None or s.in_use(view)):
                notes.append(s.left_out.format(n=n))
        elif s.param is None and s.left_out and (s.in_use is None or s.in_use(view)):
            notes.append(s.left_out)
    return notes


def publish(page_name: str, ctx=None) -> list[str]:
    """Put this page's current state in the address bar (no rerun); returns what the link leaves out."""
    p = page(page_name)
    params = {**current(SIDEBAR, ctx), **current(p, ctx)}
    if _current_query() != params:
        st.query_params.from_dict(params)
    return left_out(p)


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
