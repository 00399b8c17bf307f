"""Training in motion: a run's latent map, epoch by epoch, as an animation (a slider and a play button).

The codes come from the run's snapshots (vae_core.training.snapshots): a run trained on the Train page
keeps them in memory (and in its folder once saved), a run folder written by ``vae_core train
--snapshots N`` in ``snapshots.safetensors``. Each epoch's map is PCA, turned to match the epoch
before (Procrustes), so the points move rather than jump.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from vae_core.training import snapshots
from vae_core.training.snapshots import Snapshots

from explorer import figures
from explorer.session import Context

FRAME_MS = 400                    # one epoch on screen while playing
TRAINED_MOTION = "trained_motion"  # session state: (ModelInfo key, Snapshots) of the run made the current model


def motion_figure(maps: np.ndarray, epochs: Sequence[int], labels: np.ndarray | None = None,
                  class_names: Sequence[str] = (), height: int = 520) -> go.Figure:
    """One frame per saved epoch of ``maps`` (E, n, 2), one trace per class, fixed axes, slider and play."""
    groups = [(c, labels == c) for c in np.unique(labels)] if labels is not None else [(None, slice(None))]

    def traces(m):
        return [go.Scatter(x=m[sel, 0], y=m[sel, 1], mode="markers", hoverinfo="skip",
                           name="images" if c is None else (class_names[c] if c < len(class_names) else str(c)),
                           marker=dict(size=5, opacity=figures.MARKER_OPACITY,
                                       color=figures.class_colour(0 if c is None else c)))
                for c, sel in groups]

    frames = [go.Frame(data=traces(m), name=str(e), layout=dict(title_text=f"epoch {e}"))
              for m, e in zip(maps, epochs)]
    fig = go.Figure(data=traces(maps[-1]), frames=frames)
    lo, hi = maps.reshape(-1, 2).min(0), maps.reshape(-1, 2).max(0)
    pad = (hi - lo) * 0.05 + 1e-6
    fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]], autorange=False)
    fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]], autorange=False)
    step = dict(frame=dict(duration=FRAME_MS, redraw=False), transition=dict(duration=FRAME_MS * 0.8), mode="immediate")
    fig.update_layout(
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.26, xanchor="left", yanchor="top",
                          showactive=False, pad=dict(t=0, r=10),
                          buttons=[dict(label="Play", method="animate", args=[None, dict(step, fromcurrent=False)]),
                                   dict(label="Pause", method="animate",
                                        args=[[None], dict(step, frame=dict(duration=0, redraw=False))])])],
        sliders=[dict(active=len(frames) - 1, x=0.16, len=0.84, y=-0.2, yanchor="top", pad=dict(t=0),
                      currentvalue=dict(prefix="epoch ", font=dict(size=14)),
                      steps=[dict(label=str(e), method="animate", args=[[str(e)], dict(step, mode="immediate")])
                             for e in epochs])])
    fig = figures.style(fig, height=height, x="principal component 1 (aligned to the epoch before)",
                        y="principal component 2", title=f"epoch {epochs[-1]}",
                        legend="right" if labels is not None else "none")
    fig.update_layout(margin=dict(b=170))
    return fig


def run_snapshots(ctx: Context) -> Snapshots | None:
    """The current model's snapshots: a run trained here and made the current model, or a run folder's."""
    info = ctx.info
    if info is None:
        return None
    if info.kind == "session":
        kept = st.session_state.get(TRAINED_MOTION)
        return kept[1] if kept is not None and kept[0] == info.key else None
    if info.folder is not None:
        return snapshots.read(info.folder)
    return None


def show(snaps: Snapshots, data, key: str, height: int = 520) -> None:
    """The animation of ``snaps`` (labels and class names from ``data`` where it has them)."""
    maps = snapshots.aligned_maps(snaps)
    labels = snaps.labels.numpy() if snaps.labels is not None else None
    names = data.class_names if data is not None else ()
    st.plotly_chart(motion_figure(maps, snaps.epochs, labels, names, height=height), key=key)
    st.caption(f"The codes of the same {figures.plural(len(snaps.indices), 'training image')} after each of "
               f"{figures.plural(len(snaps.epochs), 'saved epoch')} (epoch 0: before training); each epoch's "
               "PCA map is turned (Procrustes) to match the one before, so points move rather than jump. "
               "Press Play, or drag the slider.")


__all__ = ["TRAINED_MOTION", "motion_figure", "run_snapshots", "show"]
