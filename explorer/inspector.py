"""The widgets of the hierarchical inspector and the codebook explorer: what the pages add for these models.

Each function reads its widgets, calls vae_core.latent.hierarchy or vae_core.latent.codebook, and draws; the pages
call them only for a model of the right kind (a hierarchical VAE, a VQ-VAE).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from explorer import controls, limits, selection, widgets
from explorer.page_settings import ANALYZE
from vae_core.latent import codebook, explore, hierarchy as layers
from vae_core.evaluation.metrics import AU_THRESHOLD

LAYER_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")


# ---------------------------------------------------------------------------------------------
# Hierarchical VAE


def layer_temperatures(model, page, key: str, ctx) -> list[float]:
    """One temperature slider per layer, top first (NVAE's per-layer temperature); 0 holds a layer at its
    prior mean given the layers above."""
    names = layers.layer_names(model)
    with st.expander("Temperature per layer", expanded=True):
        st.caption("Each layer's temperature scales its prior's standard deviation (times the temperature above). "
                   "At 0 a layer takes its prior mean given the layers above it, so only the other layers vary.")
        cols = st.columns(min(len(names), 4))
        s = page[key]
        for i in range(len(names)):                  # a slider's value, where no link or earlier visit set it
            st.session_state.setdefault(f"{key}{i}", s.default)
        return [controls.rounded(cols[i % len(cols)].slider(name.capitalize(), s.lo, s.hi, step=s.step,
                                                            key=f"{key}{i}")) for i, name in enumerate(names)]


def resample_layer_section(model, page, ctx, seed: int, temperature: float) -> None:
    """Keep the layers above one layer, draw it and every layer below afresh: what that layer controls."""
    st.subheader("Resample one layer")
    names = layers.layer_names(model)
    c1, c2, c3 = st.columns([2, 1, 1])
    layer = controls.draw(page, "sample_resample_layer", ctx, c1, label="Layer to draw afresh, with every layer below it",
                          format_func=lambda i: names[i].capitalize())
    rows = controls.draw(page, "sample_resample_rows", ctx, c2)
    cols = controls.draw(page, "sample_resample_cols", ctx, c3)
    limits.settings().check_images(model, rows * cols, "images in the resample grid")
    grid = layers.resample_layer(model, layer, rows, cols, seed=seed, temperature=temperature)
    above = "the layers above it" if layer else "nothing (the top layer has no layers above)"
    widgets.show_grid(grid, nrow=cols, wrap=False,
                      caption=f"Each row keeps one draw of {above}; its first image is that draw whole, and the "
                              f"others draw {names[layer]} and every layer below afresh. What changes along a row "
                              "is what those layers control.")


def layer_traversal_section(model, page, ctx, stats: explore.UnitStats, base: torch.Tensor, y) -> None:
    """A traversal grid of one layer's units, most informative first, from the page's base code."""
    st.subheader("Traverse one layer")
    names = layers.layer_names(model)
    c1, c2 = st.columns([2, 1])
    layer = controls.draw(page, "traverse_layer", ctx, c1, label="Layer", format_func=lambda i: names[i],
                          horizontal=True)
    units = layers.layer_units(model, stats, layer)
    rows = controls.draw(page, "traverse_layer_rows", ctx, c2)
    top = units[:rows]
    grid = explore.traversal_grid(model, base, top, stats, -3.0, 3.0, 9, y=y)
    widgets.show_grid(grid, nrow=9, wrap=False,
                      caption=f"{names[layer].capitalize()}: rows " + ", ".join(f"z{u}" for u in top) +
                              "; columns: 9 values from -3 to 3 prior standard deviations. The layers below keep "
                              "their standardised values, so they follow what this layer decides.")


def layers_analysis(summary: list[dict]) -> None:
    """KL per layer and active units per layer, and KL per unit coloured by layer."""
    names = [s["name"] for s in summary]
    cols = st.columns(len(summary))
    for col, s in zip(cols, summary):
        col.metric(s["name"].capitalize(), f"{s['kl']:.1f} nats",
                   help=f"{s['active_units']} of {s['units']} units active (Cov_x E[z|x] > {AU_THRESHOLD})")
    left, right = st.columns(2)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[s["kl"] for s in summary], name="KL (nats)", marker_color=LAYER_COLOURS[0],
                         text=[f"{s['kl']:.1f}" for s in summary], hovertemplate="%{x}: %{y:.2f} nats<extra></extra>"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), title="KL per layer",
                      xaxis_title="layer (top first)", yaxis_title="KL (nats per image)")
    left.plotly_chart(fig, key="an_layers_kl")
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[s["active_units"] for s in summary], name="active",
                         marker_color=LAYER_COLOURS[2], text=[f"{s['active_units']}/{s['units']}" for s in summary]))
    fig.add_trace(go.Bar(x=names, y=[s["units"] - s["active_units"] for s in summary], name="inactive",
                         marker_color="#bbbbbb"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), barmode="stack", title="Active units per layer",
                      xaxis_title="layer (top first)", yaxis_title="units")
    right.plotly_chart(fig, key="an_layers_active")
    fig = go.Figure()
    for i, s in enumerate(summary):
        fig.add_trace(go.Bar(x=[f"z{s['first_unit'] + u}" for u in range(s["units"])], y=s["kl_per_unit"],
                             name=s["name"], marker_color=LAYER_COLOURS[i % len(LAYER_COLOURS)],
                             hovertemplate="%{x}: %{y:.3f} nats<extra></extra>"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), title="KL per unit, coloured by layer",
                      xaxis_title="latent unit", yaxis_title="KL (nats)")
    st.plotly_chart(fig, key="an_layers_units")


# ---------------------------------------------------------------------------------------------
# VQ-VAE


def top_k_slider(model, page, key: str, ctx) -> int:
    k = model.config.codebook_size
    return controls.draw(page, key, ctx, label=f"Top-k codes at each draw (0: all {k})",
                     help="The code prior draws each code from only its k most likely codes; with the temperature "
                          "this trades variety for cleaner digits.")


def codebook_analysis(ctx, usage: dict) -> None:
    """Usage over the codebook, each code's decoded patch, and a code grid to edit and decode."""
    model = ctx.model
    freq, K = usage["frequencies"], len(usage["frequencies"])
    c = st.columns(3)
    c[0].metric("Codes used", f"{usage['usage']:.0%}", help=f"of {K} codes, on {usage['n_images']} images")
    c[1].metric("Perplexity", f"{usage['perplexity']:.1f}", help="exp(entropy) of the code frequencies: how many "
                                                                 "codes are in effective use")
    c[2].metric("Unused codes", f"{int((freq == 0).sum())}")
    fig = go.Figure(go.Bar(x=list(range(K)), y=100 * freq, marker_color=np.where(freq > 0, "#4c78a8", "#bbbbbb"),
                           hovertemplate="code %{x}: %{y:.2f}% of positions<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10), title="Usage over the codebook",
                      xaxis_title="code", yaxis_title="share of grid positions (%)")
    st.plotly_chart(fig, key="an_cb_usage")
    patches = codebook.code_patches(model, usage["most_used"])
    widgets.show_grid(patches, nrow=8, caption=f"What each code draws, codes 0 to {K - 1} left to right, top to "
                                                f"bottom: a 3x3 block of code k in a grid of code "
                                                f"{usage['most_used']} (the most used), decoded and cropped to it")
    code_grid_editor(ctx, freq)


def code_grid_editor(ctx, freq: np.ndarray) -> None:
    """Click a cell of an image's code grid (or type its row and column), pick a code, and decode."""
    model, data, model_key = ctx.model, ctx.data, ctx.model_key
    st.markdown("**Edit a code grid**")
    g, K = model.config.grid, model.config.codebook_size
    left, right = st.columns([3, 2])
    with right:
        index = int(controls.draw(ANALYZE, "an_cb_index", ctx))
        x = data.images[index:index + 1].float() / 255
        source = (model_key, index)
        if st.session_state.get("an_cb_source") != source:            # a new image: start from its own codes
            st.session_state["an_cb_source"] = source
            st.session_state["an_cb_codes"] = codebook.image_codes(model, x)[0].tolist()
            st.session_state["an_cb_row"] = st.session_state["an_cb_col"] = g // 2
        for k in ("an_cb_row", "an_cb_col"):                          # forgotten while another page was shown
            if k not in st.session_state:
                st.session_state[k] = g // 2
        codes = torch.tensor(st.session_state["an_cb_codes"])
    with left:
        # A click is read by the chart's callback, before this run draws anything, so the grid is drawn with the
        # clicked cell outlined and the Row and Column inputs at the cell, in one run. A chart holding a selection
        # takes the next click as "deselect" (each click after the first needed two): each click draws the figure
        # anew (its click count in the layout's meta), and a new figure is a fresh chart, holding no selection.
        figure = _grid_figure(codes, st.session_state["an_cb_row"], st.session_state["an_cb_col"])
        figure.update_layout(meta={"clicks": st.session_state.get("an_cb_clicks", 0)})
        st.plotly_chart(figure, key="an_cb_grid", on_select=_cell_clicked, selection_mode="points")
    with right:
        r1, r2 = st.columns(2)
        row = int(r1.number_input("Row", 0, g - 1, key="an_cb_row"))
        col = int(r2.number_input("Column", 0, g - 1, key="an_cb_col"))
        # One picker whose value follows the chosen cell (a key per cell would drop the pick whenever a rerun
        # drew another cell's picker in between). Picking a code sets the cell at once: its callback reads the
        # cell and the code when the pick happens, so no later rerun can carry an older pick.
        if st.session_state.get("an_cb_cell") != (row, col) or "an_cb_code" not in st.session_state:
            st.session_state["an_cb_cell"] = (row, col)
            st.session_state["an_cb_code"] = int(codes[row, col])
        st.selectbox("Code for this cell", range(K), key="an_cb_code", on_change=_set_cell, args=(K,),
                     format_func=lambda k: f"code {k} ({100 * freq[k]:.1f}% of positions)",
                     help="The cell takes the code you pick; the grid's image is decoded again below.")
        st.button("Reset to the image's codes", key="an_cb_reset", on_click=st.session_state.pop,
                  args=("an_cb_source", None))
    original = codebook.image_codes(model, x)[0]
    edited = int((codes != original).sum())
    st.session_state["an_cb_edited"] = edited            # a link carries the image, not these edits
    images = torch.cat([x, codebook.decode_codes(model, original), codebook.decode_codes(model, codes)])
    widgets.show_grid(images, nrow=3, span=0.6,
                      caption=f"the image, decoded from its own codes, and decoded from the grid above ({edited} "
                              f"cell{'s' if edited != 1 else ''} edited)")


def _cell_clicked() -> None:
    """The code grid's click: its cell becomes the chosen one (a click that only deselected changes nothing)."""
    state = st.session_state
    state["an_cb_clicks"] = state.get("an_cb_clicks", 0) + 1
    picked = selection.selected_indices(state.get("an_cb_grid"))
    if picked:
        state["an_cb_row"], state["an_cb_col"] = divmod(picked[-1], len(state["an_cb_codes"]))   # a g x g grid


def _set_cell(codebook_size: int) -> None:
    state = st.session_state
    codes = torch.tensor(state["an_cb_codes"])
    state["an_cb_codes"] = codebook.edit_code(codes, int(state["an_cb_row"]), int(state["an_cb_col"]),
                                              int(state["an_cb_code"]), codebook_size).tolist()


def _grid_figure(codes: torch.Tensor, row: int, col: int) -> go.Figure:
    """The code grid as square markers (a point each, so a click selects a cell), the chosen cell outlined."""
    g = codes.shape[-1]
    rr, cc = np.divmod(np.arange(g * g), g)
    values = codes.flatten().numpy()
    fig = go.Figure(go.Scatter(
        x=cc, y=rr, mode="markers+text", text=[str(v) for v in values], customdata=np.arange(g * g),
        marker=dict(symbol="square", size=34, color=values, colorscale="Viridis", showscale=False,
                    line=dict(width=[4 if (r, c) == (row, col) else 0 for r, c in zip(rr, cc)], color="#e45756")),
        textfont=dict(color="white", size=12), hovertemplate="row %{y}, column %{x}: code %{text}<extra></extra>"))
    fig.update_layout(height=330, width=330, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      title="Code grid (click a cell)", dragmode=False, clickmode="event+select",
                      xaxis=dict(title="column", range=[-0.6, g - 0.4], dtick=1, showgrid=False, zeroline=False,
                                 constrain="domain"),          # square cells: the axis narrows, its range stays
                      yaxis=dict(title="row", range=[g - 0.4, -0.6], dtick=1, showgrid=False, zeroline=False,
                                 scaleanchor="x"))
    return fig
