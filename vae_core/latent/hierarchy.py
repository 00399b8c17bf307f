"""The hierarchical VAE's inspector: what each stochastic layer controls.

A hierarchical model's latent is the concatenation of its layers' standardised values, top
(most global) first (models/hvae.py), so a layer is a slice of the code. Keeping the slices above
layer i and drawing layer i and every layer below afresh shows what layer i and below decide;
a traversal of one layer's units, with the layers below holding their standardised values, shows
what that layer decides. Everything here is seeded and runs under inference mode.
"""
from __future__ import annotations

import torch

from ..errors import VAEError
from ..evaluation.metrics import AU_THRESHOLD
from ..models import VAEBase
from ..models.hvae import HierarchicalVAE
from .explore import UnitStats, decode

MAX_GRID = 400             # images in one resample grid


def is_hierarchical(model: VAEBase) -> bool:
    return model.as_hierarchy() is not None


def _require(model: VAEBase) -> HierarchicalVAE:
    hierarchy = model.as_hierarchy()
    if hierarchy is None:
        raise VAEError("This needs a hierarchical VAE (model type hvae or hvae-conv); pick one in the sidebar.")
    return hierarchy


def layer_names(model: VAEBase) -> list[str]:
    """'layer 1 (top, 8 units)', ..., 'layer L (bottom, 16 units)'."""
    m = _require(model)
    L = m.num_layers
    where = lambda i: " (top, " if i == 0 and L > 1 else (" (bottom, " if i == L - 1 and L > 1 else " (")
    return [f"layer {i + 1}{where(i)}{d} units)" for i, d in enumerate(m.layer_sizes)]


def _check_layer(m: HierarchicalVAE, layer: int) -> None:
    if not 0 <= layer < m.num_layers:
        raise VAEError(f"This model has layers 1 to {m.num_layers}; got layer {layer + 1}.")


@torch.inference_mode()
def resample_layer(model: VAEBase, layer: int, rows: int = 4, cols: int = 8, seed: int = 0,
                   temperature: float = 1.0) -> torch.Tensor:
    """A (rows * cols) grid: each row keeps one draw of the layers above ``layer`` (0 = top); its first
    image is that draw whole, and every other image draws ``layer`` and all layers below afresh.

    What changes along a row is what ``layer`` and the layers below it control."""
    m = _require(model)
    _check_layer(m, layer)
    if not (1 <= rows and 2 <= cols and rows * cols <= MAX_GRID):
        raise VAEError(f"A resample grid needs at least 1 row and 2 columns, at most {MAX_GRID} images; "
                       f"got {rows}x{cols}.")
    if not 0 < temperature <= 10:
        raise VAEError(f"The temperature must be in (0, 10], got {temperature}.")
    gen = torch.Generator(device=m.device).manual_seed(seed)
    D = m.config.latent_dim
    start = m.layer_slices()[layer].start
    base = m.prior_sample(rows, gen, temperature)                               # (rows, D)
    fresh = m.prior_sample(rows * cols, gen, temperature).view(rows, cols, D)
    e = base[:, None].expand(rows, cols, D).clone()
    e[:, 1:, start:] = fresh[:, 1:, start:]
    return decode(m, e.view(rows * cols, D))


def layer_units(model: VAEBase, stats: UnitStats, layer: int) -> list[int]:
    """The units of ``layer``, most informative first (the order of ``stats``)."""
    m = _require(model)
    _check_layer(m, layer)
    s = m.layer_slices()[layer]
    return [u for u in stats.order if s.start <= u < s.stop]


def layer_summary(model: VAEBase, result: dict) -> list[dict]:
    """Per layer, from an evaluation (``metrics.evaluate_model`` or ``analyze.latent_units``): its name,
    size, KL (nats, the sum over its units), KL per unit, and active units."""
    m = _require(model)
    if "kl_per_dim" not in result or "latent_variance" not in result:
        raise VAEError("The evaluation has no KL per unit; evaluate the model on a dataset first.")
    kl = torch.tensor(result["kl_per_dim"])
    var = torch.tensor(result["latent_variance"])
    out = []
    for name, s in zip(layer_names(m), m.layer_slices()):
        out.append({"name": name, "units": s.stop - s.start, "kl": float(kl[s].sum()), "kl_per_unit": kl[s].tolist(),
                    "active_units": int((var[s] > AU_THRESHOLD).sum()), "first_unit": s.start})
    return out


__all__ = ["MAX_GRID", "is_hierarchical", "layer_names", "layer_summary", "layer_units", "resample_layer"]
