"""Traverse: move one latent unit at a time and watch the decoded image change."""
import hashlib

import streamlit as st
import torch

from explorer import controls, handoff, inspector, limits, links, loaders, selection, session, widgets
from explorer.page_settings import DIRECTION_KINDS, SOURCE, TRAVERSE as PAGE, direction_kinds, unit_sample
from vae_core import VAEError
from vae_core.latent import directions, explore, hierarchy as layers

st.title("Traverse")


def chosen_code(ctx):
    """A code chosen on the latent map: the mean code of the selection's images, computed here from
    their indices (so a link, which carries them, reopens the same code), or the code sent from the
    map where the selection is too large for a link."""
    sent = handoff.receive("traverse", ctx.model_key)
    if sent is not None and handoff.take_fresh("traverse"):        # just sent from the latent map
        controls.put(PAGE, "traverse_base", SOURCE)
        controls.put(PAGE, "traverse_from", list(sent.indices))
    indices = controls.value(PAGE, "traverse_from") or []
    if 0 < len(indices) <= controls.MAX_INDICES and ctx.data is not None and max(indices) < len(ctx.data):
        return selection.code_of(ctx, indices)
    return sent


def base_code(model, ctx, mode: str, chosen):
    """The code the sliders start from, the original image (or None), a caption, and the image's class."""
    if mode == SOURCE:
        return chosen.z.clone(), None, chosen.caption, chosen.y
    if mode == "Dataset image":
        data = ctx.require_data()
        i = int(controls.draw(PAGE, "traverse_index", ctx))
        x = data.images[i:i + 1].float() / 255
        label = None if data.labels is None else int(data.labels[i])
        return explore.encode(model, x, label if model.num_classes else None), x, f"image {i}" + (
            f" (label {data.class_names[label] if data.class_names else label})" if label is not None else ""), label
    if mode == "Random sample":
        seed = int(controls.draw(PAGE, "traverse_seed", ctx))
        gen = torch.Generator(device=model.device).manual_seed(seed)
        return model.prior_sample(1, gen).cpu(), None, f"a prior sample (seed {seed})", None
    return torch.zeros(1, *model.latent_shape), None, "the zero code", None


def direction_sliders(model, z, y, ctx) -> tuple[list, list[float]]:
    """Sliders along directions of one kind (picked here), each moving in the data's standard
    deviations along it; returns the directions and the slider values."""
    data = ctx.data
    kinds = direction_kinds(ctx, {})
    st.subheader("Directions")
    pick, sliders = st.columns([1, 2])
    kind = controls.draw(PAGE, "traverse_dir_kind", ctx, pick, horizontal=True,
                         help="\n".join(f"- **{k}**: {DIRECTION_KINDS[k]}" for k in kinds))
    a = b = 0
    if kind == "Class A - B":
        names = list(data.class_names) or [str(c) for c in range(int(data.labels.max()) + 1)]
        a = controls.draw(PAGE, "traverse_dir_a", ctx, pick, format_func=names.__getitem__)
        b = controls.draw(PAGE, "traverse_dir_b", ctx, pick, format_func=names.__getitem__)
    try:
        if kind == "Local":
            code_key = hashlib.sha1(z.float().numpy().tobytes() + repr(y).encode()).hexdigest()
            res = loaders.local_directions(ctx.model_key, ctx.data_key if data is not None else "", code_key, model,
                                           data, z, y)
            found, how = list(res.directions), f"Found from {res.method}; gain: how far the image moves per step. "
        else:
            found = list(loaders.data_directions(ctx.model_key, ctx.data_key, model, data,
                                                 {"Principal": "principal", "Factor": "factors"}.get(kind, "classes"),
                                                 int(a), int(b)))
            how = ""
    except VAEError as e:
        pick.info(str(e))
        return [], []
    # New directions start at zero; the same ones keep their sliders, after another page too.
    signature = (ctx.model_key, kind, tuple(d.name for d in found), tuple(d.vector.sum().item() for d in found))
    controls.follow(PAGE, "traverse_dir", signature, [0.0] * len(found))
    s = PAGE["traverse_dir"]
    amounts = []
    for d, k in zip(found, controls.vector_keys(s, len(found))):
        stable = "" if d.stability is None else f", stability {d.stability:.2f}"
        amounts.append(controls.rounded(sliders.slider(f"{d.name} ({d.detail}{stable})", s.lo, s.hi, step=s.step,
                                                       key=k)))
    chance = directions.chance_cosine(z[0].numel())
    pick.caption(how + "Each slider moves in the data's standard deviations along its direction. Stability: the "
                 "mean |cosine| between the direction and its re-estimates " +
                 ("at 4 nudged codes" if kind == "Local" else "on bootstrap resamples of the images") +
                 f" (1: pinned down; {chance:.2f}: no better than a random direction).")
    return found, amounts


