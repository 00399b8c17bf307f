"""Latent map: the dataset's codes in 2-D, coloured by label; select points to see them."""
from types import MappingProxyType

import streamlit as st

from explorer import figures, jobs, limits, links, maps, motion, raster, selection, session, spots, startup, widgets
from vae_core.latent import inverse, projections as project

st.title("Latent map")
METHODS = MappingProxyType({"PCA": "pca", "t-SNE": "tsne", "UMAP": "umap"})
CODES_2D = "Codes (2-D latent)"


def map_figure(points, idx, data, colour: str, method: str, codes, dense: bool):
    labels = data.labels[idx].numpy() if colour == "label" and data.labels is not None else None
    f = data.factor_names.index(colour) if colour in data.factor_names else None
    factor = None if f is None else data.factors[idx, f].numpy()
    axes = figures.map_axis_titles(method, points, codes)
    if dense:           # above the WebGL budget: one image drawn on the server
        return raster.figure(points, labels=labels, class_names=data.class_names, factor=factor, factor_name=colour,
                             axes=axes, prior=method == "codes")
    return figures.latent_map(points, idx.numpy(), labels=labels, class_names=data.class_names, factor=factor,
                              factor_name=colour, axes=axes, prior=method == "codes")


with session.guard("The latent map"):
    ctx = session.context()
    model = ctx.require_model()
    data = ctx.require_data()
    c1, c2, c3 = st.columns([2, 3, 2])
    budget = limits.settings()
    lo, hi = min(100, len(data)), min(len(data), budget.max_points("pca"))
    n = c1.slider("Points", lo, hi, min(hi, 5000), step=max(1, min(100, hi - lo)), key="map_points") if hi > lo else hi
    choices = ([CODES_2D] if model.latent_shape == (2,) else []) + list(METHODS)
    method = c2.radio("Projection", choices, key="map_method", horizontal=True)
    colours = links.map_colours(data)
    colour = c3.selectbox("Colour by", colours, key="map_colour")
    params = {}
    if method == "t-SNE":
        top = max(1.0, min(50.0, float(int(project.max_perplexity(n)))))
        params["perplexity"] = st.slider("Perplexity", 1.0, top, min(30.0, top), 1.0, key="map_perplexity")
    elif method == "UMAP":
        p1, p2 = st.columns(2)
        params["n_neighbors"] = p1.slider("Neighbours", 5, 50, 15, key="map_neighbors")
        params["min_dist"] = p2.slider("Minimum distance", 0.0, 0.99, 0.1, 0.01, key="map_min_dist")

    budget.check_points(model, n, METHODS.get(method, "pca"))
    dense = budget.raster(n)
    codes, idx = maps.codes_for(ctx, n)
    sid = session.session_id()
    if method == CODES_2D:
        jobs.queue().forget(sid)              # an instant map: a slow one this session asked for is not wanted now
        points, pending, shown = codes.numpy(), None, "codes"
    else:
        points, pending = maps.projection(ctx, sid, codes, METHODS[method], params, after=startup.warm_up().done)
        shown = "pca" if pending is not None else METHODS[method]
    if pending is not None:
        @st.fragment(run_every=jobs.WAIT_POLL_S)
        def wait_for_map():
            if pending.done:
                st.rerun()
            ahead = jobs.queue().ahead_of(sid)
            st.progress(pending.fraction, text=maps.describe(pending, method, ahead) + "; PCA is shown until it is ready.")

        wait_for_map()
    where = "posterior means" if method == CODES_2D else method if pending is None else "PCA"
    if dense:
        pixel = ("each pixel's colour mixes its images' class colours, stronger where more images fall" if colour == "label"
                 else f"each pixel shows its images' mean {colour}" if colour in data.factor_names
                 else "each pixel's shade counts its images, on a log scale")
        st.caption(f"{figures.plural(len(codes), 'image')} of {data.name}, {where}, drawn as a density raster (more "
                   f"than this server sends as points, {budget.max_map_points:,}): {pixel}. Draw a box (the box tool "
                   "in the chart's toolbar) to see the images inside it; click anywhere to decode that spot.")
    else:
        st.caption(f"{figures.plural(len(codes), 'image')} of {data.name}, {where}"
                   " - select points (click, box or lasso) to see them; click anywhere to decode that spot.")
    signature = (ctx.model_key, ctx.data_key, len(codes), shown, tuple(sorted(params.items())) if pending is None else ())
    results = jobs.queue().results
    inv, typical = results.get_or_compute(("inverse", *signature), lambda: (
        inverse.for_map(shown, points, codes), float(inverse.prior_log_density(codes).median())))
    map_col, spot_col = st.columns([3, 1])
    spot_image, spot_xy = spot_col.container(), spot_col.container()
    with spot_col:
        y = widgets.class_picker(model, data, key="map_spot_class", label="Decode as class")
        field_on = st.toggle("Decoded field", key="map_field", help="Images decoded on a grid of spots, over the "
                             "prior's log-density at the codes the map's spots stand for.")
        tiles = st.slider("Images a side", *spots.FIELD_TILES, key="map_field_tiles") if field_on else 0
        if tiles:
            limits.settings().check_images(model, tiles * tiles, "decoded field images")

    def draw():
        fig = spots.add_click_grid(map_figure(points, idx, data, colour, shown, codes, dense), points)
        if field_on:
            spots.add_decoded_field(fig, *spots.decoded_field(model, inv, points, tiles, y))
        return fig

    # Kept, not rebuilt: a click reruns the page, and an unchanged figure is neither rebuilt here nor redrawn
    # in the browser (the clicked spot is marked by Plotly's own selection style). Nothing changes it after.
    fig = results.get_or_compute(("map figure", *signature, dense, colour, tiles, y if field_on else None), draw)
    spot = spots.spot_inputs(signature, st.session_state.get("map_chart"), spot_xy)
    modes = ("points", "box") if dense else ("points", "box", "lasso")     # the raster's selection is read from the box
    event = map_col.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=modes)
    if spot is None:
        spot_image.info("Click anywhere on the map, between the clusters too, to decode the code that spot stands for.")
    else:
        spots.decoded_panel(model, inv, spot, y, shown, spot_image, typical)

    typed = st.text_input("Or show images by index", key="map_pick", placeholder="e.g. 3, 17, 42")
    wanted = selection.parse_indices(typed) if typed.strip() else []
    chosen = idx.numpy()[raster.in_box(points, event)].tolist() if dense else selection.selected_indices(event, fig)
    picked, notes = selection.resolve(wanted, chosen, idx.numpy(), data)
    links.remember_selection(picked)                 # a link carries it (as indices)
    for note in notes:
        st.warning(note)
    if picked:
        selection.show(ctx, codes, idx, picked)

    snaps = motion.run_snapshots(ctx)
    if snaps is not None:
        st.subheader("Training in motion")
        motion.show(snaps, data, key="map_motion")
