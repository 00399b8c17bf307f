"""Decode anywhere on the latent map: every spot of the 2-D map is clickable, and stands for a code.

Plotly fires no event for a click on empty space, so ``add_click_grid`` lays an invisible grid of
markers under the map's points (no hover label, no legend entry): a click anywhere lands on the
nearest node, a click on an image's point on that point. ``clicked_spot`` reads the spot back
from the chart's selection event (a click, not a box or lasso). The spot goes through the map's
inverse (vae_core.latent.inverse) to a code, and ``decoded_panel`` draws the decoded image beside the map.

``add_decoded_field`` is the overlay: a grid of images decoded at evenly spaced spots, laid over
the map, over a layer of the prior's log-density at the inverse-mapped codes of a fine grid, so
the holes of the aggregate posterior (codes the prior expects and no image uses, or the other way
round) show.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image

from vae_core import images
from vae_core.latent import explore, inverse

from explorer import widgets

CLICK_GRID = 40              # nodes a side: 12-18 px apart on the map, within Plotly's 20-px hover reach (60 had
                             # Plotly's click handling take 30 ms more: bench/map_click_latency.py)
DENSITY_GRID = 60            # spots a side of the decoded field's log-density layer
FIELD_TILES = (4, 16, 10)    # decoded images a side of the overlay: least, most, default
GRID_NAME = "spots"          # the click grid's trace name
SPOT_PX, SPOT_OPACITY = 6, 0.5   # a selected node of the grid: smaller than the nodes' spacing
_SPOT, _LAST_CLICK, _FOR = "map_spot_x", "map_last_click", "map_spot_for"


def add_click_grid(fig: go.Figure, points: np.ndarray, n: int = CLICK_GRID) -> go.Figure:
    """An invisible n x n grid of markers under the map's traces, so a click anywhere is an event."""
    _, _, nodes = inverse.grid(points, n)
    grid = go.Scattergl(x=nodes[:, 0], y=nodes[:, 1], mode="markers", name=GRID_NAME, showlegend=False,
                        marker=dict(size=8, opacity=0), hoverinfo="none",
                        # a clicked spot shows as a dot; nodes a box or lasso takes in show as a light
                        # dotted veil, not as a block hiding the points (or the raster) inside it
                        selected=dict(marker=dict(opacity=SPOT_OPACITY, color="black", size=SPOT_PX)))
    fig.add_trace(grid)
    fig.data = (fig.data[-1], *fig.data[:-1])          # first: drawn under the points, which win a close click
    return fig


def clicked_spot(event) -> tuple[float, float] | None:
    """The (x, y) of a click on the chart (on a point or on the grid); None for a box, a lasso or nothing."""
    sel = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if not sel:
        return None
    sel = dict(sel)
    if sel.get("box") or sel.get("lasso"):
        return None
    points = [p for p in sel.get("points") or [] if p.get("x") is not None and p.get("y") is not None]
    return (float(points[-1]["x"]), float(points[-1]["y"])) if points else None


def spot_inputs(signature, event, where) -> tuple[float, float] | None:
    """The spot to decode: the latest click, or x and y typed in; forgotten when the map changes."""
    x_key, y_key = _SPOT, "map_spot_y"
    if st.session_state.get(_FOR) != signature:         # another map: a spot on the old one means nothing
        st.session_state[_FOR] = signature
        st.session_state[x_key] = st.session_state[y_key] = None
        st.session_state[_LAST_CLICK] = clicked_spot(event)
    click = clicked_spot(event)
    if click is not None and click != st.session_state.get(_LAST_CLICK):
        st.session_state[_LAST_CLICK] = click
        st.session_state[x_key], st.session_state[y_key] = click
    c1, c2 = where.columns(2)
    x = c1.number_input("Spot x", value=None, format="%.3f", key=x_key, placeholder="click the map")
    y = c2.number_input("Spot y", value=None, format="%.3f", key=y_key, placeholder="click the map")
    return None if x is None or y is None else (float(x), float(y))


