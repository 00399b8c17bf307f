"""Walks through latent space: traversals, manifold grids, interpolation, latent arithmetic.

Everything here runs under ``torch.inference_mode()`` on a model that may be shared between
sessions, so nothing writes to the model. A "unit" is what one slider moves: a latent
dimension for a flat latent (B, D), a whole channel for a spatial latent (B, C, h, w).
Flat units are set to a value (z_d = v, in prior standard deviations); spatial units are
shifted by v times the channel's spread over the data, since one number cannot stand for
a whole feature map.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Literal

import torch

from ..data import ImageSet
from ..errors import VAEError
from ..evaluation.metrics import evaluate_model
from ..models import VAEBase


@dataclasses.dataclass(frozen=True)
class UnitStats:
    kl: tuple[float, ...]           # mean KL per unit over the data (0 for a VQ-VAE)
    spread: tuple[float, ...]       # std over the data of the unit's posterior mean
    active: tuple[bool, ...]        # Var_x(mu) above the active-units threshold
    order: tuple[int, ...]          # units from most to least informative

    @classmethod
    def uniform(cls, n: int) -> "UnitStats":
        """No data to measure on: every unit active, natural order."""
        return cls((0.0,) * n, (1.0,) * n, (True,) * n, tuple(range(n)))


def is_spatial(model: VAEBase) -> bool:
    return len(model.latent_shape) == 3


def num_units(model: VAEBase) -> int:
    return model.latent_shape[0]


@torch.inference_mode()
def unit_stats(model: VAEBase, data: ImageSet, n: int = 1000, seed: int = 0) -> UnitStats:
    """KL and spread per unit from ``evaluate_model`` over ``data.seeded_subset(n, seed)`` (the same images,
    and so the same numbers, as ``analyze.latent_units`` with that n and seed: a dataset may be sorted by
    class, so never its first n); units ordered by KL (by spread for a VQ-VAE)."""
    from ..evaluation.metrics import AU_THRESHOLD

    sub, _ = data.seeded_subset(n, seed)
    m = evaluate_model(model, sub, seed=seed)
    if "latent_variance" in m:
        var = torch.tensor(m["latent_variance"]).view(model.latent_shape)
    else:                                       # a VQ-VAE: measure the spread of z_e ourselves
        var = encode_dataset(model, sub).var(0, unbiased=False)
    kl = torch.tensor(m["kl_per_dim"]).view(model.latent_shape) if "kl_per_dim" in m else torch.zeros_like(var)
    if is_spatial(model):                       # a channel summed (KL) or averaged (variance) over positions
        kl, var = kl.flatten(1).sum(1), var.flatten(1).mean(1)
    key = kl if kl.abs().sum() > 0 else var
    order = torch.argsort(key, descending=True, stable=True)
    return UnitStats(tuple(kl.tolist()), tuple(var.sqrt().tolist()), tuple((var > AU_THRESHOLD).tolist()),
                     tuple(order.tolist()))


def set_units(model: VAEBase, base: torch.Tensor, values, stats: UnitStats) -> torch.Tensor:
    """The code ``base`` (1, *latent) with every unit moved to ``values`` (one number per unit)."""
    v = torch.as_tensor(values, dtype=base.dtype, device=base.device)
    if not is_spatial(model):
        return v.view(1, -1).clone()
    spread = torch.tensor(stats.spread, dtype=base.dtype, device=base.device)
    return base + (v * spread).view(1, -1, 1, 1)


@torch.inference_mode()
def decode(model: VAEBase, z: torch.Tensor, y: int | torch.Tensor | None = None) -> torch.Tensor:
    """Decode codes into images on the CPU, clamped to [0, 1]."""
    z = z.to(model.device)
    return model.decode(z, model.class_labels(y, z.shape[0])).float().clamp(0, 1).cpu()


@torch.inference_mode()
def encode(model: VAEBase, x: torch.Tensor, y: int | torch.Tensor | None = None) -> torch.Tensor:
    """Posterior means of images (B, C, H, W) in [0, 1]: (B, *latent) on the CPU."""
    if tuple(x.shape[1:]) != tuple(model.config.in_shape):
        raise VAEError(f"The model expects images of shape {list(model.config.in_shape)}, got {list(x.shape[1:])}.")
    x = x.to(model.device, torch.float32)
    return model.encode(x, model.class_labels(y, x.shape[0])).mode().float().cpu()


@torch.inference_mode()
def encode_dataset(model: VAEBase, data: ImageSet, batch_size: int = 500,
                   progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Posterior means of every image: (N, *latent) float32 on the CPU."""
    out, done = [], 0
    for x, y in data.batches(batch_size, model.device, with_labels=bool(model.num_classes)):
        out.append(model.encode(x, y).mode().float().cpu())
        done += len(x)
        if progress:
            progress(done, len(data))
    return torch.cat(out) if out else torch.zeros((0, *model.latent_shape))


