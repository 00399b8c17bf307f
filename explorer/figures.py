"""How the explorer draws, in one place: the class palette, the style every Plotly figure gets
(axis titles, a legend the toolbar never covers, readable ticks), the size of image tiles, and the
figures more than one page shares or that a page would otherwise build inline.

Nothing here calls streamlit: each function returns a figure or a number, so it is tested alone.
"""
from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Ten class colours, each at least 3:1 against white even at the markers' opacity (WCAG's contrast
# for graphics) and at least 25 apart in CIELAB from one another (tests/test_figures.py checks both).
CLASS_COLOURS = ("#1f77b4", "#d62728", "#1e8a1e", "#9467bd", "#8c564b",
                 "#c51b8a", "#c45200", "#0f8b8d", "#4d4d4d", "#7a7a00")
MARKER_OPACITY = 0.85
SCALE = "Blues"                 # the sequential scale of heatmaps and factor colourings
SELECTED = "#d62728"
MUTED = "#b0b0b0"

# Plotly's toolbar floats over the top 30 px of a figure. The top margin keeps that band clear of
# the plot, the title and the legend, so the toolbar never covers a legend entry.
MODEBAR_PX = 36
TITLE_PX = 26
LEGEND_ROW_PX = 22      # one legend entry stacked below a figure
FONT = MappingProxyType({"size": 14})

# Image tiles: the main column of the wide layout is about 820 px in a 1,280-px window with the
# sidebar open (940 px at 1,400). A grid never puts more tiles in a row than fit at MIN_TILE.
CONTENT_PX = 840
MIN_TILE = 84
MAX_TILE = 128


def class_colour(i: int) -> str:
    return CLASS_COLOURS[int(i) % len(CLASS_COLOURS)]


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 sample', '2 samples', '1,000 images'."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


# ---------------------------------------------------------------------------------------------
# Figure style


def style(fig: go.Figure, *, height: int, x: str | None = None, y: str | None = None, title: str | None = None,
          legend: str = "right") -> go.Figure:
    """Axis titles, a title above the plot, and a legend clear of the toolbar.

    ``legend`` is "right" (beside the plot, from its top edge down, under the toolbar's band),
    "below" (a row under the plot, for long entries) or "none"."""
    # Plotly reads pandas from sys.modules without importing it; while another thread (the UMAP
    # warm-up, a map's worker) is still importing pandas, that module is half made and drawing
    # the figure fails ("partially initialized module 'pandas'"). Importing it here waits for
    # that import to finish, or does it, before any figure is drawn.
    import pandas  # noqa: F401
    top = MODEBAR_PX + (TITLE_PX if title else 0)
    layout = dict(height=height, font=dict(FONT), margin=dict(l=10, r=10, t=top, b=10),
                  showlegend=legend != "none")
    if title:
        # Just above the plot area, inside the top margin: below the toolbar's band, never under it.
        layout["title"] = dict(text=title, x=0, xanchor="left", xref="container", y=1, yref="paper",
                               yanchor="bottom", pad=dict(b=8, l=10), font=dict(size=15))
    if legend == "right":
        layout["legend"] = dict(x=1.02, xanchor="left", y=1, yanchor="top", itemsizing="constant")
    elif legend == "below":
        # Stacked at the figure's bottom edge, with the bottom margin sized to hold every entry, so
        # they never overlap the x-axis title above them (Plotly does not make room for them itself).
        entries = sum(1 for t in fig.data if t.showlegend is not False and t.name)
        layout["legend"] = dict(orientation="v", x=0, xanchor="left", y=0, yref="container", yanchor="bottom",
                                itemsizing="constant")
        layout["margin"]["b"] = LEGEND_ROW_PX * entries + 12
    fig.update_layout(**layout)
    if x is not None:
        fig.update_xaxes(title_text=x, automargin=True)
    if y is not None:
        fig.update_yaxes(title_text=y, automargin=True)
    return fig


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks for a log axis from lo to hi at 1, 2 and 5 times powers of ten, each written in full
    ("200", "0.05"), where Plotly would label its minor ticks with a bare digit ("2", "5")."""
    if not (lo > 0 and hi > 0):
        raise ValueError(f"a log axis needs positive bounds, got {lo} and {hi}")
    lo, hi = min(lo, hi), max(lo, hi)
    values = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
              for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    if len(values) < 2:                       # a narrow range: every 1..9 multiple, still written in full
        values = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                  for m in range(1, 10) if lo <= m * 10.0 ** e <= hi] or [lo, hi]
    return values, [f"{v:,.10g}" for v in values]


# ---------------------------------------------------------------------------------------------
# Image grids


@dataclasses.dataclass(frozen=True)
class GridLayout:
    per_row: int          # tiles in a row
    scale: int            # integer nearest-neighbour upscaling of each image
    width: int | str      # display width in px, or "stretch" to fill the column


def grid_layout(count: int, side: int, per_row: int | None = None, *, span: float = 1.0,
                max_tile: int = MAX_TILE, wrap: bool = True) -> GridLayout:
    """How to show ``count`` images of ``side`` px in a column ``span`` of the main column wide:
    tiles of at least MIN_TILE px (at most ``max_tile``), in a square grid unless the caller says
    otherwise and never more to a row than fit, upscaled by a whole number so they stay crisp; a
    grid that reaches the column's width fills it.

    ``per_row`` is the caller's row length (a traversal's steps, a neighbour row); with
    ``wrap`` (the default) a longer row is wrapped like text, without it the row is kept and its
    tiles shrink to fit (the caller keeps such rows short)."""
    count, side = max(1, int(count)), max(1, int(side))
    avail = int(span * CONTENT_PX)
    fit = max(1, avail // MIN_TILE)
    per_row = min(count, int(per_row) if per_row else math.ceil(math.sqrt(count)))   # by default a square
    if wrap:
        per_row = min(per_row, fit)
    tile = max(MIN_TILE, min(max_tile, avail // per_row))
    scale = max(1, math.ceil(tile / side))
    width = per_row * tile
    return GridLayout(per_row, scale, "stretch" if width >= avail else width)


def paired_rows(top, bottom, per_row: int):
    """Two equal batches (B, C, H, W) as alternating rows: ``per_row`` of ``top``, then the same
    ``per_row`` of ``bottom`` under them, and so on; a short last pair of rows is padded with blank
    tiles. Show the result with ``per_row`` tiles a row."""
    import torch

    rows = []
    for s in range(0, len(top), per_row):
        for part in (top[s:s + per_row], bottom[s:s + per_row]):
            blank = torch.ones((per_row - len(part), *part.shape[1:]), dtype=part.dtype)
            rows.append(torch.cat([part, blank]))
    return torch.cat(rows)


PAGE_STYLE = """<style>
/* Image grids are upscaled by whole numbers on the server; the browser's own resizing (a grid
   stretched to its column) stays crisp too, instead of blurring small images. */
