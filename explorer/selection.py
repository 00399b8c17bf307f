"""Points selected on the latent map: read over every trace, then shown, summarised and used.

``selected_indices`` reads Plotly's selection event, whatever trace (class) each point is on;
``resolve`` adds the indices typed by hand and says which cannot be shown and why; ``show``
draws what a user does with a selection: the true count, a gallery of originals and
reconstructions a page at a time, each shown image's latent neighbours, the selection's summary
(its classes, or its factor values), its indices as CSV, and its mean code sent to Traverse or
Interpolate (explorer.handoff).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import streamlit as st
import torch

import vae_core
from vae_core import ImageSet
from vae_core.latent import explore, projections as project

from explorer import controls, figures, handoff, widgets
from explorer.page_settings import LATENT_MAP
from explorer.session import Context

PER_PAGE = 10                # images in a page of the gallery: a row of readable tiles
MAX_TYPED = 1000             # indices read from the text box


def selected_indices(event, figure=None) -> list[int]:
    """Dataset indices of every point selected on the chart, over every trace, in order, once each.

    Each point's customdata is its dataset index; where the event leaves it out, the point's
    trace (curve_number) and position in it (point_index) find it in ``figure``."""
    if isinstance(event, dict):
        points = (event.get("selection") or {}).get("points") or []
    else:
        points = getattr(getattr(event, "selection", None), "points", None) or []
    out = []
    for p in points:
        cd = p.get("customdata")
        if cd is None and figure is not None and p.get("curve_number") is not None:
            trace = figure.data[int(p["curve_number"])]
            index = p.get("point_index", p.get("point_number"))
            cd = None if trace.customdata is None or index is None else trace.customdata[int(index)]
        if isinstance(cd, (list, tuple, np.ndarray)):
            cd = cd[0] if len(cd) else None
        if cd is not None:
            out.append(int(cd))
    return list(dict.fromkeys(out))


def parse_indices(text: str, limit: int = MAX_TYPED) -> list[int]:
    """'3, 17 42' -> [3, 17, 42]; anything else is a VAEError that says what is expected."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        out = [int(p) for p in parts]
    except ValueError:
        raise vae_core.VAEError(f"{text!r} is not a list of image indices; write them like 3, 17, 42.") from None
    return out[:limit]


def resolve(typed: list[int], picked: list[int], mapped: np.ndarray, data: ImageSet) -> tuple[list[int], list[str]]:
    """The typed indices that are on the map (in the order typed), then the picked ones (by image
    index, so a lasso over several classes does not show one class first: points come trace by
    trace); and one line for each kind of typed index that is not: outside the dataset, or in it
    but not among the mapped points."""
    on_map = set(mapped.tolist())
    outside = [i for i in typed if not 0 <= i < len(data)]
    unmapped = [i for i in typed if 0 <= i < len(data) and i not in on_map]
    notes = []
    if outside:
        notes.append(f"{_few(outside)} {'is' if len(outside) == 1 else 'are'} not an image of {data.name}: "
                     f"its images are numbered 0 to {len(data) - 1:,}.")
    if unmapped:
        notes.append(f"{_few(unmapped)} {'is' if len(unmapped) == 1 else 'are'} not among the "
                     f"{len(on_map):,} mapped points; raise the number of points to include "
                     f"{'it' if len(unmapped) == 1 else 'them'}.")
    return list(dict.fromkeys([i for i in typed if i in on_map] + sorted(picked))), notes


def _few(xs: list[int], shown: int = 10) -> str:
    head = ", ".join(f"{i:,}" if abs(i) >= 10_000 else str(i) for i in xs[:shown])
    return head + (f" and {len(xs) - shown:,} more" if len(xs) > shown else "")


def page_count(n: int, per_page: int = PER_PAGE) -> int:
    return max(1, math.ceil(n / per_page))


def csv_bytes(indices: list[int], data: ImageSet) -> bytes:
    """The selection as CSV: each image's index, with its class and factor values where the dataset has them."""
    head = ["index"] + (["class"] if data.labels is not None else []) + list(data.factor_names)
    rows = [",".join(head)]
    for i in indices:
        row = [str(i)]
        if data.labels is not None:
            c = int(data.labels[i])
            row.append(data.class_names[c] if c < len(data.class_names) else str(c))
        if data.factors is not None and data.factor_names:
            row += [f"{float(v):g}" for v in data.factors[i].tolist()]
        rows.append(",".join(row))
    return ("\n".join(rows) + "\n").encode()


def mean_code(codes: torch.Tensor, positions: list[int], latent_shape) -> torch.Tensor:
    """The mean of the selected codes, as one code (1, *latent)."""
    return codes[torch.as_tensor(positions, dtype=torch.long)].float().mean(0).reshape(1, *latent_shape)


def code_of(ctx: Context, indices: list[int]) -> handoff.ChosenCode:
    """The mean posterior mean of some dataset images, as a code to traverse from (and their majority class)."""
    model, data = ctx.model, ctx.data
    codes = explore.encode_dataset(model, data.subset(indices))
    y = majority_class(data, indices) if model.num_classes else None
    return handoff.ChosenCode(mean_code(codes, list(range(len(indices))), model.latent_shape), ctx.model_key,
                              f"the mean code of {figures.plural(len(indices), 'selected image')}", y, tuple(indices))


