"""Safe decoding of uploads, conversion to a model's input, and GIFs."""
import io

import pytest
import torch
from PIL import Image

import vae_core
from vae_core.images import decode_image, gif_bytes, to_model_input


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_allowed_formats_decode(fmt):
    img = decode_image(encode(Image.new("RGB", (20, 10), (200, 10, 10)), fmt))
    assert img.size == (20, 10) and img.mode in ("RGB", "L")


def test_other_formats_and_junk_are_refused():
    with pytest.raises(vae_core.VAEError, match="allowed format"):
        decode_image(encode(Image.new("RGB", (8, 8)), "TIFF"))
    with pytest.raises(vae_core.VAEError, match="allowed format"):
        decode_image(b"definitely not an image")
    with pytest.raises(vae_core.VAEError, match="empty"):
        decode_image(b"")


def test_truncated_image_is_refused():
    data = encode(Image.effect_noise((64, 64), 50).convert("L"), "PNG")
    with pytest.raises(vae_core.VAEError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_size_limits():
    data = encode(Image.new("L", (100, 100)), "PNG")
    with pytest.raises(vae_core.VAEError, match="MB"):
        decode_image(data, max_bytes=10)
    with pytest.raises(vae_core.VAEError, match="pixels"):
        decode_image(data, max_pixels=99 * 99)


def test_decompression_bomb_is_refused_before_decoding():
    # A tiny PNG that declares 30000 x 30000 pixels: refused from its header.
    bomb = encode(Image.new("1", (30000, 30000)), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(vae_core.VAEError, match="pixels|decompression bomb"):
        decode_image(bomb)


def test_exif_orientation_is_applied():
    """Uploads and image folders decode alike (vae_core.data.decode goes through decode_image)."""
    img = Image.new("L", (20, 10), 0)
    img.paste(255, (0, 0, 5, 10))                               # white strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6                                            # "rotate 90 degrees clockwise to view"
    out = decode_image(encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (10, 20)                                 # upright: 10 wide, 20 tall
    top, bottom = out.crop((0, 0, 10, 4)), out.crop((0, 16, 10, 20))
    assert sum(top.tobytes()) / 40 > 200 and sum(bottom.tobytes()) / 40 < 50    # the strip is now on top


def test_to_model_input_fits_shape_and_polarity():
    paper = Image.new("L", (60, 30), 255)                        # light ground: inverted, like MNIST
    x = to_model_input(paper, (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32 and float(x.max()) == 0.0
    dark = Image.new("L", (28, 28), 0)
    dark.putpixel((5, 5), 255)
    x = to_model_input(dark, (1, 28, 28))
    assert float(x[0, 0, 5, 5]) == 1.0 and float(x.sum()) == 1.0
    rgb = to_model_input(Image.new("RGB", (10, 10), (0, 0, 255)), (3, 32, 32))
    assert rgb.shape == (1, 3, 32, 32) and float(rgb[0, 2].mean()) == 1.0
    assert float(to_model_input(paper, (1, 28, 28), invert=False).min()) == 1.0


def test_gif_has_every_frame_forth_and_back():
    frames = torch.rand(5, 1, 8, 8)
    gif = Image.open(io.BytesIO(gif_bytes(frames, scale=2)))
    assert gif.format == "GIF" and gif.size == (16, 16) and gif.n_frames == 8
