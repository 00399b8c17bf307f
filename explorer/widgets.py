"""Widgets the pages share: crisp image grids, the class picker, one image from the dataset, an
upload or a drawing, and the points selected on a Plotly chart."""
from __future__ import annotations

import io

import streamlit as st
import torch

import vae_core
from vae_core import ImageSet, VAEBase, images

from explorer.session import Context

IMAGE_SOURCES = ("Dataset", "Upload", "Draw")
CANVAS_SIDE = 168           # pixels of the drawing canvas: six times MNIST's 28
CANVAS_STROKE = 14          # pen width on it, about an MNIST stroke at that scale


def scale_for(shape, target: int = 112) -> int:
    return max(1, target // max(shape[-1], 1))


def show_grid(x: torch.Tensor, nrow: int | None = None, caption: str | None = None, target: int = 56):
    """Show (B, C, H, W) images as one crisp grid; returns the PIL image (e.g. for a download)."""
    img = images.to_pil(images.grid(x, nrow), scale_for(x.shape, target))
    st.image(fast_png(img), caption=caption, output_format="PNG")
    return img


def fast_png(img) -> bytes:
    """PNG with light compression: a few times quicker to write than the default, which matters on a slider."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def class_names(model: VAEBase, data: ImageSet | None) -> list[str]:
    """The model's classes by name: the dataset's names when they match the model's classes, else numbers."""
    if data is not None and len(data.class_names) == model.num_classes:
        return list(data.class_names)
    return [str(i) for i in range(model.num_classes)]


def class_picker(model: VAEBase, data: ImageSet | None, key: str, label: str = "Class",
                 default: int = 0) -> int | None:
    """A class selector for a conditional model (None for an unconditional one)."""
    if not model.num_classes:
        return None
    names = class_names(model, data)
    return st.selectbox(label, range(model.num_classes), index=min(default, model.num_classes - 1),
                        format_func=lambda i: names[i], key=key)


# ---------------------------------------------------------------------------------------------
# Picking one image: from the dataset, an upload, or a drawing


def canvas_available() -> bool:
    try:
        import streamlit_drawable_canvas  # noqa: F401
    except ImportError:
        return False
    return True


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


def image_input(slot: str, title: str, ctx: Context, default_index: int = 0):
    """Widgets for one image; returns (x (1, C, H, W) in [0, 1], label or None, caption), or None
    while the user has not given one yet."""
    model = ctx.require_model()
    sources = [s for s in IMAGE_SOURCES if s != "Draw" or canvas_available()]
    st.markdown(f"**{title}**")
    source = st.radio("Source", sources, key=f"{slot}_source", horizontal=True, label_visibility="collapsed")
    if source == "Dataset":
        data = ctx.require_data()
        key = f"{slot}_index"
        st.session_state.setdefault(key, min(default_index, len(data) - 1))
        c1, c2 = st.columns([3, 1])
        i = int(c1.number_input("Index", 0, len(data) - 1, key=key))
        c2.button("Random", key=f"{slot}_random", on_click=_random_index, args=(key, len(data)))
        x = data.images[i:i + 1].float().div_(255)
        label = None if data.labels is None else int(data.labels[i])
        st.image(fast_png(images.to_pil(x[0], scale_for(x.shape, 84))), caption=f"image {i}", output_format="PNG")
        return x, label, f"image {i}"
    if source == "Upload":
        up = st.file_uploader("PNG or JPEG image", type=["png", "jpg", "jpeg", "gif", "bmp", "webp"],
                              key=f"{slot}_upload")
        if up is None:
            st.info("Upload an image: it is converted to the model's size and channels.")
            return None
        img = images.decode_image(up.getvalue())
        caption = f"upload {up.name}"
        frames = _frame_count(up.getvalue())
        if frames > 1:
            st.info(f"{up.name} is animated ({frames} frames); the first frame is used.")
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
    st.image(fast_png(images.to_pil(x[0], scale_for(x.shape, 84))), caption="what the model sees", output_format="PNG")
    label = class_picker(model, ctx.data, f"{slot}_class", "Its class") if model.num_classes else None
    return x, label, caption


def image_beside(slot: str, title: str, ctx: Context, default_index: int = 0, widths=(2, 3)):
    """An image picker (``image_input``) in a left column, and the right column for what is made of the image.
    Returns ((x, label, caption), right column); stops the page while no image is given."""
    left, right = st.columns(list(widths))
    with left:
        picked = image_input(slot, title, ctx, default_index)
    if picked is None:
        st.stop()
    return picked, right


def selected_points(event) -> list[int]:
    """Dataset indices of the points selected on a Plotly chart (stored in customdata)."""
    out = []
    for p in (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
            getattr(getattr(event, "selection", None), "points", []) or []:
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            out.append(int(cd))
    return out


def parse_indices(text: str, limit: int = 64) -> list[int]:
    """'3, 17 42' -> [3, 17, 42]; anything else is a VAEError that says what is expected."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        out = [int(p) for p in parts]
    except ValueError:
        raise vae_core.VAEError(f"{text!r} is not a list of image indices; write them like 3, 17, 42.") from None
    return out[:limit]
