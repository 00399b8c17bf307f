"""Traverse: move one latent unit at a time and watch the decoded image change."""
import hashlib
from types import MappingProxyType

import streamlit as st
import torch

from explorer import handoff, inspector, limits, links, loaders, session, widgets
from vae_core import VAEError
from vae_core.latent import directions, explore, hierarchy as layers

st.title("Traverse")
RANGE = 4.0          # slider range, in prior standard deviations
BASES = ("Dataset image", "Random sample", "Zero")
MAX_STEPS = 9        # traversal columns: a row of readable tiles across the page
MAX_PLANE = 10       # the latent plane's side, in tiles
DIRECTION_KINDS = MappingProxyType({"Principal": "the principal axes of 1,000 encoded images, largest variance first",
                   "Local": "where the decoded image changes most at the code above (the top singular vectors "
                            "of the decoder's Jacobian there)",
                   "Factor": "how the mean code moves as each ground-truth factor grows (the codes regressed on "
                             "the factors)",
                   "Class A - B": "class A's mean code minus class B's"})


def base_code(model, ctx, mode: str, chosen):
    """The code the sliders start from, and a caption for it."""
    if mode == handoff.SOURCE:
        return chosen.z.clone(), None, chosen.caption
    if mode == "Dataset image":
        data = ctx.require_data()
        i = int(st.number_input("Image index", 0, len(data) - 1, 0, key="traverse_index"))
        x = data.images[i:i + 1].float() / 255
        label = None if data.labels is None else int(data.labels[i])
        return explore.encode(model, x, label if model.num_classes else None), x, f"image {i}" + (
            f" (label {data.class_names[label] if data.class_names else label})" if label is not None else "")
    if mode == "Random sample":
        seed = int(st.number_input("Seed", 0, 2**31 - 1, 0, key="traverse_seed"))
        gen = torch.Generator(device=model.device).manual_seed(seed)
        return model.prior_sample(1, gen).cpu(), None, f"a prior sample (seed {seed})"
    return torch.zeros(1, *model.latent_shape), None, "the zero code"


def direction_sliders(model, z, y, model_key: str) -> tuple[list, list[float]]:
    """Sliders along directions of one kind (picked here), each moving in the data's standard
    deviations along it; returns the directions and the slider values."""
    ctx = session.context()
    data = ctx.data
    kinds = ["Principal", "Local"] + (["Factor"] if data is not None and data.factors is not None else []) + \
            (["Class A - B"] if data is not None and data.labels is not None else [])
    if data is None:
        kinds.remove("Principal")
    st.subheader("Directions")
    pick, sliders = st.columns([1, 2])
    kind = pick.radio("Move along", kinds, key="traverse_dir_kind", horizontal=True,
                      help="\n".join(f"- **{k}**: {DIRECTION_KINDS[k]}" for k in kinds))
    a = b = 0
    if kind == "Class A - B":
        names = list(data.class_names) or [str(c) for c in range(int(data.labels.max()) + 1)]
        a = pick.selectbox("Class A", range(len(names)), format_func=names.__getitem__, key="traverse_dir_a")
        b = pick.selectbox("Class B", range(len(names)), index=min(1, len(names) - 1),
                           format_func=names.__getitem__, key="traverse_dir_b")
    try:
        if kind == "Local":
            code_key = hashlib.sha1(z.float().numpy().tobytes() + repr(y).encode()).hexdigest()
            res = loaders.local_directions(model_key, ctx.data_key if data is not None else "", code_key, model,
                                           data, z, y)
            found, how = list(res.directions), f"Found from {res.method}; gain: how far the image moves per step. "
        else:
            found = list(loaders.data_directions(model_key, ctx.data_key, model, data,
                                                 {"Principal": "principal", "Factor": "factors"}.get(kind, "classes"),
                                                 int(a), int(b)))
            how = ""
    except VAEError as e:
        pick.info(str(e))
        return [], []
    keys = [f"traverse_dir{i}" for i in range(len(found))]
    signature = (model_key, kind, tuple(d.name for d in found), tuple(d.vector.sum().item() for d in found))
    # New directions start at zero, and so do sliders Streamlit forgot while another page was shown
    # (a slider with no value starts at its minimum).
    if st.session_state.get("traverse_dir_signature") != signature or any(k not in st.session_state for k in keys):
        for k in keys:
            st.session_state[k] = 0.0
        st.session_state["traverse_dir_signature"] = signature
    links.apply_late("traverse_dir")
    amounts = []
    for d, k in zip(found, keys):
        stable = "" if d.stability is None else f", stability {d.stability:.2f}"
        amounts.append(sliders.slider(f"{d.name} ({d.detail}{stable})", -RANGE, RANGE, step=0.1, key=k))
    chance = directions.chance_cosine(z[0].numel())
    pick.caption(how + "Each slider moves in the data's standard deviations along its direction. Stability: the "
                 "mean |cosine| between the direction and its re-estimates " +
                 ("at 4 nudged codes" if kind == "Local" else "on bootstrap resamples of the images") +
                 f" (1: pinned down; {chance:.2f}: no better than a random direction).")
    return found, amounts


