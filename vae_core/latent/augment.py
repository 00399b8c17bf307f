"""Data augmentation by the posterior: new images near each image, drawn from its q(z | x) and decoded.

    z = mu + scale * std * eps,   eps ~ N(0, I)          ("posterior")
    z = scale * eps, decoded with the image's class      ("prior", a conditional model only)

``scale`` says how far from the posterior mean to draw: 0 gives the reconstruction (the decoded
mean), 1 a draw from q(z | x) itself, more a wider neighbourhood. A conditional model (a CVAE or
an M2) encodes and decodes with each image's class, so every new image keeps its label; in "prior"
mode it draws new styles of the class and keeps nothing of the image but its class.
``write_image_folder`` writes the result as a folder the ``folder:`` source reads back with the
same labels: one subfolder per class, written beside its place and swapped in whole.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Callable, Literal

import torch

from ..data import ImageSet
from ..errors import VAEError
from ..images import to_pil
from ..io.files import atomic_folder, fsync_write
from ..models import VAEBase

Mode = Literal["posterior", "prior"]
MANIFEST = "augment.json"        # marks a folder this module wrote (and may therefore replace)
MAX_OUTPUT_IMAGES = 1_000_000    # the most images one call may make: a guard against a typo in per_image
MAX_PER_IMAGE = 10_000
SAFE_NAME = re.compile(r"[\w.-]{1,64}")


def check_request(n_images: int, per_image: int, scale: float, mode: str, model: VAEBase) -> None:
    """Refuse a bad request before anything is allocated, with what to change."""
    if not 1 <= per_image <= MAX_PER_IMAGE:
        raise VAEError(f"per_image must be between 1 and {MAX_PER_IMAGE}, got {per_image}.")
    if n_images * per_image > MAX_OUTPUT_IMAGES:
        raise VAEError(f"{n_images:,} images x {per_image} draws would make {n_images * per_image:,} images; the "
                       f"limit is {MAX_OUTPUT_IMAGES:,}. Draw fewer per image or augment a subset.")
    if not (math.isfinite(scale) and 0 <= scale <= 10):
        raise VAEError(f"The scale must be between 0 (the reconstruction) and 10, got {scale}.")
    if mode not in ("posterior", "prior"):
        raise VAEError(f"The mode must be 'posterior' or 'prior', got {mode!r}.")
    if mode == "prior" and not model.num_classes:
        raise VAEError("Prior draws keep an image's class only for a conditional model (a CVAE or an M2); "
                       "this model has no class, so use the posterior mode.")


@torch.inference_mode()
@torch.inference_mode()
def deterministic_encoder(model: VAEBase, x: torch.Tensor, y: torch.Tensor | None = None) -> bool:
    """The model's posterior is one point (a VQ-VAE's code grid, TAESD's latent): every posterior draw of
    ``x`` is its reconstruction, whatever the spread."""
    y = model.class_labels(y, x.shape[0]) if model.num_classes else None
    return model.encode(x.to(model.device, torch.float32), y).logvar is None


def augment_images(model: VAEBase, x: torch.Tensor, y: torch.Tensor | None, per_image: int, scale: float = 1.0,
                   mode: Mode = "posterior", generator: torch.Generator | None = None) -> torch.Tensor:
    """``per_image`` new images for each of x (B, C, H, W) in [0, 1], image-major: (B * per_image, C, H, W) on the CPU.

    y (B,) is required by a conditional model: every draw is decoded with its image's class.
    """
    check_request(x.shape[0], per_image, scale, mode, model)
    dev = model.device
    x = x.to(dev, torch.float32)
    y = model.class_labels(y, x.shape[0]) if model.num_classes else None
    gen_dev = generator.device if generator is not None else dev
    eps = torch.randn((x.shape[0], per_image, *model.latent_shape), generator=generator, device=gen_dev).to(dev)
    if mode == "prior":
        z = scale * eps                                                   # (B, n, *latent)
    else:
        post = model.encode(x, y)
        z = post.mu.unsqueeze(1) + scale * post.std.unsqueeze(1) * eps    # (B, n, *latent)
    y_rep = y.repeat_interleave(per_image) if y is not None else None
    return model.decode(z.flatten(0, 1), y_rep).float().clamp(0, 1).cpu()


def augment_dataset(model: VAEBase, data: ImageSet, per_image: int, scale: float = 1.0, mode: Mode = "posterior",
                    seed: int = 0, batch_size: int = 256, progress: Callable[[int, int], None] | None = None) -> ImageSet:
    """Every image of ``data`` augmented ``per_image`` times, as an ImageSet with the source images' labels."""
    check_request(len(data), per_image, scale, mode, model)
    if tuple(data.shape) != tuple(model.config.in_shape):
        raise VAEError(f"The model takes images of shape {list(model.config.in_shape)} but {data.name or 'the dataset'} "
                       f"holds {list(data.shape)}; load it at the model's size and channels.")
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for x, y in data.batches(batch_size, with_labels=bool(model.num_classes)):
        out.append(augment_images(model, x, y, per_image, scale, mode, gen).mul(255).round_().to(torch.uint8))
        if progress is not None:
            progress(min(len(data), len(out) * batch_size), len(data))
    images = torch.cat(out) if out else torch.zeros((0, *data.shape), dtype=torch.uint8)
    labels = data.labels.repeat_interleave(per_image) if data.labels is not None else None
    return ImageSet(images, labels, class_names=data.class_names,
                    name=f"{data.name or 'images'} augmented ({mode}, scale {scale:g}, {per_image} per image)")


