"""Latent map: the dataset's codes in 2-D, coloured by label; select points to see them."""
from types import MappingProxyType

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from explorer import jobs, limits, session, startup, widgets
from vae_core import explore, project

st.title("Latent map")
METHODS = MappingProxyType({"PCA": "pca", "t-SNE": "tsne", "UMAP": "umap"})
CODES_2D = "Codes (2-D latent)"


def figure(points, idx, data, colour: str, prior: bool) -> go.Figure:
    """One WebGL trace per class (or one coloured by a factor); customdata holds dataset indices."""
    fig = go.Figure()
    ids = idx.numpy()
    if colour == "label" and data.labels is not None:
        labels = data.labels[idx].numpy()
        for c in np.unique(labels):
            m = labels == c
            name = data.class_names[c] if c < len(data.class_names) else str(c)
            fig.add_trace(go.Scattergl(x=points[m, 0], y=points[m, 1], mode="markers", name=name,
                                       customdata=ids[m], marker=dict(size=4, opacity=0.7),
                                       hovertemplate=f"class {name}<br>image %{{customdata}}<extra></extra>"))
    else:
        f = data.factor_names.index(colour) if colour in data.factor_names else None
        fig.add_trace(go.Scattergl(
            x=points[:, 0], y=points[:, 1], mode="markers", customdata=ids, name="images",
            marker=dict(size=4, opacity=0.7, color=None if f is None else data.factors[idx, f].numpy(),
                        colorscale="Viridis", showscale=f is not None, colorbar=dict(title=colour)),
            hovertemplate="image %{customdata}<extra></extra>"))
    if prior:   # contours of the N(0, I) prior: 1, 2 and 3 standard deviations
        for r in (1, 2, 3):
            fig.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, line=dict(color="grey", dash="dot", width=1))
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=10, b=10), dragmode="lasso",
                      legend=dict(itemsizing="constant"))
    return fig


with session.guard("The latent map"):
    ctx = session.context()
    model = ctx.require_model()
    data = ctx.require_data()
    c1, c2, c3 = st.columns([2, 3, 2])
    lo, hi = min(100, len(data)), min(len(data), 20_000)
    n = c1.slider("Points", lo, hi, min(hi, 5000), step=max(1, min(100, hi - lo)), key="map_points") if hi > lo else hi
    choices = ([CODES_2D] if model.latent_shape == (2,) else []) + list(METHODS)
    method = c2.radio("Projection", choices, key="map_method", horizontal=True)
    colours = (["label"] if data.labels is not None else []) + list(data.factor_names) + ["none"]
    colour = c3.selectbox("Colour by", colours, key="map_colour")
    params = {}
    if method == "t-SNE":
        params["perplexity"] = st.slider("Perplexity", 5.0, 50.0, 30.0, 1.0, key="map_perplexity")
    elif method == "UMAP":
        p1, p2 = st.columns(2)
        params["n_neighbors"] = p1.slider("Neighbours", 5, 50, 15, key="map_neighbors")
        params["min_dist"] = p2.slider("Minimum distance", 0.0, 0.99, 0.1, 0.01, key="map_min_dist")

    limits.settings().check_points(model, n, METHODS.get(method, "pca"))
    codes, idx = jobs.codes_for(ctx, n)
    if method == CODES_2D:
        points, pending = codes.numpy(), None
    else:
        points, pending = jobs.projection(ctx, session.session_id(), codes, METHODS[method], params,
                                          after=startup.warm_up().done)
    if pending is not None:
        ahead = jobs.queue().ahead_of(session.session_id())
        st.info(f"{method} is running in the background" + (f" after {ahead} other map{'s' * (ahead > 1)}"
                                                            if ahead else "") +
                "; PCA is shown until it is ready.")

        @st.fragment(run_every=jobs.WAIT_POLL_S)
        def wait_for_map():
            if pending.done:
                st.rerun()

        wait_for_map()
    st.caption(f"{len(codes):,} images of {data.name}, {'posterior means' if method == CODES_2D else method if pending is None else 'PCA'}"
               " - select points (click, box or lasso) to see them.")
    event = st.plotly_chart(figure(points, idx, data, colour, method == CODES_2D), key="map_chart",
                            on_select="rerun", selection_mode=("points", "box", "lasso"))

    picked = widgets.selected_points(event)
    typed = st.text_input("Or show images by index", key="map_pick", placeholder="e.g. 3, 17, 42")
    position = {int(i): p for p, i in enumerate(idx.tolist())}
    if typed.strip():
        wanted = widgets.parse_indices(typed)
        missing = [i for i in wanted if i not in position]
        if missing:
            st.warning(f"Not among the mapped points: {missing[:10]}; raise the number of points to include them.")
        picked = [i for i in wanted if i in position] + picked
    picked = list(dict.fromkeys(picked))[:12]
    if picked:
        st.subheader(f"{len(picked)} selected")
        x = data.images[picked].float() / 255
        widgets.show_grid(torch.cat([x, explore.reconstruct(model, data, picked)]), nrow=len(picked), target=56,
                     caption="top: the originals; bottom: their reconstructions")
        k = st.slider("Nearest neighbours in latent space", 1, 12, 6, key="map_k")
        near = project.nearest_neighbours(codes, [position[i] for i in picked[:4]], k)     # (q, k) positions
        rows = [[i, *idx[near[r]].tolist()] for r, i in enumerate(picked[:4])]
        widgets.show_grid(data.images[sum(rows, [])].float() / 255, nrow=k + 1, target=56,
                     caption="each row: a selected image, then its nearest neighbours by posterior mean")
