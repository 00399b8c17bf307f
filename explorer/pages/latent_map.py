"""Latent map: the dataset's codes in 2-D, coloured by label; select points to see them."""
from types import MappingProxyType

import streamlit as st

from explorer import figures, jobs, limits, selection, session, startup
from vae_core import project

st.title("Latent map")
METHODS = MappingProxyType({"PCA": "pca", "t-SNE": "tsne", "UMAP": "umap"})
CODES_2D = "Codes (2-D latent)"


def map_figure(points, idx, data, colour: str, method: str, codes):
    ids = idx.numpy()
    labels = data.labels[idx].numpy() if colour == "label" and data.labels is not None else None
    f = data.factor_names.index(colour) if colour in data.factor_names else None
    return figures.latent_map(points, ids, labels=labels, class_names=data.class_names,
                              factor=None if f is None else data.factors[idx, f].numpy(), factor_name=colour,
                              axes=figures.map_axis_titles(method, points, codes), prior=method == "codes")


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
        top = max(1.0, min(50.0, float(int(project.max_perplexity(n)))))
        params["perplexity"] = st.slider("Perplexity", 1.0, top, min(30.0, top), 1.0, key="map_perplexity")
    elif method == "UMAP":
        p1, p2 = st.columns(2)
        params["n_neighbors"] = p1.slider("Neighbours", 5, 50, 15, key="map_neighbors")
        params["min_dist"] = p2.slider("Minimum distance", 0.0, 0.99, 0.1, 0.01, key="map_min_dist")

    limits.settings().check_points(model, n, METHODS.get(method, "pca"))
    codes, idx = jobs.codes_for(ctx, n)
    sid = session.session_id()
    if method == CODES_2D:
        jobs.queue().forget(sid)              # an instant map: a slow one this session asked for is not wanted now
        points, pending, shown = codes.numpy(), None, "codes"
    else:
        points, pending = jobs.projection(ctx, sid, codes, METHODS[method], params, after=startup.warm_up().done)
        shown = "pca" if pending is not None else METHODS[method]
    if pending is not None:
        @st.fragment(run_every=jobs.WAIT_POLL_S)
        def wait_for_map():
            if pending.done:
                st.rerun()
            ahead = jobs.queue().ahead_of(sid)
            st.progress(pending.fraction, text=jobs.describe(pending, method, ahead) + "; PCA is shown until it is ready.")

        wait_for_map()
    where = "posterior means" if method == CODES_2D else method if pending is None else "PCA"
    st.caption(f"{figures.plural(len(codes), 'image')} of {data.name}, {where}"
               " - select points (click, box or lasso) to see them.")
    fig = map_figure(points, idx, data, colour, shown, codes)
    event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("points", "box", "lasso"))

    typed = st.text_input("Or show images by index", key="map_pick", placeholder="e.g. 3, 17, 42")
    wanted = selection.parse_indices(typed) if typed.strip() else []
    picked, notes = selection.resolve(wanted, selection.selected_indices(event, fig), idx.numpy(), data)
    for note in notes:
        st.warning(note)
    if picked:
        selection.show(ctx, codes, idx, picked)
