"""Class & style: for a model with a class beside its code (an M2 or a CVAE), the same styles decoded as every
class, and one image's style decoded as every class (style transfer)."""
import plotly.graph_objects as go
import streamlit as st
import torch

from explorer import controls, limits, loaders, session, widgets
from explorer.page_settings import CLASSES as PAGE, CLASSES_GIVEN as GIVEN
from vae_core import images
from vae_core.latent import class_style as style
from vae_core.latent.class_style import classifies

st.title("Class & style")
M2_CHECKPOINT = "mnist-m2"


def open_m2() -> None:
    """on_click: make the shipped M2 the sidebar's model (runs before the sidebar is drawn)."""
    st.session_state["model_kind"] = "Shipped"
    st.session_state["model_shipped"] = M2_CHECKPOINT


def probability_figure(probs: list[float], names: list[str]) -> go.Figure:
    fig = go.Figure(go.Bar(x=names, y=probs, marker_color="#5b6ee1"))
    fig.update_layout(height=240, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="class y",
                      yaxis_title="q(y | x)", yaxis_range=[0, 1], xaxis_type="category")
    return fig


with session.guard("Class and style"):
    ctx = session.context()
    model = ctx.require_model()
    if not model.num_classes:
        st.info("This model has no class variable, so there is no class to hold apart from the style. Pick one that "
                "has: mnist-m2 (semi-supervised, Kingma et al. 2014) or mnist-cvae, under Shipped in the sidebar.")
        if M2_CHECKPOINT in loaders.shipped_checkpoints():
            st.button(f"Open {M2_CHECKPOINT}", on_click=open_m2, key="classes_open_m2")
        st.stop()
    names = widgets.class_names(model, ctx.data)
    k = model.num_classes
    if classifies(model):
        st.caption("An M2 generates a digit from a class y and a style z: p(x | y, z). Its encoder reads the style "
                   "given the class, q(z | x, y), and its classifier q(y | x) predicts the class.")
    grid_tab, transfer_tab = st.tabs(["Styles x classes", "Style transfer"])

    with grid_tab:
        c1, c2, c3 = st.columns(3)
        n_styles = controls.draw(PAGE, "classes_styles", ctx, c1)
        temperature = controls.draw(PAGE, "classes_temperature", ctx, c2)
        seed = controls.draw(PAGE, "classes_seed", ctx, c3)
        limits.settings().check_images(model, n_styles * k, "style images")
        grid = style.style_grid(model, n_styles, int(seed), temperature)
        img = widgets.show_grid(grid, nrow=k, wrap=False,
                                caption=f"Each row one style z from the prior; each column one class "
                                        f"({names[0]} to {names[-1]})")
        st.download_button("Download the grid (PNG)", images.png_bytes(img), file_name="styles_by_class.png",
                           mime="image/png", key="classes_download")

    with transfer_tab:
        st.caption("Encode an image's style, then decode that style as every class (Kingma et al., 2014, figure 1).")
        picked, right = widgets.image_beside("style_src", "Image", ctx)
        x, y, caption = picked.x, picked.y, picked.caption
        how = "from the image's label" if picked.caption.startswith("image ") else "chosen"
        with right:
            probs = style.class_probabilities(model, x)
            if probs is not None:
                predicted = int(probs[0].argmax())
                st.markdown(f"**Predicted class: {names[predicted]}** ({probs[0, predicted]:.0%})" +
                            (f"; its label is {names[y]}" if y is not None else ""))
                st.plotly_chart(probability_figure(probs[0].tolist(), names), key="classes_probs")
                given = controls.draw(PAGE, "classes_given", ctx, horizontal=True) if y is not None else GIVEN[0]
                how = "predicted from the image" if given == GIVEN[0] else how
                y = predicted if given == GIVEN[0] else y
            transferred, used = style.style_transfer(model, x, y)
            widgets.show_grid(torch.cat([x.float().cpu(), transferred]), nrow=k + 1, span=0.6, wrap=False,
                              caption=f"{caption} (left), and its style, read as class {names[used]} ({how}), "
                                      f"decoded as each class {names[0]} to {names[-1]}")
