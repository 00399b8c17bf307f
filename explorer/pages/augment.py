"""Augment: new images near one image, drawn from its posterior (or, for a conditional model, the prior with its
class), at a chosen spread; download them as a grid or as separate PNG files."""
import streamlit as st
import torch

from explorer import controls, limits, session, widgets
from explorer.page_settings import AUGMENT as PAGE
from vae_core import images
from vae_core.latent import augment

st.title("Augment")
st.caption("Data augmentation by the posterior: z = mu + spread x std x eps from the image's q(z | x), decoded. "
           "Spread 0 gives the reconstruction; 1 draws from the posterior itself; more reaches further. "
           "`python -m vae_core augment` does the same for a whole dataset and writes an image folder.")

with session.guard("Augmentation"):
    ctx = session.context()
    model = ctx.require_model()
    picked, right = widgets.image_beside("aug_src", "Image", ctx)
    x, y, caption = picked.x, picked.y, picked.caption
    with right:
        c1, c2, c3 = st.columns(3)
        scale = controls.draw(PAGE, "aug_scale", ctx, c1)
        count = controls.draw(PAGE, "aug_count", ctx, c2)
        seed = controls.draw(PAGE, "aug_seed", ctx, c3)
        mode = "posterior"
        if model.num_classes:
            mode = controls.draw(PAGE, "aug_mode", ctx, horizontal=True, format_func={"posterior": "its posterior (near this image)",
                                         "prior": "the prior, with its class (new styles of the class)"}.get)
        labels = torch.tensor([y]) if model.num_classes else None
        if mode == "posterior" and augment.deterministic_encoder(model, x, labels):
            st.info("This model's encoder is deterministic: it maps an image to one code (a VQ-VAE picks one "
                    "codebook entry per position), so its posterior is a single point and every draw, at any "
                    "spread, is the same image: its reconstruction, shown once below. A model with a Gaussian "
                    "encoder (e.g. mnist-mlp) draws varied images here.")
            count, scale = 1, 0.0
        limits.settings().check_images(model, count, "augmented images")
        gen = torch.Generator(device=model.device).manual_seed(int(seed))
        drawn = augment.augment_images(model, x, labels, count, scale, mode, gen)
        what = "reconstructions" if scale == 0 and mode == "posterior" else f"{mode} draws at spread {scale:g}"
        if model.num_classes:
            what += f", class {widgets.class_names(model, ctx.data)[y]}"
        img = widgets.show_grid(drawn, caption=f"{count} {what} of {caption}" if count > 1 else
                                f"the {what[:-1]} of {caption}", span=0.6)
        d1, d2 = st.columns(2)
        d1.download_button("Download the grid (PNG)", images.png_bytes(img), file_name="augmentations.png",
                           mime="image/png", key="aug_download_png")
        d2.download_button("Download the images (ZIP)", augment.png_zip(drawn, "augmented"),
                           file_name="augmentations.zip", mime="application/zip", key="aug_download_zip")