[data-testid="stImage"] img { image-rendering: pixelated; }
/* A drag that starts inside the last lasso or box draws a new one: the old outline takes no pointer
   events, so it never goes into Plotly's edit mode (handles) and keeps the old selection. */
.js-plotly-plot .selectionlayer path { pointer-events: none !important; }
</style>"""


# ---------------------------------------------------------------------------------------------
# Figures


def bars(labels: Sequence[str], values, *, height: int = 300, x: str, y: str, title: str | None = None,
         colours=None, text=None, hover: str = "%{x}: %{y:.3f}<extra></extra>", y_range=None) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(labels), y=list(values), marker_color=colours, text=text, hovertemplate=hover))
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return style(fig, height=height, x=x, y=y, title=title, legend="none")


def heatmap(z, x_labels, y_labels, *, height: int, x: str, y: str, colour_title: str,
            title: str | None = None) -> go.Figure:
    """A heatmap whose colour scale runs from 0 to the largest value, so a table of small numbers
    is not washed out on a fixed 0-1 scale; the colour bar is titled and shows that range."""
    z = np.asarray(z, dtype=float)
    top = float(np.nanmax(z)) if z.size and np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=list(x_labels), y=list(y_labels), colorscale=SCALE, zmin=0,
                               zmax=top if top > 0 else 1.0,
                               colorbar=dict(title=dict(text=colour_title, side="right")),
                               hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>"))
    return style(fig, height=height, x=x, y=y, title=title, legend="none")


def histogram(groups: Sequence[tuple[str, np.ndarray]], *, height: int, x: str, y: str = "images",
              title: str | None = None, colours: Sequence[str] | None = None) -> go.Figure:
    fig = go.Figure()
    for i, (name, values) in enumerate(groups):
        fig.add_trace(go.Histogram(x=values, name=name, opacity=0.75 if len(groups) > 1 else 1.0, nbinsx=50,
                                   marker_color=(colours or CLASS_COLOURS)[i % len(colours or CLASS_COLOURS)]))
    fig.update_layout(barmode="overlay")
    return style(fig, height=height, x=x, y=y, title=title, legend="right" if len(groups) > 1 else "none")


# -- the latent map --------------------------------------------------------------------------


def map_axis_titles(method: str, points: np.ndarray, codes=None) -> tuple[str, str]:
    """Axis titles with what the units are: PCA's components with their share of the variance,
    t-SNE's and UMAP's coordinates (which have none), a 2-D latent's own z0 and z1."""
    if method == "codes":
        return "z0 (posterior mean)", "z1 (posterior mean)"
    if method == "pca":
        total = float(np.asarray(codes, dtype=np.float64).reshape(len(points), -1).var(0).sum()) if codes is not None \
            else float(points.var(0).sum())
        share = [float(points[:, i].var()) / total if total > 0 else 0.0 for i in (0, 1)]
        return (f"principal component 1 ({share[0]:.0%} of the variance)",
                f"principal component 2 ({share[1]:.0%} of the variance)")
    name = {"tsne": "t-SNE", "umap": "UMAP"}.get(method, method)
    return f"{name} 1 (no unit: only neighbours matter)", f"{name} 2"


