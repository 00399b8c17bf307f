"""Class and style, for a model whose generative model has a class beside the code (an M2, or a CVAE).

The code z is the style (slant, thickness, size); the class y is the content. Holding one and
varying the other shows that the model keeps them apart:
``style_grid`` decodes the same styles as every class, ``style_transfer`` encodes one image's
style and decodes it as every class (Kingma et al., 2014, figure 1). Everything runs under
``torch.inference_mode()`` on a model that may be shared between sessions.
"""
from __future__ import annotations

import torch

from ..errors import VAEError
from ..models import VAEBase
from .class_style import classifies

MAX_GRID_IMAGES = 1024          # styles x classes decoded at once


def _require_classes(model: VAEBase) -> int:
    if not model.num_classes:
        raise VAEError("This model has no class variable: class and style apart needs a conditional model "
                       "(an M2 or a CVAE, e.g. mnist-m2 or mnist-cvae).")
    return model.num_classes


@torch.inference_mode()
def style_grid(model: VAEBase, n_styles: int, seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """``n_styles`` styles z ~ p(z), each decoded as every class: (n_styles * K, C, H, W) on the CPU, a row per style."""
    k = _require_classes(model)
    if n_styles < 1 or n_styles * k > MAX_GRID_IMAGES:
        raise VAEError(f"{n_styles} styles x {k} classes is outside 1..{MAX_GRID_IMAGES} images; draw fewer styles.")
    if not 0 < temperature <= 10:
        raise VAEError(f"The temperature must be in (0, 10], got {temperature}.")
    gen = torch.Generator(device=model.device).manual_seed(seed)
    z = model.prior_sample(n_styles, gen, temperature)                      # (S, *latent)
    return decode_as_every_class(model, z)


@torch.inference_mode()
def decode_as_every_class(model: VAEBase, z: torch.Tensor) -> torch.Tensor:
    """Codes (S, *latent) decoded as each of the K classes: (S * K, C, H, W) on the CPU, row-major by code."""
    k = _require_classes(model)
    z = z.to(model.device)
    zs = z.repeat_interleave(k, dim=0)                                       # (S*K, *latent)
    ys = torch.arange(k, device=model.device).repeat(z.shape[0])             # (S*K,)
    return model.decode(zs, ys).float().clamp(0, 1).cpu()


@torch.inference_mode()
def class_probabilities(model: VAEBase, x: torch.Tensor) -> torch.Tensor | None:
    """q(y | x) for images (B, C, H, W): (B, K) on the CPU, or None for a model that is told the class."""
    if not classifies(model):
        return None
    return model.class_probs(x.to(model.device, torch.float32)).cpu()


@torch.inference_mode()
def style_transfer(model: VAEBase, x: torch.Tensor, y: int | None = None) -> tuple[torch.Tensor, int]:
    """The style of one image (1, C, H, W), decoded as every class: ((K, C, H, W), the class it was encoded with).

    The style is the mean of q(z | x, y) with y the image's class: given, or (for an M2) predicted.
    """
    _require_classes(model)
    x = x.to(model.device, torch.float32)
    if y is None:
        if not classifies(model):
            raise VAEError("This conditional model needs the image's class to read its style; choose it.")
        y = int(model.predict(x)[0])
    z = model.encode(x, model.class_labels(int(y), 1)).mode()                # (1, *latent)
    return decode_as_every_class(model, z), int(y)


__all__ = ["MAX_GRID_IMAGES", "class_probabilities", "decode_as_every_class", "style_grid", "style_transfer"]
