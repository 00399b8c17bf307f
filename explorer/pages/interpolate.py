"""Interpolate: walk between two codes, and do arithmetic with codes."""
import streamlit as st
import torch

from explorer import controls, handoff, limits, loaders, session, widgets
from explorer.page_settings import INTERPOLATE as PAGE
from vae_core import images
from vae_core.latent import explore

st.title("Interpolate")
GIF_SCALE = 4                   # each pixel of the animation drawn 4 x 4
ATTRIBUTE_IMAGES = 500          # images per class averaged for an attribute vector (explore.attribute_vector)

with session.guard("Interpolation"):
    ctx = session.context()
    model = ctx.require_model()
    if ctx.data is None and ctx.data_error:
        st.warning(ctx.data_error)
    col_a, col_b = st.columns(2)
    with col_a:
        a = widgets.image_input("interp_a", "Image A", ctx, 0, handoff.receive("interp_a", ctx.model_key))
    with col_b:
        b = widgets.image_input("interp_b", "Image B", ctx, 1, handoff.receive("interp_b", ctx.model_key))
    # The decoded class follows A's class until the user picks one; every strip below says which
    # class it was decoded as, and whether it came from the image or was chosen.
    y, which = controls.class_follows(PAGE, "interp_decode_class", ctx, a.y if a is not None else None,
                                      widgets.class_names(model, ctx.data) if model.num_classes else [],
                                      "Decode as class")
    as_class = f", decoded as {which}" if y is not None else ""
    z_a = a.code(model) if a is not None else None
    missing = " and ".join(n for n, p in (("Image A", a), ("Image B", b)) if p is None)

    interp_tab, arith_tab, attr_tab = st.tabs(["Interpolation", "A - B + C", "Attribute vector"])
    with interp_tab:
        c1, c2 = st.columns(2)
        steps = controls.draw(PAGE, "interp_steps", ctx, c1)
        method = controls.draw(PAGE, "interp_method", ctx, c2, horizontal=True)
        lim = limits.settings()
        lim.check_images(model, steps, "interpolation images")
        lim.check_animation(2 * steps - 2, model.config.in_shape, GIF_SCALE)
        if missing:
            st.info(f"Give {missing} above to see the path between them.")
        else:
            strip = explore.interpolate(model, z_a, b.code(model), steps, method, y)
            widgets.show_grid(strip, nrow=steps, caption=f"{a.caption} to {b.caption}, {method}, {steps} steps"
                                                         f"{as_class}")
            d1, d2 = st.columns(2)
            d1.download_button("Download the strip (PNG)", images.png_bytes(images.to_pil(images.grid(strip, steps), 2)),
                               file_name="interpolation.png", mime="image/png", key="interp_download_png")
            d2.download_button("Download the animation (GIF)", images.gif_bytes(strip, scale=GIF_SCALE),
                               file_name="interpolation.gif", mime="image/gif", key="interp_download_gif")

    with arith_tab:
        st.caption("What is to C as A is to B: decode(z_A - z_B + z_C).")
        c = widgets.image_input("interp_c", "Image C", ctx, 2)
        if missing:
            st.info(f"Give {missing} above for the arithmetic.")
        elif c is not None:
            z = explore.arithmetic(z_a, b.code(model), c.code(model))
            widgets.show_grid(torch.cat([a.x, b.x, c.x, explore.decode(model, z, y)]), nrow=4,
                              max_tile=widgets.PREVIEW_TILE, caption=f"A, B, C and A - B + C{as_class}")

    with attr_tab:
        data = ctx.data
        if data is None or data.labels is None:
            st.info(f"{data.name if data is not None else 'This dataset'} has no labels, so there are no classes "
                    "to take mean codes of.")
        elif a is None:
            st.info("Give Image A above to move it along a class's attribute vector.")
        else:
            names = list(data.class_names) or [str(i) for i in range(data.num_classes)]
            c1, c2, c3 = st.columns(3)
            to_c = controls.draw(PAGE, "interp_attr_to", ctx, c1, format_func=lambda i: names[i])
            from_c = controls.draw(PAGE, "interp_attr_from", ctx, c2, format_func=lambda i: names[i])
            alpha = controls.draw(PAGE, "interp_attr_alpha", ctx, c3)
            limits.settings().check_images(model, ATTRIBUTE_IMAGES, "images to average")   # per class, in turn
            vec = loaders.attribute_vector(ctx.model_key, ctx.data_key, model, data, to_c, from_c)
            alphas = torch.linspace(0, alpha, 6) if alpha else torch.zeros(1)
            z = z_a + alphas.view(-1, *([1] * (z_a.dim() - 1))) * vec
            widgets.show_grid(explore.decode(model, z, y), nrow=len(alphas), max_tile=widgets.PREVIEW_TILE,
                              caption=f"A plus 0 to {alpha:g} x (mean code of {names[to_c]} - mean code of "
                                      f"{names[from_c]}){as_class}")
