"""The first visit's orientation, on the first page: what this model is, what each page shows and three
things to try (each a button that opens that view); a returning visitor hides it for the session."""
from __future__ import annotations

from types import MappingProxyType

import streamlit as st

from explorer import controls
from explorer.page_settings import INTERPOLATE, LATENT_MAP, TRAVERSE
from explorer.session import Context
from explorer.text import literal

HIDDEN_KEY = "intro_hidden"           # per session: the visitor has hidden the introduction
PAGE_WORDS = MappingProxyType({       # what each page shows, by page file
    "sample": "new images decoded from random codes",
    "traverse": "move one latent unit (or a direction) at a time and watch the image change",
    "interpolate": "walk from one image's code to another's and decode each step",
    "latent_map": "every image's code as a point on a 2-D map; select a region to see its images",
    "train": "train a small VAE here and watch it learn",
    "analyze": "the numbers a paper would report: KL per unit, ELBO, anomalies, reconstructions",
    "classes": "a conditional model's styles, the same style across every class",
    "augment": "new images near one image, drawn from its posterior",
})
# Three views to try: (button label, page file, the settings the view opens with).
TRIES = (
    ("Move image 7's units one by one", "traverse", TRAVERSE,
     MappingProxyType({"traverse_base": "Dataset image", "traverse_index": 7})),
    ("Walk between two images", "interpolate", INTERPOLATE,
     MappingProxyType({"interp_method": "spherical"})),
    ("Map every image's code", "latent_map", LATENT_MAP, MappingProxyType({})),
)


def hide() -> None:
    st.session_state[HIDDEN_KEY] = True


def _model_words(ctx: Context) -> str:
    model = ctx.model
    if model is None:
        return "Pick a model in the sidebar to begin."
    shape = "x".join(map(str, model.latent_shape))
    trained = f" trained on {literal(ctx.info.trained_on)}" if ctx.info is not None and ctx.info.trained_on else ""
    return (f"This model is a **{model.config.model_type}** variational autoencoder (VAE){trained}. Its encoder "
            f"turns each image into a small code (a latent of shape {shape}) and its decoder turns a code back "
            "into an image; it was trained so that codes follow a simple prior, so a random code decodes to a "
            "plausible new image, and nearby codes to similar images.")


def show(ctx: Context, pages) -> None:
    """The orientation, unless hidden; ``pages`` is the app's (file, title, icon) list, in order."""
    if st.session_state.get(HIDDEN_KEY):
        return
    with st.container(border=True, key="intro"):
        st.markdown("#### New here?\n" + _model_words(ctx))
        st.markdown("\n".join(f"- **{title}**: {PAGE_WORDS[name]}" for name, title, _ in pages if name in PAGE_WORDS))
        st.markdown("Three things to try:")
        cols = st.columns(len(TRIES))
        for i, (label, name, page, settings) in enumerate(TRIES):
            if cols[i].button(label, key=f"intro_try_{name}", use_container_width=True):
                for key, value in settings.items():
                    controls.put(page, key, value)
                st.switch_page(f"explorer/pages/{name}.py")
        st.button("Hide this introduction", key="intro_hide", on_click=hide,
                  help="It stays hidden for the rest of this visit, on every page.")