@torch.inference_mode()
def reconstruct(model: VAEBase, data: ImageSet, idx) -> torch.Tensor:
    sub = data.subset(idx)
    x, y = next(sub.batches(len(sub), with_labels=bool(model.num_classes)))
    return decode(model, encode(model, x, y), y)


@torch.inference_mode()
def sample_grid(model: VAEBase, n: int, seed: int, temperature: float = 1.0,
                y: int | torch.Tensor | None = None, **prior_options) -> torch.Tensor:
    """n prior samples, reproducible from ``seed`` (a private generator: no global RNG is touched).

    ``prior_options`` go to the model's own ``prior_sample``: a hierarchical VAE's
    ``layer_temperatures``, a VQ-VAE's ``top_k``."""
    if not 1 <= n <= 1024:
        raise VAEError(f"The number of samples must be between 1 and 1024, got {n}.")
    if not 0 < temperature <= 10:
        raise VAEError(f"The temperature must be in (0, 10], got {temperature}.")
    for t in prior_options.get("layer_temperatures") or ():
        if not 0 <= t <= 10:
            raise VAEError(f"A layer's temperature must be in [0, 10] (0: its prior mean), got {t}.")
    gen = torch.Generator(device=model.device).manual_seed(seed)
    return decode(model, model.prior_sample(n, gen, temperature, **prior_options), y)


def traversal_codes(model: VAEBase, base: torch.Tensor, units, stats: UnitStats, lo: float = -3.0,
                    hi: float = 3.0, steps: int = 7) -> torch.Tensor:
    """Codes for a traversal grid: one row per unit in ``units``, ``steps`` values from lo to hi."""
    values = torch.linspace(lo, hi, steps)
    rows = []
    for u in units:
        z = base.repeat(steps, *([1] * (base.dim() - 1)))                      # (steps, *latent)
        if is_spatial(model):
            z[:, u] += (values * stats.spread[u]).view(-1, 1, 1)
        else:
            z[:, u] = values
        rows.append(z)
    return torch.cat(rows) if rows else base[:0]


@torch.inference_mode()
def traversal_grid(model: VAEBase, base: torch.Tensor, units, stats: UnitStats, lo: float = -3.0,
                   hi: float = 3.0, steps: int = 7, y: int | None = None) -> torch.Tensor:
    """Decoded traversal: (len(units) * steps, C, H, W), row-major."""
    z = traversal_codes(model, base.cpu(), units, stats, lo, hi, steps)
    return decode(model, z, y)


PLANE_AXES = ("z0", "z1")     # the latent plane's units, named as everywhere else (from 0)


