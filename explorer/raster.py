"""The latent map above its WebGL point budget: a density raster drawn on the server.

Up to ``VAE_EXPLORER_MAX_MAP_POINTS`` the map sends every point to the browser (WebGL). Above it,
the browser would get megabytes of points and draw them slowly, so datashader bins the points
into one image of ``RASTER_PX`` pixels on the server (each pixel's colour mixes its classes'
colours, its strength shows how many images fall there; or a factor's mean; or a plain count) and
the page sends that image alone. The figure keeps the map's axes and the invisible click grid of
explorer/spots.py, so a click still decodes any spot and the box tool still selects: ``in_box``
finds the images inside a box (every box the user drew) from the points kept on the server.

Nothing here calls streamlit.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sequential, unlabel_rgb

from explorer import figures
from vae_core.latent import inverse

RASTER_PX = (720, 540)        # width, height of the finest raster: about the map's plot area in the wide layout
MIN_PX = (64, 48)             # of the coarsest
MARGIN = 0.05                 # of the points' range on each side, as the click grid's (vae_core.latent.inverse.grid)
COUNT_COLOURS = tuple("#%02x%02x%02x" % tuple(map(int, unlabel_rgb(c))) for c in sequential.Blues[3:])  # light to dark
FACTOR_COLOURS = sequential.Viridis


def extent(points: np.ndarray, margin: float = MARGIN) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1): the points' range with a margin, the click grid's own range (its corners)."""
    xs, ys, _ = inverse.grid(points, 2, margin)
    return float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])


def raster_size(n: int) -> tuple[int, int]:
    """Pixels of the raster of ``n`` points: about one pixel a point, up to ``RASTER_PX``. A finer
    raster of few points is mostly empty pixels and single faint dots; the browser stretches a
    coarser one smoothly over the plot, so the density reads as a surface."""
    w, h = RASTER_PX
    k = min(1.0, (max(n, 1) / (w * h)) ** 0.5)
    return max(MIN_PX[0], round(w * k)), max(MIN_PX[1], round(h * k))


def shade(points: np.ndarray, *, labels: np.ndarray | None = None, factor: np.ndarray | None = None,
          box: tuple[float, float, float, float] | None = None, size: tuple[int, int] | None = None):
    """The raster as a PIL image (RGBA, clear where no image falls), and what its colour means:
    ("classes", None), ("factor", (lo, hi)) or ("count", (least, most images in a pixel)).
    ``size`` (width, height) is ``raster_size(len(points))`` unless given."""
    size = size or raster_size(len(points))
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd

    x0, x1, y0, y1 = box or extent(points)
    canvas = ds.Canvas(plot_width=size[0], plot_height=size[1], x_range=(x0, x1), y_range=(y0, y1))
    frame = {"x": points[:, 0].astype(np.float64), "y": points[:, 1].astype(np.float64)}
    if labels is not None:
        k = int(labels.max()) + 1 if len(labels) else 1
        frame["c"] = pd.Categorical(labels.astype(np.int64), categories=range(k))
        agg = canvas.points(pd.DataFrame(frame), "x", "y", agg=ds.count_cat("c"))
        img = tf.shade(agg, color_key=[figures.class_colour(c) for c in range(k)], how="eq_hist", min_alpha=70)
        meaning = ("classes", None)
    elif factor is not None:
        frame["f"] = factor.astype(np.float64)
        agg = canvas.points(pd.DataFrame(frame), "x", "y", agg=ds.mean("f"))
        lo, hi = float(np.nanmin(factor)), float(np.nanmax(factor))
        img = tf.shade(agg, cmap=list(FACTOR_COLOURS), how="linear", span=(lo, hi if hi > lo else lo + 1))
        meaning = ("factor", (lo, hi))
    else:
        agg = canvas.points(pd.DataFrame(frame), "x", "y", agg=ds.count())
        most = max(int(agg.values.max()), 1)
        img = tf.shade(agg, cmap=list(COUNT_COLOURS), how="log", span=(1, max(most, 2)))
        meaning = ("count", (1, most))
    img = tf.dynspread(img, threshold=0.5, max_px=2)           # lone points stay visible
    return img.to_pil(), meaning


def figure(points: np.ndarray, *, labels: np.ndarray | None = None, class_names=(), factor: np.ndarray | None = None,
           factor_name: str = "", axes: tuple[str, str] = ("", ""), prior: bool = False,
           height: int = 560) -> go.Figure:
    """The map as one server-drawn image over the map's axes, with a legend (classes) or a colour bar
    (a factor, or images per pixel) made of empty traces, since the image itself has none."""
    x0, x1, y0, y1 = box = extent(points)
    pil, (kind, span) = shade(points, labels=labels, factor=factor, box=box)
    fig = go.Figure()
    fig.add_layout_image(source=pil, xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0,
                         sizing="stretch", layer="below", xanchor="left", yanchor="top")
    if kind == "classes":
        for c in np.unique(labels):
            name = class_names[c] if c < len(class_names) else str(c)
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                     marker=dict(size=9, color=figures.class_colour(c))))
    else:
        lo, hi = span
        if kind == "factor":
            bar = dict(colorscale="Viridis", cmin=lo, cmax=hi, colorbar=dict(title=dict(text=factor_name, side="right")))
        else:       # counts shaded on a log scale: the bar's ticks say how many images a pixel holds
            vals, text = figures.log_ticks(1, max(hi, 2))
            bar = dict(colorscale=[[i / (len(COUNT_COLOURS) - 1), c] for i, c in enumerate(COUNT_COLOURS)],
                       cmin=0, cmax=np.log10(max(hi, 2)),
                       colorbar=dict(title=dict(text="images per pixel", side="right"),
                                     tickvals=np.log10(vals).tolist(), ticktext=text))
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(color=[bar["cmin"], bar["cmax"]], showscale=True, **bar)))
    fig.update_xaxes(range=[x0, x1], showgrid=False, zeroline=False)
    fig.update_yaxes(range=[y0, y1], showgrid=False, zeroline=False)
    if prior:
        for r in (1, 2, 3):
            fig.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, line=dict(color="grey", dash="dot", width=1))
    fig.update_layout(dragmode="pan")       # as the WebGL map: a click decodes; the box is in the toolbar
    return figures.style(fig, height=height, x=axes[0], y=axes[1], legend="right" if kind == "classes" else "none")


def boxes(event) -> list[tuple[float, float, float, float]]:
    """Every box drawn on the chart, as (x0, x1, y0, y1) with x0 <= x1 and y0 <= y1."""
    sel = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    out = []
    for b in (dict(sel).get("box") or []) if sel else []:
        xs, ys = b.get("x") or [], b.get("y") or []
        if len(xs) == 2 and len(ys) == 2 and None not in (*xs, *ys):
            out.append((float(min(xs)), float(max(xs)), float(min(ys)), float(max(ys))))
    return out


def in_box(points: np.ndarray, event) -> np.ndarray:
    """Positions (into ``points``) of the points inside any box drawn on the chart, in order."""
    inside = np.zeros(len(points), bool)
    for x0, x1, y0, y1 in boxes(event):
        inside |= (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    return np.flatnonzero(inside)
