"""Sample: a grid of draws from the prior."""
import inspect

import streamlit as st

from explorer import controls, figures, inspector, intro, limits, session, widgets
from explorer.navigation import PAGES
from explorer.page_settings import SAMPLE as PAGE
from vae_core import images
from vae_core.latent import codebook, explore, hierarchy as layers
from vae_core.models import VAEBase

st.title("Sample")


def how_drawn(model) -> str:
    """How this model's samples are drawn, where it is not simply z ~ N(0, I) scaled by the temperature:
    what applies to this model, in what the controls do (never code names)."""
    if codebook.has_code_prior(model):
        return ("How these samples are drawn: this model has a learned code prior, so each sample's code grid is "
                "drawn from it one code at a time, in reading order, each given the codes before it: the samples "
                "are coherent images. Temperature flattens (above 1: more varied) or sharpens (below 1: more "
                "typical) each draw; top-k keeps only the k most likely codes at each draw (0: all of them).")
    if codebook.is_vq(model):
        return ("How these samples are drawn: this model has no learned code prior, so each position's code is "
                "drawn on its own, from how often the codes were used in training: the samples show the code "
                "vocabulary, textures rather than coherent images (`python -m vae_core train-prior` trains a "
                "prior that draws whole images). Temperature flattens (above 1) or sharpens (below 1) those "
                "frequencies.")
    if layers.is_hierarchical(model):
        return ("How these samples are drawn: this hierarchical VAE draws its top layer from N(0, I) and each "
                "lower layer given the layers above it. Temperature scales every layer's spread at once (below 1: "
                "smoother, more typical images; above 1: more varied, noisier ones); each layer's own temperature "
                "scales that layer's spread alone, top layer first: the top layers tend to set the overall shape, "
                "the lower ones the details.")
    if type(model).prior_sample is not VAEBase.prior_sample:
        return f"How these samples are drawn: {inspect.getdoc(type(model).prior_sample)}"
    return ""

with session.guard("Sampling"):
    ctx = session.context()
    intro.show(ctx, PAGES)                  # the first visit's orientation, until the visitor hides it
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
    how = how_drawn(model)
    if how:
        st.info(how)
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