def manifold_codes(n: int, edge: float = 0.05) -> torch.Tensor:
    """An n x n grid of 2-D codes at evenly spaced quantiles of N(0, 1) (Kingma & Welling, 2014, fig. 4).

    Rows run from high z1 (top) to low, columns from low z0 to high, so the picture reads like
    the usual plot of the latent plane (PLANE_AXES: x is z0, y is z1).
    """
    q = torch.linspace(edge, 1 - edge, n, dtype=torch.float64)
    v = (math.sqrt(2) * torch.erfinv(2 * q - 1)).float()         # Gaussian inverse CDF
    z2, z1 = torch.meshgrid(v.flip(0), v, indexing="ij")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], 1)        # (n*n, 2)


@torch.inference_mode()
def manifold_grid(model: VAEBase, n: int = 15, y: int | None = None) -> torch.Tensor:
    if model.latent_shape != (2,):
        raise VAEError(f"The manifold grid needs a 2-D latent; this model's latent shape is {list(model.latent_shape)}.")
    if not 2 <= n <= 40:
        raise VAEError(f"The manifold grid size must be between 2 and 40, got {n}.")
    return decode(model, manifold_codes(n), y)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 - t) a + t b for every t: a, b (*latent) -> (len(t), *latent)."""
    t = t.view(-1, *([1] * a.dim())).to(a.dtype)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (Shoemake, 1985; White, 2016): keeps the norm typical of Gaussian codes.

    Falls back to lerp when a and b point the same way (the angle is ~0, and sin(omega) ~ 0).
    """
    af, bf = a.flatten().double(), b.flatten().double()
    cos = (af @ bf / (af.norm() * bf.norm()).clamp_min(eps)).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return lerp(a, b, t)
    t = t.double().view(-1, 1)
    so = torch.sin(omega)
    out = (torch.sin((1 - t) * omega) / so) * af + (torch.sin(t * omega) / so) * bf
    return out.to(a.dtype).view(-1, *a.shape)


@torch.inference_mode()
def interpolate(model: VAEBase, z_a: torch.Tensor, z_b: torch.Tensor, steps: int = 10,
                method: Literal["linear", "spherical"] = "linear", y: int | None = None) -> torch.Tensor:
    """Decoded path from z_a to z_b (each (1, *latent) or (*latent)), ``steps`` images including both ends."""
    if not 2 <= steps <= 64:
        raise VAEError(f"Interpolation steps must be between 2 and 64, got {steps}.")
    if method not in ("linear", "spherical"):
        raise VAEError(f"Interpolation must be 'linear' or 'spherical', got {method!r}.")
    a, b = z_a.reshape(model.latent_shape).cpu(), z_b.reshape(model.latent_shape).cpu()
    t = torch.linspace(0, 1, steps)
    z = (lerp if method == "linear" else slerp)(a, b, t)
    return decode(model, z, y)


def arithmetic(z_a: torch.Tensor, z_b: torch.Tensor, z_c: torch.Tensor) -> torch.Tensor:
    """A - B + C: what is to C as A is to B."""
    return z_a - z_b + z_c


@torch.inference_mode()
def attribute_vector(model: VAEBase, data: ImageSet, to_class: int, from_class: int,
                     max_per_class: int = 500) -> torch.Tensor:
    """Mean code of class ``to_class`` minus the mean code of ``from_class`` (1, *latent).

    Added to a code, it moves the image from the one class towards the other (White, 2016).
    """
    if data.labels is None:
        raise VAEError(f"Attribute vectors need class labels, and {data.name or 'the dataset'} has none.")
    means = []
    for c in (to_class, from_class):
        idx = (data.labels == c).nonzero().flatten()[:max_per_class]
        if len(idx) == 0:
            raise VAEError(f"The dataset has no images of class {c}.")
        means.append(encode_dataset(model, data.subset(idx)).mean(0, keepdim=True))
    return means[0] - means[1]


__all__ = ["PLANE_AXES", "UnitStats", "arithmetic", "attribute_vector", "decode", "encode", "encode_dataset", "interpolate",
           "is_spatial", "lerp", "manifold_codes", "manifold_grid", "num_units", "reconstruct",
           "sample_grid", "set_units", "slerp", "traversal_codes", "traversal_grid", "unit_stats"]