def latent_map(points: np.ndarray, ids: np.ndarray, *, labels: np.ndarray | None = None,
               class_names: Sequence[str] = (), factor: np.ndarray | None = None, factor_name: str = "",
               axes: tuple[str, str] = ("", ""), prior: bool = False, height: int = 560) -> go.Figure:
    """One WebGL trace per class (or one, coloured by a factor); each point's customdata is its
    dataset index, so a selection is read back over every trace (explorer.selection)."""
    fig = go.Figure()
    marker = dict(size=5, opacity=MARKER_OPACITY)
    if labels is not None:
        for c in np.unique(labels):
            m = labels == c
            name = class_names[c] if c < len(class_names) else str(c)
            fig.add_trace(go.Scattergl(x=points[m, 0], y=points[m, 1], mode="markers", name=name,
                                       customdata=ids[m], marker=dict(marker, color=class_colour(c)),
                                       hovertemplate=f"class {name}<br>image %{{customdata}}<extra></extra>"))
    else:
        colour = dict(color=factor, colorscale="Viridis", showscale=True, colorbar=dict(title=factor_name)) \
            if factor is not None else dict(color=CLASS_COLOURS[0])
        fig.add_trace(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", customdata=ids, name="images",
                                   marker=dict(marker, **colour), hovertemplate="image %{customdata}<extra></extra>"))
    if prior:   # contours of the N(0, I) prior: 1, 2 and 3 standard deviations
        for r in (1, 2, 3):
            fig.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, line=dict(color="grey", dash="dot", width=1))
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    # Pan, not lasso, by default: Streamlit drops every click while the lasso or box tool is on, and a click
    # is how a point is picked and any spot decoded (explorer/spots.py); the toolbar has the lasso and the box.
    fig.update_layout(dragmode="pan")
    return style(fig, height=height, x=axes[0], y=axes[1], legend="right" if labels is not None else "none")


def class_histogram(counts: np.ndarray, totals: np.ndarray, class_names: Sequence[str], *,
                    height: int = 300) -> go.Figure:
    """How many selected images each class has, beside each class's share of all mapped images."""
    names = [class_names[c] if c < len(class_names) else str(c) for c in range(len(counts))]
    n, total = max(int(counts.sum()), 1), max(int(totals.sum()), 1)
    fig = go.Figure(go.Bar(x=names, y=counts, marker_color=[class_colour(c) for c in range(len(counts))],
                           name="selected", text=[f"{c:,}" for c in counts], textposition="outside",
                           hovertemplate="class %{x}: %{y:,} selected<extra></extra>"))
    fig.add_trace(go.Scatter(x=names, y=totals / total * n, mode="markers", name="if drawn at random",
                             marker=dict(symbol="line-ew-open", size=22, color="#222", line=dict(width=2)),
                             hovertemplate="class %{x}: %{y:.0f} expected in a random selection<extra></extra>"))
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(type="category")
    return style(fig, height=height, x="class", y="selected images", legend="below",
                 title=f"Classes of the {plural(int(counts.sum()), 'selected image')}")


