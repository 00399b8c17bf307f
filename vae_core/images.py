"""Conversions between tensors, arrays and PIL images, and image grids."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

from .settings import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1] (B, C, H, W) or (C, H, W) to uint8 HWC arrays; values outside [0, 1] are
    shown as black or white (a Gaussian decoder's mean may overshoot slightly)."""
    x = x.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile (B, C, H, W) images into one (C, H', W') image, ``nrow`` per row."""
    b, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(b)))
    rows = math.ceil(b / nrow)
    out = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value,
                     dtype=images.dtype, device=images.device)
    for i in range(b):
        r, col = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + col * (w + padding)
        out[:, y0:y0 + h, x0:x0 + w] = images[i]
    return out


def to_pil(x: torch.Tensor, scale: int = 1) -> Image.Image:
    """One (C, H, W) float image in [0, 1] to a PIL image, enlarged ``scale`` times (nearest, crisp pixels)."""
    arr = to_uint8(x)
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images: torch.Tensor, path, nrow: int | None = None, scale: int = 1) -> None:
    to_pil(grid(images, nrow), scale).save(path)


# ---------------------------------------------------------------------------------------------
# Uploads: decode untrusted bytes safely, then fit them to a model's input.

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


def decode_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
                 reduce_to: int | None = None) -> Image.Image:
    """Decode an uploaded image (PNG, JPEG, GIF, BMP or WEBP) into an upright RGB or L image.

    Refuses, with a VAEError that says what to do: empty, oversized or unknown files, images
    with more than ``max_pixels`` pixels (checked from the header, before decoding, so a
    decompression bomb never allocates), and truncated or corrupt data. The first frame of an
    animation is used; EXIF orientation is applied.

    With ``reduce_to`` (a pixel budget) a larger image comes back reduced by a whole factor to fit it, at
    decode where the format allows (JPEG's draft mode) and otherwise straight after, before any
    conversion copies it (a 16-bit 4096x4096 PNG took ~450 MB through the conversions at full size).
    """
    import warnings

    from PIL import ImageOps, UnidentifiedImageError

    from .errors import VAEError

    if not data:
        raise VAEError("The uploaded file is empty; choose a PNG or JPEG image.")
    if len(data) > max_bytes:
        raise VAEError(f"The uploaded file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
                       "Shrink or crop the image first.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if img.width * img.height > max_pixels:
                raise VAEError(f"The image is {img.width}x{img.height} pixels; the limit is {max_pixels:,} pixels. "
                               "Resize it first.")
            factor = _reduction(img.width, img.height, reduce_to)
            if factor > 1 and img.format == "JPEG":
                img.draft(img.mode, (img.width // factor, img.height // factor))   # decoded at 1/2 .. 1/8 scale
            img.seek(0)
            img.load()
            img = _reduce(img, _reduction(img.width, img.height, reduce_to))
            img = ImageOps.exif_transpose(img)
    except VAEError:
        raise
    except UnidentifiedImageError:
        raise VAEError(f"The upload is not an image in an allowed format ({', '.join(ALLOWED_FORMATS)}).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise VAEError("The image declares an enormous size (a decompression bomb?); refusing to decode it.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise VAEError(f"The image is truncated or corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                       "re-export it and upload again.") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white: a drawing on a transparent canvas reads as ink on paper.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode.startswith("I") or img.mode == "F":
        return _deep_grey_to_l(img)
    return img.convert("L" if img.mode in ("1", "L") else "RGB")


def _reduction(width: int, height: int, budget: int | None) -> int:
    """The whole factor that brings width x height within ``budget`` pixels (1: it fits, or no budget)."""
    if not budget or width * height <= budget:
        return 1
    return math.ceil(math.sqrt(width * height / budget))


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """``img`` reduced ``factor`` times each way: averaged where Pillow can, else every factor-th pixel."""
    if factor <= 1:
        return img
    if img.mode in ("L", "LA", "I", "F", "RGB", "RGBA", "CMYK"):
        return img.reduce(factor)
    if img.mode == "P":
        return img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.NEAREST)
    arr = np.asarray(img)[::factor, ::factor]              # 16-bit greys (I;16): a view, copied small
    return Image.fromarray(np.ascontiguousarray(arr))     # still I;16, so it is scaled as 16 bits


def _deep_grey_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greys scaled into 0..255: Pillow's convert("L") would clip them at 255."""
    arr = np.asarray(img)
    if img.mode == "F":
        scaled = arr * 255.0 if float(arr.max(initial=0.0)) <= 1.0 else arr
    elif img.mode.startswith("I;16") or int(arr.max(initial=0)) > 255:
        scaled = arr.astype(np.int64) >> 8                 # 16 significant bits (Pillow reads 16-bit PNGs as "I")
    else:
        scaled = arr
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_model_input(img: Image.Image, in_shape: tuple[int, int, int], invert: bool | None = None) -> torch.Tensor:
    """A PIL image as the model sees it: (1, C, H, W) floats in [0, 1], resized (aspect kept by padding).

    ``invert`` None decides from the image: models trained on MNIST expect light ink on a
    dark ground, so a mostly light picture (a photo of ink on paper) is inverted.
    """
    c, h, w = in_shape
    img = img.convert("L" if c == 1 else "RGB")
    light = _is_light(img)
    from PIL import ImageOps

    fit = ImageOps.contain(img, (w, h), Image.LANCZOS)          # scaled up or down, aspect kept
    ground = 255 if light else 0                              # pad with the picture's own background
    canvas = Image.new(fit.mode, (w, h), ground if c == 1 else (ground,) * 3)
    canvas.paste(fit, ((w - fit.width) // 2, (h - fit.height) // 2))
    x = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)
    x = x[None] if c == 1 else x.permute(2, 0, 1)             # (C, H, W)
    if light if invert is None else invert:
        x = 1.0 - x
    return x[None].contiguous()


def _is_light(img: Image.Image) -> bool:
    return float(np.asarray(img.convert("L"), dtype=np.float32).mean()) > 127.5


def gif_bytes(frames: torch.Tensor, scale: int = 4, duration_ms: int = 80, bounce: bool = True) -> bytes:
    """An animated GIF of (N, C, H, W) frames in [0, 1], played forth and back when ``bounce``."""
    imgs = [to_pil(f, scale) for f in frames]
    if bounce and len(imgs) > 2:
        imgs = imgs + imgs[-2:0:-1]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0)
    return buf.getvalue()
