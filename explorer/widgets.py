"""Widgets the pages share: crisp image grids, the class picker, one image from the dataset, an
upload, a drawing or a code chosen on the latent map."""
from __future__ import annotations

import dataclasses
import hashlib
import io

import streamlit as st
import torch
from PIL import Image

import vae_core
from vae_core import ImageSet, VAEBase, images
from vae_core.latent import explore

from explorer import figures, handoff
from explorer.session import Context
from explorer.text import literal

IMAGE_SOURCES = ("Dataset", "Upload", "Draw")
# What the uploader takes is what the decoder accepts (vae_core.images.ALLOWED_FORMATS), and its label names each.
UPLOAD_TYPES = tuple(ext for f in images.ALLOWED_FORMATS for ext in (("jpg", "jpeg") if f == "JPEG" else (f.lower(),)))
_SHOWN = tuple("WebP" if f == "WEBP" else f for f in images.ALLOWED_FORMATS)
UPLOAD_LABEL = f"Image ({', '.join(_SHOWN[:-1])} or {_SHOWN[-1]})"
CANVAS_SIDE = 168           # pixels of the drawing canvas: six times MNIST's 28
CANVAS_STROKE = 14          # pen width on it, about an MNIST stroke at that scale
PREVIEW_TILE = 168          # one image shown on its own (an input, a decoded code)
UPLOADS_KEY = "_decoded_uploads"   # session state: sha256 of an upload -> its decoded image (or its refusal)


def show_grid(x: torch.Tensor, nrow: int | None = None, caption: str | None = None, *, span: float = 1.0,
              max_tile: int = figures.MAX_TILE, wrap: bool = True, where=None):
    """Show (B, C, H, W) images as one crisp grid of readable tiles in a column ``span`` of the
    main column wide (see figures.grid_layout); returns the PIL image (e.g. for a download)."""
    layout = figures.grid_layout(len(x), x.shape[-1], nrow, span=span, max_tile=max_tile, wrap=wrap)
    img = images.to_pil(images.grid(x, layout.per_row, padding=1), layout.scale)
    (where or st).image(fast_png(img), caption=caption, output_format="PNG", width=layout.width)
    return img


def page_style() -> None:
    """The app's few CSS rules (crisp image scaling); app.py calls it once per run."""
    st.html(figures.PAGE_STYLE)