def majority_class(data: ImageSet, indices: list[int]) -> int | None:
    if data.labels is None or not indices:
        return None
    return int(torch.bincount(data.labels[torch.as_tensor(indices)].long()).argmax())


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a selection holds: class counts (against the mapped images'), or factor values."""

    counts: np.ndarray | None = None       # (classes,) selected images per class
    totals: np.ndarray | None = None       # (classes,) mapped images per class
    factors: np.ndarray | None = None      # (n, F) the selection's factor values
    all_factors: np.ndarray | None = None  # (N, F) the mapped images' factor values


def summarise(data: ImageSet, indices: list[int], mapped: np.ndarray) -> Summary:
    sel = torch.as_tensor(indices, dtype=torch.long)
    if data.factors is not None and data.factor_names:
        return Summary(factors=data.factors[sel].numpy(), all_factors=data.factors[torch.as_tensor(mapped)].numpy())
    if data.labels is not None:
        k = max(data.num_classes, int(data.labels.max()) + 1)
        return Summary(counts=np.bincount(data.labels[sel].numpy(), minlength=k),
                       totals=np.bincount(data.labels[torch.as_tensor(mapped)].numpy(), minlength=k))
    return Summary()


# ---------------------------------------------------------------------------------------------
# Drawing


def show(ctx: Context, codes: torch.Tensor, mapped: torch.Tensor, indices: list[int]) -> None:
    """Everything about a selection of ``indices`` (dataset indices, all on the map)."""
    model, data = ctx.model, ctx.data
    position = {int(i): p for p, i in enumerate(mapped.tolist())}
    st.subheader(f"{figures.plural(len(indices), 'image')} selected")
    signature = (ctx.model_key, ctx.data_key, len(indices), hash(tuple(indices)))
    if st.session_state.get("map_selection_signature") != signature:     # a new selection starts at its first page
        st.session_state["map_selection_signature"] = signature
        st.session_state["map_page"] = 1
    pages = page_count(len(indices))
    st.session_state["map_page"] = min(max(int(st.session_state.get("map_page", 1)), 1), pages)

    c1, c2 = st.columns([1, 3])
    page = int(c1.number_input(f"Page (of {pages:,})", 1, pages, key="map_page", disabled=pages == 1))
    shown = indices[(page - 1) * PER_PAGE:page * PER_PAGE]
    c2.caption(f"Images {(page - 1) * PER_PAGE + 1:,} to {(page - 1) * PER_PAGE + len(shown):,} of "
               f"{len(indices):,} (typed ones first, then by image index)")
    x = data.images[shown].float() / 255
    widgets.show_grid(figures.paired_rows(x, explore.reconstruct(model, data, shown), len(shown)),
                      nrow=len(shown), wrap=False,
                      caption="top: the originals (" + ", ".join(map(str, shown)) + "); bottom: their reconstructions")
    left, right = st.columns([3, 2])
    with left:
        k = controls.draw(LATENT_MAP, "map_k", ctx)
        near = project.nearest_neighbours(codes, [position[i] for i in shown], k)        # (shown, k) positions
        rows = [[i, *mapped[near[r]].tolist()] for r, i in enumerate(shown)]
        widgets.show_grid(data.images[sum(rows, [])].float() / 255, nrow=k + 1, span=0.6, wrap=False,
                          caption="each row: a shown image, then its nearest neighbours by posterior mean")
    with right:
        s = summarise(data, indices, mapped.numpy())
        if s.factors is not None:
            st.plotly_chart(figures.factor_ranges(s.factors, s.all_factors, data.factor_names, height=320),
                            key="map_summary_chart")
            st.caption("Factor ranges: " + "; ".join(
                f"{n} {s.factors[:, j].min():.3g} to {s.factors[:, j].max():.3g}" for j, n in enumerate(data.factor_names)))
        elif s.counts is not None:
            st.plotly_chart(figures.class_histogram(s.counts, s.totals, data.class_names, height=320),
                            key="map_summary_chart")
        st.download_button("Download the indices (CSV)", csv_bytes(indices, data), file_name="selection.csv",
                           mime="text/csv", key="map_download_csv")
        _send_buttons(ctx, codes, position, indices)


def _send_buttons(ctx: Context, codes, position, indices) -> None:
    model, data = ctx.model, ctx.data
    st.markdown("**Use the selection's mean code**")
    z = mean_code(codes, [position[i] for i in indices], model.latent_shape)
    y = majority_class(data, indices) if model.num_classes else None
    code = handoff.ChosenCode(z, ctx.model_key, f"the mean code of {figures.plural(len(indices), 'selected image')}",
                              y, tuple(indices))
    if st.button("Traverse from it", key="map_to_traverse", width="stretch",
                 help="Traverse's base code becomes this mean code."):
        handoff.send("traverse", code)
        st.switch_page("explorer/pages/traverse.py")
    for slot, name in (("interp_a", "A"), ("interp_b", "B")):
        if st.button(f"Make it Interpolate's {name}", key=f"map_to_{slot}", width="stretch",
                      help=f"Interpolate's image {name} becomes this mean code; select another group for the other end."):
            handoff.send(slot, code)
            st.session_state["map_sent"] = name
    sent = st.session_state.get("map_sent")
    if sent:
        st.success(f"Sent as Interpolate's {sent}.")
        st.page_link("explorer/pages/interpolate.py", label="Open Interpolate", icon=":material/linear_scale:")