def unit_sliders(model, stats, base, signature) -> list[float]:
    """One slider per unit, most informative first, starting at the base code (a new base moves them there)."""
    spatial, n = explore.is_spatial(model), explore.num_units(model)
    s = PAGE["traverse_z"]
    start = [0.0] * n if spatial else base.flatten().tolist()
    controls.follow(PAGE, "traverse_z", signature, [min(max(v, s.lo), s.hi) for v in start])
    keys = controls.vector_keys(s, n)
    shown = widgets.unit_sliders_shown(stats, "traverse_more_units")    # bounded: top by KL and a picker
    cols, per_col = st.columns(4), -(-len(shown) // 4)  # read down each column, most informative first
    values = [controls.rounded(st.session_state.get(k, min(max(v, s.lo), s.hi)))    # a unit with no slider
              for k, v in zip(keys, start)]                                         # keeps its value
    for pos, u in enumerate(shown):
        tag = f"KL {stats.kl[u]:.2f}" if any(stats.kl) else f"spread {stats.spread[u]:.2f}"
        label = f"z{u} ({tag}{'' if stats.active[u] else ', inactive'})"
        values[u] = controls.rounded(cols[pos // per_col].slider(label, s.lo, s.hi, step=s.step, key=keys[u],
                                                help=None if stats.active[u] else "Collapsed: the encoder ignores "
                                                "this unit (its mean hardly varies over the data), so moving it "
                                                "changes little."))
    return values


@st.fragment
def sliders_and_grids(ctx, stats, base, original, where, mode, y, which):
    """The sliders, the image decoded from them and the grids: a slider move reruns only this part
    of the page (not the sidebar, nor the base code's widgets), on the server and in the browser."""
    with session.guard("Traversal"):
        model = ctx.model
        spatial = explore.is_spatial(model)
        left, right = st.columns([1, 2])
        with right:
            unit = "channel shift (x its spread)" if spatial else "value"
            st.caption(f"One slider per latent {'channel' if spatial else 'dimension'} ({unit}), most informative "
                       f"first; base: {where}" + (f"; decoded as {which}." if which else "."))
            signature = (ctx.model_key, mode, where, hashlib.sha1(base.float().numpy().tobytes()).hexdigest())
            values = unit_sliders(model, stats, base, signature)

        z = explore.set_units(model, base, values, stats)
        found, amounts = direction_sliders(model, z, y, ctx)
        z_units, z = z, directions.move(z, found, amounts)
        if found:
            steps = 7
            limits.settings().check_images(model, len(found) * steps, "direction images")
            grid = explore.decode(model, directions.direction_codes(z_units, found, steps=steps), y)
            widgets.show_grid(grid, nrow=steps, wrap=False, caption="rows: " + ", ".join(d.name for d in found) +
                              f"; columns: {steps} steps from -3 to 3 spreads along each, from the unit sliders' code")
        with left:
            images = [explore.decode(model, z, y)]
            if original is not None:
                images.insert(0, original)
            widgets.show_grid(torch.cat(images), nrow=len(images), span=1 / 3, max_tile=widgets.PREVIEW_TILE,
                              caption=("original, " if original is not None else "") + "decoded from the sliders" +
                                      (" and directions" if any(amounts) else ""))
        traversal_grid(ctx, stats, z, y, spatial)
        links.publish("traverse", ctx)                 # a slider move reruns only this fragment


def traversal_grid(ctx, stats, z, y, spatial) -> None:
    model = ctx.model
    st.subheader("Traversal grid")
    g1, g2 = st.columns(2)
    rows = controls.draw(PAGE, "traverse_rows", ctx, g1)
    steps = controls.draw(PAGE, "traverse_cols", ctx, g2)
    top = list(stats.order[:rows])
    limits.settings().check_images(model, rows * steps, "traversal images")
    grid = explore.traversal_grid(model, z, top, stats, -3.0, 3.0, steps, y=y)
    widgets.show_grid(grid, nrow=steps, wrap=False, caption="rows: " + ", ".join(f"z{u}" for u in top) +
                      f"; columns: {steps} values from -3 to 3" + (" (x the channel's spread)" if spatial else ""))


with session.guard("Traversal"):
    ctx = session.context()
    model = ctx.require_model()
    sample_n, sample_seed = unit_sample(model)     # the images Analyze measures its units on
    stats = loaders.unit_stats(ctx.model_key, ctx.data_key, model, ctx.data, sample_n, sample_seed)
    chosen = chosen_code(ctx)
    top_left, _ = st.columns([1, 2])
    with top_left:
        mode = controls.draw(PAGE, "traverse_base", ctx, horizontal=True)
        if mode == SOURCE and chosen is None:          # its images are not in this dataset
            st.info("The selection's images are not in this dataset: pick another base code, or select again on "
                    "the latent map.")
            st.stop()
        base, original, where, image_class = base_code(model, ctx, mode, chosen)
        names = widgets.class_names(model, ctx.data) if model.num_classes else []
        y, which = controls.class_follows(PAGE, "traverse_class", ctx, image_class, names)
    if ctx.data is None:
        st.caption("Units are in their natural order: choose a matching dataset to order them by KL.")
    else:
        st.caption(f"KL per unit in nats per image, over {min(sample_n, len(ctx.data)):,} images of the dataset drawn "
                   f"with seed {sample_seed}: the images Analyze's Latent units measure (its Images to analyse and "
                   "Seed), so both pages show the same numbers.")

sliders_and_grids(ctx, stats, base, original, where, mode, y, which)

if layers.is_hierarchical(model):
    with session.guard("Traversal"):
        inspector.layer_traversal_section(model, PAGE, ctx, stats, base, y)

if model.latent_shape == (2,):
    with session.guard("Traversal"):
        st.subheader("The latent plane")
        m = controls.draw(PAGE, "traverse_manifold", ctx)
        limits.settings().check_images(model, m * m, "manifold images")
        widgets.show_grid(explore.manifold_grid(model, m, y=y), nrow=m, wrap=False,
                          caption=f"decoded at {m}x{m} evenly spaced quantiles of N(0, 1): "
                                  f"{explore.PLANE_AXES[0]} left to right, {explore.PLANE_AXES[1]} bottom to top")