@st.fragment
def sliders_and_grids(model, stats, base, original, where, mode, y, model_key: str):
    """The sliders, the image decoded from them and the grids: a slider move reruns only this part
    of the page (not the sidebar, nor the base code's widgets), on the server and in the browser."""
    with session.guard("Traversal"):
        spatial = explore.is_spatial(model)
        n = explore.num_units(model)
        keys = [f"traverse_z{u}" for u in range(n)]
        start = [0.0] * n if spatial else base.flatten().tolist()
        signature = (model_key, mode, where, hash(base.float().numpy().tobytes()))
        # Sliders start at the base code; a new base (or a new model) moves them there. (Streamlit
        # drops all of a page's widget values together when another page runs: one check suffices.)
        if st.session_state.get("traverse_signature") != signature or keys[0] not in st.session_state:
            for k, v in zip(keys, start):
                st.session_state[k] = float(min(max(v, -RANGE), RANGE))
            st.session_state["traverse_signature"] = signature
        links.apply_late("traverse_z")              # a link's slider values, once, over the base code's

        left, right = st.columns([1, 2])
        with right:
            unit = "channel shift (x its spread)" if spatial else "value"
            st.caption(f"One slider per latent {'channel' if spatial else 'dimension'} ({unit}), most informative "
                       f"first; base: {where}.")
            shown = widgets.unit_sliders_shown(stats, "traverse_more_units")    # bounded: top by KL and a picker
            cols, per_col = st.columns(4), -(-len(shown) // 4)  # read down each column, most informative first
            values = [st.session_state.get(k, min(max(v, -RANGE), RANGE)) for k, v in zip(keys, start)]  # no slider
            for pos, u in enumerate(shown):
                tag = f"KL {stats.kl[u]:.2f}" if any(stats.kl) else f"spread {stats.spread[u]:.2f}"
                label = f"z{u} ({tag}{'' if stats.active[u] else ', inactive'})"
                values[u] = cols[pos // per_col].slider(label, -RANGE, RANGE, step=0.05, key=keys[u],
                                                  help=None if stats.active[u] else "Collapsed: the encoder "
                                                  "ignores this unit (its mean hardly varies over the data), so "
                                                  "moving it changes little.")

        z = explore.set_units(model, base, values, stats)
        found, amounts = direction_sliders(model, z, y, model_key)
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

        st.subheader("Traversal grid")
        g1, g2 = st.columns(2)
        rows = g1.slider("Rows (top units)", 1, n, min(8, n), key="traverse_rows")
        steps = g2.slider("Columns (values from -3 to 3)", 3, MAX_STEPS, 7, 2, key="traverse_cols")
        top = list(stats.order[:rows])
        limits.settings().check_images(model, rows * steps, "traversal images")
        grid = explore.traversal_grid(model, z, top, stats, -3.0, 3.0, steps, y=y)
        widgets.show_grid(grid, nrow=steps, wrap=False, caption="rows: " + ", ".join(f"z{u}" for u in top) +
                          f"; columns: {steps} values from -3 to 3" + (" (x the channel's spread)" if spatial else ""))
        links.publish("traverse")                   # a slider move reruns only this fragment


with session.guard("Traversal"):
    ctx = session.context()
    model = ctx.require_model()
    stats = loaders.unit_stats(ctx.model_key, ctx.data_key, model, ctx.data,
                               min(1000, limits.settings().max_images(model)))
    chosen = handoff.receive("traverse", ctx.model_key)
    bases = list(BASES) + ([handoff.SOURCE] if chosen is not None else [])
    if chosen is not None and handoff.take_fresh("traverse"):        # just sent from the latent map
        st.session_state["traverse_base"] = handoff.SOURCE
        if chosen.y is not None:
            st.session_state["traverse_class"] = chosen.y
    if st.session_state.get("traverse_base") not in bases:
        st.session_state["traverse_base"] = bases[0]
    top_left, _ = st.columns([1, 2])
    with top_left:
        mode = st.radio("Base code", bases, key="traverse_base", horizontal=True)
        y = widgets.class_picker(model, ctx.data, "traverse_class")
        base, original, where = base_code(model, ctx, mode, chosen)
    if ctx.data is None:
        st.caption("Units are in their natural order: choose a matching dataset to order them by KL.")

sliders_and_grids(model, stats, base, original, where, mode, y, ctx.model_key)

if layers.is_hierarchical(model):
    with session.guard("Traversal"):
        inspector.layer_traversal_section(model, stats, base, y)

if model.latent_shape == (2,):
    with session.guard("Traversal"):
        st.subheader("The latent plane")
        m = st.slider("Grid size", 3, MAX_PLANE, MAX_PLANE, key="traverse_manifold")
        limits.settings().check_images(model, m * m, "manifold images")
        widgets.show_grid(explore.manifold_grid(model, m, y=y), nrow=m, wrap=False,
                          caption=f"decoded at {m}x{m} evenly spaced quantiles of N(0, 1): "
                                  f"{explore.PLANE_AXES[0]} left to right, {explore.PLANE_AXES[1]} bottom to top")
