"""Sample: a grid of draws from the prior."""
import inspect

import streamlit as st

from explorer import controls, figures, inspector, limits, session, widgets
from explorer.page_settings import SAMPLE as PAGE
from vae_core import images
from vae_core.latent import codebook, explore, hierarchy as layers
from vae_core.models import VAEBase

st.title("Sample")

with session.guard("Sampling"):
    ctx = session.context()
    model = ctx.require_model()
    c1, c2, c3, c4 = st.columns(4)
    n = controls.draw(PAGE, "sample_count", ctx, c1)
    temperature = controls.draw(PAGE, "sample_temperature", ctx, c2)
    seed = controls.draw(PAGE, "sample_seed", ctx, c3)
    if c4.button("Resample", key="sample_resample"):
        controls.put(PAGE, "sample_draw", (controls.value(PAGE, "sample_draw") or 0) + 1)
    y = None
    if model.num_classes:
        names = widgets.class_names(model, ctx.data)
        y = controls.draw(PAGE, "sample_class", ctx, label="Class", format_func=names.__getitem__)
    if type(model).prior_sample is not VAEBase.prior_sample:
        # This model has no N(0, I) prior of its own (a VQ-VAE): say how its samples are drawn.
        st.info(f"How these samples are drawn: {inspect.getdoc(type(model).prior_sample)}")
    options = {}                            # the model's own sampling options
    if layers.is_hierarchical(model):
        options["layer_temperatures"] = inspector.layer_temperatures(model, PAGE, "sample_layer_temperature_", ctx)
    elif codebook.has_code_prior(model):
        options["top_k"] = inspector.top_k_slider(model, PAGE, "sample_top_k", ctx)
    draw = controls.value(PAGE, "sample_draw") or 0
    limits.settings().check_images(model, n, "samples")
    x = explore.sample_grid(model, n, seed=int(seed) * 1_000_003 + draw, temperature=temperature, y=y, **options)
    label = f", class {widgets.class_names(model, ctx.data)[y]}" if y is not None else ""
    img = widgets.show_grid(x, caption=f"{figures.plural(n, 'sample')}{label}, temperature {temperature:g}, "
                                       f"seed {seed}" + (f", draw {draw}" if draw else ""))
    st.download_button("Download the grid (PNG)", images.png_bytes(img), file_name="samples.png",
                       mime="image/png", key="sample_download")
    if layers.is_hierarchical(model):
        inspector.resample_layer_section(model, PAGE, ctx, seed=int(seed) * 1_000_003 + draw, temperature=temperature)