def factor_ranges(selected: np.ndarray, everything: np.ndarray, names: Sequence[str], *,
                  height: int = 300) -> go.Figure:
    """One row per ground-truth factor: the range of the selection's values (a bar from its lowest
    to its highest, a mark at its median) within the range of all mapped images' values, each
    factor rescaled to 0-1 so that shape, scale and position share one axis."""
    lo, hi = everything.min(0), everything.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    rel = (selected - lo) / span
    names = list(names)
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=[1.0] * len(names), base=[0.0] * len(names), orientation="h", marker_color="#e6e6e6",
                         name="all mapped images", hoverinfo="skip"))
    fig.add_trace(go.Bar(y=names, x=rel.max(0) - rel.min(0), base=rel.min(0), orientation="h", marker_color=SELECTED,
                         name="selected", width=0.5, customdata=np.stack([selected.min(0), selected.max(0)], 1),
                         hovertemplate="%{y}: %{customdata[0]:.3g} to %{customdata[1]:.3g}<extra></extra>"))
    fig.add_trace(go.Scatter(y=names, x=np.median(rel, 0), mode="markers", name="median of the selection",
                             marker=dict(symbol="line-ns-open", size=18, color="#222", line=dict(width=3)),
                             hoverinfo="skip"))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(range=[-0.02, 1.02], tickvals=[0, 0.5, 1], ticktext=["lowest", "middle", "highest"])
    fig.update_yaxes(autorange="reversed")
    style(fig, height=height, x="value among all mapped images", y="factor", legend="below",
          title=f"Factors of the {plural(len(selected), 'selected image')}")
    fig.update_layout(margin=dict(r=36))         # room for the last tick's label ("highest")
    return fig


# -- the Train page's loss chart -------------------------------------------------------------

# What each logged part is, for the legend. 'total' is the negative ELBO of every objective.
LOSS_PARTS = MappingProxyType({
    "total": "total: negative ELBO = reconstruction + KL",
    "recon": "reconstruction: -log p(x|z)",
    "loss": "objective: what the optimiser minimises",
    "iwae": "negative IWAE bound",
    "kl": "KL(q(z|x) || p(z))",
    "codebook": "codebook loss",
    "commitment": "commitment loss (weighted)",
    "mi": "index-code mutual information",
    "tc": "total correlation",
    "dwkl": "dimension-wise KL",
    "mmd": "MMD to the prior (weighted in the objective)",
})
LOSS_TOP = ("total", "recon", "loss", "iwae")   # tens to hundreds of nats: the upper panel


def loss_colour(name: str) -> str:
    """Each loss part keeps its colour whichever parts a run logs."""
    return CLASS_COLOURS[list(LOSS_PARTS).index(name) % len(CLASS_COLOURS)] if name in LOSS_PARTS else CLASS_COLOURS[-1]
NOT_LOSSES = frozenset({"step", "epoch", "kl_weight", "perplexity", "codebook_usage", "test_elbo"})


def loss_parts(history: list[dict]) -> tuple[list[str], list[str]]:
    """The parts to draw, (upper panel, lower panel); 'loss' only where it is not the total itself."""
    names = [k for k in history[0] if k not in NOT_LOSSES and all(k in h for h in history)]
    if "loss" in names and all(abs(h["loss"] - h["total"]) <= 1e-4 * max(1.0, abs(h["total"]))
                               for h in history if "total" in h):
        names.remove("loss")                  # a plain ELBO optimises exactly the total: one line, not two
    return [k for k in LOSS_TOP if k in names], [k for k in names if k not in LOSS_TOP]


def loss_figure(history: list[dict], height: int = 420) -> go.Figure:
    """Losses per image against the training step: the ELBO's large parts above (log axis with every
    tick written in full), the KL and other regularisers below on their own axis."""
    top, bottom = loss_parts(history)
    steps = [h["step"] for h in history]
    rows = 2 if bottom else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.6, 0.4] if rows == 2 else None)
    for row, names in ((1, top), (2, bottom)):
        for name in names:
            fig.add_trace(go.Scatter(x=steps, y=[h[name] for h in history], mode="lines", name=LOSS_PARTS.get(name, name),
                                     line=dict(color=loss_colour(name), width=2),
                                     hovertemplate=f"{name}: %{{y:.3f}} at step %{{x:,}}<extra></extra>"), row=row, col=1)
    top_values = [h[k] for h in history for k in top]
    if top_values and min(top_values) > 0:
        lo, hi = min(top_values), max(top_values)
        vals, text = log_ticks(lo, hi)
        fig.update_yaxes(type="log", tickmode="array", tickvals=vals, ticktext=text, row=1, col=1)
    fig.update_yaxes(title_text="loss (nats per image)", row=1, col=1)
    if rows == 2:
        what = "KL" if bottom == ["kl"] else "KL and other terms" if "kl" in bottom else "other terms"
        fig.update_yaxes(title_text=f"{what} (nats per image)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="training step", row=rows, col=1)
    return style(fig, height=height, legend="below")