def class_folder_names(data: ImageSet) -> list[str]:
    """One folder name per class, such that the folder source's sorted class folders give back the same labels:
    the class names where they are safe and already sorted, else zero-padded numbers."""
    k = data.num_classes
    names = list(data.class_names)
    if len(names) == k and names == sorted(names) and all(SAFE_NAME.fullmatch(n) and n not in (".", "..")
                                                          for n in names) and len(set(names)) == k:
        return names
    width = len(str(max(k - 1, 0)))
    return [f"{i:0{width}d}" for i in range(k)]


def write_image_folder(data: ImageSet, out: str | Path, manifest: dict | None = None,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``data`` as PNG files, one subfolder per class (none when unlabelled), atomically.

    ``load_dataset(f"folder:{out}", "all")`` reads it back: the same images, and the same labels
    wherever every class has an image (the folder source numbers the non-empty class folders in
    sorted order). An existing folder is replaced only if this function wrote it (it holds
    augment.json); any other folder at ``out`` is refused, so nothing of yours is overwritten.
    """
    out = Path(out).expanduser()
    if out.exists() and not (out.is_dir() and ((out / MANIFEST).is_file() or not any(out.iterdir()))):
        raise VAEError(f"{out} already exists and was not written by augment; choose a new folder.")
    if len(data) == 0:
        raise VAEError("There are no images to write.")
    names = class_folder_names(data) if data.labels is not None else []

    def write(tmp: Path) -> None:
        for d in names:
            (tmp / d).mkdir()
        for i in range(len(data)):
            folder = tmp / names[int(data.labels[i])] if names else tmp
            to_pil(data.images[i].float().div(255)).save(folder / f"{i:07d}.png", compress_level=1)
            if progress is not None and (i % 1000 == 999 or i == len(data) - 1):
                progress(i + 1, len(data))
        info = {"images": len(data), "shape": list(data.shape), "classes": names, "source": data.name,
                **(manifest or {})}
        fsync_write(tmp / MANIFEST, json.dumps(info, indent=2).encode())

    try:
        atomic_folder(out, write)
    except OSError as e:
        raise VAEError(f"Could not write {out} ({e.strerror or e}); nothing there was changed. "
                       "Free some disk space or choose another folder.") from None
    return out


def png_zip(x: torch.Tensor, prefix: str = "image") -> bytes:
    """Images (B, C, H, W) in [0, 1] as a ZIP of PNG files named prefix-000.png, prefix-001.png, ... at their own size."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:     # PNGs are compressed already
        for i, img in enumerate(x):
            png = io.BytesIO()
            to_pil(img).save(png, format="PNG")
            zf.writestr(f"{prefix}-{i:03d}.png", png.getvalue())
    return buf.getvalue()


def with_originals(data: ImageSet, augmented: ImageSet) -> ImageSet:
    """The source images followed by their augmentations, as one set."""
    labels = None if data.labels is None else torch.cat([data.labels, augmented.labels])
    return dataclasses.replace(augmented, images=torch.cat([data.images, augmented.images]), labels=labels)


__all__ = ["MANIFEST", "MAX_OUTPUT_IMAGES", "augment_dataset", "augment_images", "check_request",
           "class_folder_names", "png_zip", "with_originals", "write_image_folder"]