def decode_spots(model, inv, spots, y: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (M, *latent) and decoded images (M, C, H, W) at 2-D spots (M, 2)."""
    z = inv(np.asarray(spots, np.float32)).reshape(-1, *model.latent_shape)
    return z, explore.decode(model, z, y)


def decoded_panel(model, inv, spot: tuple[float, float], y: int | None, method: str, where, typical: float) -> None:
    """The image decoded at ``spot``, with its code's log-density under the prior beside ``typical``, the
    mapped codes' median."""
    z, x = decode_spots(model, inv, [spot], y)
    density = ""
    if model.as_codebook() is None:                  # a codebook has no density over a continuous z
        density = (f"; log p(z) under the prior {float(inverse.prior_log_density(z)[0]):.1f} "
                   f"(the mapped images' codes: median {typical:.1f})")
    widgets.show_grid(x, nrow=1, max_tile=widgets.PREVIEW_TILE, where=where,
                      caption=f"decoded at ({spot[0]:.3g}, {spot[1]:.3g}){density}")
    where.caption(inverse.describe(method))


# ---------------------------------------------------------------------------------------------
# The decoded field


def _tile_uri(img: torch.Tensor) -> str:
    """A data URI of one decoded image (C, H, W): a grey image becomes dark ink on a clear ground,
    so the layer under it shows through; a colour image stays opaque."""
    arr = (img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    if arr.shape[0] == 1:
        rgba = np.zeros((*arr.shape[1:], 4), np.uint8)
        rgba[..., 3] = arr[0]
        pil = Image.fromarray(rgba, "RGBA")
    else:
        pil = images.to_pil(img.unsqueeze(0)) if arr.shape[0] != 3 else Image.fromarray(arr.transpose(1, 2, 0), "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decoded_field(model, inv, points: np.ndarray, tiles: int, y: int | None = None, density_n: int = DENSITY_GRID):
    """What the overlay draws: tile centres (t*t, 2), their images, and the prior's log-density on a
    fine grid (xs, ys, (n, n)), or None for a model whose prior is not a standard normal (VQ-VAE)."""
    xs, ys, nodes = inverse.grid(points, tiles, margin=0.0)
    _, x = decode_spots(model, inv, nodes, y)
    density = None
    if model.as_codebook() is None:                  # a codebook has no density over a continuous z
        dx, dy, fine = inverse.grid(points, density_n)
        density = dx, dy, inverse.prior_log_density(inv(fine)).numpy().reshape(len(dy), len(dx))
    return (xs, ys, nodes, x), density


def add_decoded_field(fig: go.Figure, field, density) -> go.Figure:
    """Lay the decoded images over the map, and the density layer under everything."""
    xs, ys, nodes, x = field
    w = (xs[1] - xs[0]) * 0.95 if len(xs) > 1 else 1.0
    h = (ys[1] - ys[0]) * 0.95 if len(ys) > 1 else 1.0
    for (cx, cy), img in zip(nodes, x):
        fig.add_layout_image(source=_tile_uri(img), xref="x", yref="y", x=float(cx), y=float(cy), sizex=w, sizey=h,
                             xanchor="center", yanchor="middle", sizing="stretch", opacity=0.9, layer="above")
    if density is not None:
        dx, dy, z = density
        fig.add_trace(go.Heatmap(x=dx, y=dy, z=z, colorscale="Blues", opacity=0.55, hoverinfo="skip", zsmooth="best",
                                 colorbar=dict(title=dict(text="log p(z), prior", side="right"), thickness=12,
                                               x=1.0, xanchor="left", y=0.0, yanchor="bottom", len=0.5)))
        fig.data = (fig.data[-1], *fig.data[:-1])      # under the click grid and the points
    return fig


__all__ = ["CLICK_GRID", "FIELD_TILES", "add_click_grid", "add_decoded_field", "clicked_spot", "decode_spots",
           "decoded_field", "decoded_panel", "spot_inputs"]
