"""Latent map: the dataset's codes in 2-D, coloured by label; select points to see them."""
import streamlit as st

from explorer import (controls, figures, jobs, limits, maps, motion, raster, selection, session, spots, startup, thumbs,
                      widgets)
from explorer.page_settings import LATENT_MAP as PAGE, MAP_CODES_2D as CODES_2D, MAP_METHODS as METHODS
from vae_core.latent import inverse

st.title("Latent map")


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
    points_setting = PAGE["map_points"]
    lo, hi = points_setting.resolve("lo", ctx, {}), points_setting.resolve("hi", ctx, {})
    n = controls.draw(PAGE, "map_points", ctx, c1) if hi > lo else hi
    method = controls.draw(PAGE, "map_method", ctx, c2, horizontal=True)
    colour = controls.draw(PAGE, "map_colour", ctx, c3)
    params = {}
    if method == "t-SNE":
        params["perplexity"] = controls.draw(PAGE, "map_perplexity", ctx)
    elif method == "UMAP":
        p1, p2 = st.columns(2)
        params["n_neighbors"] = controls.draw(PAGE, "map_neighbors", ctx, p1)
        params["min_dist"] = controls.draw(PAGE, "map_min_dist", ctx, p2)

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
        y = controls.draw(PAGE, "map_spot_class", ctx, label="Decode as class",
                          format_func=widgets.class_names(model, data).__getitem__) if model.num_classes else None
        field_on = controls.draw(PAGE, "map_field", ctx)
        tiles = controls.draw(PAGE, "map_field_tiles", ctx) if field_on else 0
        if tiles:
            limits.settings().check_images(model, tiles * tiles, "decoded field images")
        if not dense:                     # beside the map, not above it: the map keeps its place on the page
            thumbs.show(ctx, data, idx, "map_chart")

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
    chart_alive = "map_chart" in st.session_state       # False on the first run back from another page
    event = map_col.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=modes)
    if spot is None:
        spot_image.info("Click anywhere on the map, between the clusters too, to decode the code that spot stands for.")
    else:
        spots.decoded_panel(model, inv, spot, y, shown, spot_image, typical)

    typed = controls.draw(PAGE, "map_pick", ctx, placeholder="e.g. 3, 17, 42")
    wanted = selection.parse_indices(typed) if typed.strip() else []
    # The chart's selection is the page's to keep: Streamlit forgets the chart's state on another page,
    # and the chart then comes back empty. Only a change of the chart's own selection replaces it.
    now = idx.numpy()[raster.in_box(points, event)].tolist() if dense else selection.selected_indices(event, fig)
    own = controls.kept(PAGE.name)
    if chart_alive and own.get("map_chart_seen") != now:
        controls.put(PAGE, "map_selected", now)
    own["map_chart_seen"] = now
    on_map = set(idx.tolist())
    chosen = [i for i in controls.value(PAGE, "map_selected") or [] if i in on_map]
    picked, notes = selection.resolve(wanted, chosen, idx.numpy(), data)
    for note in notes:
        st.warning(note)
    if picked:
        selection.show(ctx, codes, idx, picked)

    snaps = motion.run_snapshots(ctx)
    if snaps is not None:
        st.subheader("Training in motion")
        motion.show(snaps, data, key="map_motion")