def fast_png(img) -> bytes:
    """PNG with light compression: a few times quicker to write than the default, which matters on a slider."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def class_names(model: VAEBase, data: ImageSet | None) -> list[str]:
    """The conditional model's class names: the dataset's where they match, else the numbers."""
    if data is not None and len(data.class_names) == model.num_classes:
        return list(data.class_names)
    return [str(i) for i in range(model.num_classes)]


def class_picker(model: VAEBase, data: ImageSet | None, key: str, label: str = "Class",
                 default: int = 0) -> int | None:
    """A class selector for a conditional model (None for an unconditional one).

    ``default`` is the class it starts at, the first time it is drawn; from then on only the user
    moves it. (A default that changed between runs made the browser show it while the server kept
    the user's last choice: the box and the decoded class disagreed.)"""
    if not model.num_classes:
        return None
    names = class_names(model, data)
    if st.session_state.get(key) not in range(model.num_classes):
        st.session_state[key] = min(max(int(default), 0), model.num_classes - 1)
    return st.selectbox(label, range(model.num_classes), format_func=lambda i: names[i], key=key)


# ---------------------------------------------------------------------------------------------
# Picking one image: from the dataset, an upload, or a drawing


def canvas_available() -> bool:
    try:
        import streamlit_drawable_canvas  # noqa: F401
    except ImportError:
        return False
    return True


def parse_units(text: str, n: int, most: int) -> list[int]:
    """Unit numbers typed as "3, 17, 200" (each below ``n``, at most ``most`` of them), in the order given."""
    picked: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip().removeprefix("z")
        if not part:
            continue
        if not part.isdigit() or int(part) >= n:
            raise vae_core.VAEError(f"{part[:20]!r} is not a unit of this model: type unit numbers from 0 to {n - 1}, "
                                    "separated by commas.")
        if int(part) not in picked:
            picked.append(int(part))
    if len(picked) > most:
        raise vae_core.VAEError(f"{len(picked)} units picked; Traverse shows at most {most} sliders "
                                "(VAE_EXPLORER_MAX_UNIT_SLIDERS). Pick fewer.")
    return picked


def units_shown(order, picked, most: int) -> list[int]:
    """The units that get a slider: all of ``order`` (most informative first) when they fit in ``most``;
    else the ``picked`` ones and then the most informative others, ``most`` in all."""
    if len(order) <= most:
        return list(order)
    picked = list(picked)[:most]
    chosen = set(picked)
    return picked + [u for u in order[:most] if u not in chosen][:most - len(picked)]


def unit_sliders_shown(stats, key: str) -> list[int]:
    """Traverse's units with a slider: every unit of a model with at most VAE_EXPLORER_MAX_UNIT_SLIDERS, else
    the most informative by KL and a box for more (a 16,384-unit model drew a slider per unit: 43 s of server
    CPU, a browser that never settled)."""
    from explorer.limits import settings

    most, n = settings().max_unit_sliders, len(stats.order)
    if n <= most:
        return list(stats.order)
    text = st.text_input(f"More units ({n:,} in all; {most} sliders are shown)", key=key, placeholder="e.g. 3, 250",
                         help="Unit numbers, separated by commas: their sliders come first, and the most "
                              "informative units (by KL) fill the rest.")
    try:
        picked = parse_units(text, n, most)
    except vae_core.VAEError as e:
        st.error(str(e))
        picked = []
    return units_shown(stats.order, picked, most)


def _random_index(key: str, n: int) -> None:
    """on_click: a new random index from a per-session generator (seeded by the click count)."""
    clicks = st.session_state.get(f"{key}_clicks", 0) + 1
    st.session_state[f"{key}_clicks"] = clicks
    gen = torch.Generator().manual_seed(clicks * 7919 + len(key))
    st.session_state[key] = int(torch.randint(n, (1,), generator=gen))


def _frame_count(data: bytes) -> int:
    """Frames in an upload that decode_image has already accepted (an animated GIF, PNG or WEBP: more than 1)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=images.ALLOWED_FORMATS) as probe:
            return int(getattr(probe, "n_frames", 1))
    except Exception:             # counting frames is a courtesy: the image itself decoded
        return 1


def decoded_upload(data: bytes, state=None) -> tuple[Image.Image, int]:
    """An upload's image (reduced to VAE_EXPLORER_MAX_UPLOAD_PIXELS) and its frame count, decoded once per
    session: kept in session state by the sha256 of its bytes (a refusal too), the most recent
    VAE_EXPLORER_MAX_UPLOAD_FILES of them, so reruns and Interpolate's other inputs do not decode it again."""
    from explorer.limits import settings

    s = settings()
    state = st.session_state if state is None else state
    kept = state.setdefault(UPLOADS_KEY, {})
    key = hashlib.sha256(data).hexdigest()
    hit = kept.pop(key, None)
    if hit is None:
        try:
            hit = (images.decode_image(data, reduce_to=s.max_upload_pixels), _frame_count(data))
        except vae_core.VAEError as e:
            hit = e
    kept[key] = hit                                           # the most recent last
    while len(kept) > s.max_upload_files:
        kept.pop(next(iter(kept)))
    if isinstance(hit, vae_core.VAEError):
        raise hit
    return hit


@dataclasses.dataclass(frozen=True)
class Picked:
    """One input of Interpolate: an image (or a code from the latent map) and what it is."""

    x: torch.Tensor               # (1, C, H, W) in [0, 1]: the image, or the chosen code decoded
    y: int | None                 # its class (a conditional model's, or the dataset's label)
    caption: str
    z: torch.Tensor | None = None  # a code given directly (from the latent map); else the image is encoded

    def code(self, model: VAEBase) -> torch.Tensor:
        return self.z if self.z is not None else explore.encode(model, self.x, self.y if model.num_classes else None)


def image_input(slot: str, title: str, ctx: Context, default_index: int = 0,
                chosen: handoff.ChosenCode | None = None) -> Picked | None:
    """Widgets for one image: from the dataset, an upload, a drawing, or (given ``chosen``) a code
    sent from the latent map. None while the user has not given one, or when what they gave was
    refused: the message then stands in this widget's place and the rest of the page goes on."""
    model = ctx.require_model()
    sources = [s for s in IMAGE_SOURCES if s != "Draw" or canvas_available()] + ([handoff.SOURCE] if chosen else [])
    key = f"{slot}_source"
    if chosen is not None and handoff.take_fresh(slot):
        st.session_state[key] = handoff.SOURCE          # just sent from the latent map: show it
    if st.session_state.get(key) not in sources:
        st.session_state[key] = sources[0]
    st.markdown(f"**{title}**")
    source = st.radio("Source", sources, key=key, horizontal=True, label_visibility="collapsed")
    try:
        return _picked(slot, source, ctx, model, default_index, chosen)
    except vae_core.VAEError as e:          # this input only: the other inputs and the tabs stay
        st.error(str(e))
        return None


def _picked(slot, source, ctx, model, default_index, chosen) -> Picked | None:
    if source == handoff.SOURCE:
        x = explore.decode(model, chosen.z, chosen.y)
        show_grid(x, span=0.5, max_tile=PREVIEW_TILE, caption=f"{chosen.caption}, decoded")
        return Picked(x, chosen.y, chosen.caption, chosen.z)
    if source == "Dataset":
        data = ctx.data
        if data is None:            # the page says why once (Interpolate shows ctx.data_error above its inputs)
            st.info("No dataset image to pick: upload or draw one, or choose a dataset the model reads.")
            return None
        key = f"{slot}_index"
        st.session_state.setdefault(key, min(default_index, len(data) - 1))
        c1, c2 = st.columns([3, 1])
        i = int(c1.number_input("Index", 0, len(data) - 1, key=key))
        c2.button("Random", key=f"{slot}_random", on_click=_random_index, args=(key, len(data)))
        x = data.images[i:i + 1].float().div_(255)
        label = None if data.labels is None else int(data.labels[i])
        show_grid(x, span=0.5, max_tile=PREVIEW_TILE, caption=f"image {i}")
        return Picked(x, label, f"image {i}")
    if source == "Upload":
        up = st.file_uploader(UPLOAD_LABEL, type=list(UPLOAD_TYPES), key=f"{slot}_upload")
        if up is None:
            st.info("Upload an image: it is converted to the model's size and channels.")
            return None
        img, frames = decoded_upload(up.getvalue())
        caption = f"upload {literal(up.name)}"        # a visitor's file name: captions render markdown too
        if frames > 1:
            st.info(f"{literal(up.name)} is animated ({frames} frames); the first frame is used.")
    else:
        from streamlit_drawable_canvas import st_canvas

        result = st_canvas(key=f"{slot}_canvas", width=CANVAS_SIDE, height=CANVAS_SIDE, stroke_width=CANVAS_STROKE,
                           stroke_color="#ffffff",
                           background_color="#000000", return_image_data=True)
        if result.image_bytes is None or not result.json_data or not result.json_data.get("objects"):
            st.info("Draw on the canvas (light ink on dark, like MNIST).")
            return None
        img = images.decode_image(result.image_bytes)
        caption = "drawing"
    x = images.to_model_input(img, model.config.in_shape)
    show_grid(x, span=0.5, max_tile=PREVIEW_TILE, caption="what the model sees")
    label = class_picker(model, ctx.data, f"{slot}_class", "Its class") if model.num_classes else None
    return Picked(x, label, caption)


def image_beside(slot: str, title: str, ctx: Context, default_index: int = 0, widths=(2, 3)):
    """An image picker (``image_input``) in a left column, and the right column for what is made of the image.
    Returns (the ``Picked`` image, the right column); stops the page while no image is given."""
    left, right = st.columns(list(widths))
    with left:
        picked = image_input(slot, title, ctx, default_index)
    if picked is None:
        st.stop()
    return picked, right
