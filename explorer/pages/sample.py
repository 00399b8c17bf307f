"""Sample: a grid of draws from the prior."""
import inspect

import streamlit as st

from explorer import figures, inspector, limits, session, widgets
from vae_core import images
from vae_core.latent import codebook, explore, hierarchy as layers
from vae_core.models import VAEBase

st.title("Sample")

with session.guard("Sampling"):
    ctx = session.context()
    model = ctx.require_model()
    c1, c2, c3, c4 = st.columns(4)
    n = c1.slider("Count", 1, 100, 36, key="sample_count")
    temperature = c2.slider("Temperature (scale of z)", 0.1, 2.0, 1.0, 0.05, key="sample_temperature")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="sample_seed")
    if c4.button("Resample", key="sample_resample"):
        st.session_state["sample_draw"] = st.session_state.get("sample_draw", 0) + 1
    y = widgets.class_picker(model, ctx.data, "sample_class")
    if type(model).prior_sample is not VAEBase.prior_sample:
        # This model has no N(0, I) prior of its own (a VQ-VAE): say how its samples are drawn.
        st.info(f"How these samples are drawn: {inspect.getdoc(type(model).prior_sample)}")
    options = {}                            # the model's own sampling options
    if layers.is_hierarchical(model):
        options["layer_temperatures"] = inspector.layer_temperatures(model, "sample_layer_temperature")
    elif codebook.has_code_prior(model):
        options["top_k"] = inspector.top_k_slider(model, "sample_top_k")
    draw = st.session_state.get("sample_draw", 0)
    limits.settings().check_images(model, n, "samples")
    x = explore.sample_grid(model, n, seed=int(seed) * 1_000_003 + draw, temperature=temperature, y=y, **options)
    label = f", class {widgets.class_names(model, ctx.data)[y]}" if y is not None else ""
    img = widgets.show_grid(x, caption=f"{figures.plural(n, 'sample')}{label}, temperature {temperature:g}, "
                                       f"seed {seed}" + (f", draw {draw}" if draw else ""))
    st.download_button("Download the grid (PNG)", images.png_bytes(img), file_name="samples.png",
                       mime="image/png", key="sample_download")
    if layers.is_hierarchical(model):
        inspector.resample_layer_section(model, seed=int(seed) * 1_000_003 + draw, temperature=temperature)
