"""From a spot on a 2-D latent map back to the latent code it stands for.

A map (vae_core.latent.projections) sends codes (N, D) to points (N, 2); an inverse sends any 2-D point,
including empty space between clusters, to a code the decoder can draw:

- ``PCAInverse``: exact up to the dropped components. A point (a, b) becomes
  ``mean + a * axis1 + b * axis2``: every component beyond the two kept ones is set to the
  codes' mean (zero in the centred coordinates). A code mapped and mapped back is its
  projection onto the plane of the two kept axes through the mean.
- ``NeighbourInverse``: the inverse-distance-weighted mean (a barycentre) of the codes of the
  ``k`` map points nearest the spot. It needs no fitting, so it is ready as soon as the map is.
  It is what the app uses for t-SNE and UMAP: on held-out points it was the closest for UMAP, and
  within 0.03 to 0.14 of the MLP for t-SNE, which took minutes to fit on a loaded 2-core machine.
- ``NetInverse``: a small MLP trained on the map's (point, code) pairs.
- ``IdentityInverse``: a 2-D latent drawn as itself.

Which is closest to the true codes on held-out points, for t-SNE and UMAP, is measured by
``python -m bench.map_inverse`` (README: "Decode anywhere on the map"); ``for_map`` returns
the inverse the app uses. ``held_out_error`` is the measurement: the mean squared error of the
predicted codes at held-out points, as a share of the codes' total variance (so predicting
the mean code everywhere scores 1.0).
"""
from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn

from ..errors import VAEError
from .projections import pca_basis

NEIGHBOURS = 10              # k of the barycentre, weighted 1/distance (bench/map_inverse.py: the closest)
GRID_LIMIT = 200             # nodes a side of a grid of spots (40,000 inverse codes at most)


class MapInverse(Protocol):
    def __call__(self, points) -> torch.Tensor:
        """Codes (M, D) float32 for 2-D points (M, 2)."""


def _points(points) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(points, dtype=np.float32)).reshape(-1, 2)
    if not torch.isfinite(p).all():
        raise VAEError("A point on the map is NaN or infinite; click inside the map.")
    return p


def _codes(codes) -> torch.Tensor:
    x = codes.detach().float().cpu() if torch.is_tensor(codes) else torch.as_tensor(np.asarray(codes, np.float32))
    return x.reshape(len(x), -1)


class IdentityInverse:
    """A 2-D latent shown as itself: the spot is the code."""

    def __call__(self, points) -> torch.Tensor:
        return _points(points)


class PCAInverse:
    """``mean + point @ axes.T``: the two kept components from the point, the dropped ones at the mean."""

    def __init__(self, codes):
        mean, axes = pca_basis(codes, max_points=len(codes))      # the codes exist: no new budget to check
        self.mean, self.axes = mean.float(), axes.float()          # (D,), (D, 2)

    def __call__(self, points) -> torch.Tensor:
        return self.mean + _points(points) @ self.axes.T


class NeighbourInverse:
    """The codes of the ``k`` nearest map points, weighted by 1 / distance^power (a spot on a
    point is that point's code)."""

    def __init__(self, points, codes, k: int = NEIGHBOURS, power: float = 1.0):
        self.points, self.codes = _points(points), _codes(codes)
        if len(self.points) != len(self.codes):
            raise VAEError(f"{len(self.points)} map points but {len(self.codes)} codes; they must pair up.")
        if len(self.points) == 0:
            raise VAEError("A map with no points has no inverse.")
        self.k, self.power = min(k, len(self.points)), power
        self.scale = float(self.points.std()) or 1.0               # distances in units of the map's spread

    def __call__(self, points, chunk: int = 4096) -> torch.Tensor:
        q = _points(points)
        out = []
        for s in range(0, len(q), chunk):
            d = torch.cdist(q[s:s + chunk], self.points) / self.scale       # (m, N)
            dist, idx = d.topk(self.k, dim=1, largest=False)
            w = 1.0 / dist.clamp_min(1e-6).pow(self.power)                    # on a point: it dominates
            w = w / w.sum(1, keepdim=True)
            out.append(torch.einsum("mk,mkd->md", w, self.codes[idx]))
        return torch.cat(out) if out else torch.zeros((0, self.codes.shape[1]))


class NetInverse(nn.Module):
    """A small MLP from a map's points to its codes, inputs and outputs standardised."""

    def __init__(self, points, codes, hidden: int = 256, steps: int = 1500, batch: int = 512,
                 lr: float = 3e-3, seed: int = 0):
        super().__init__()
        p, x = _points(points), _codes(codes)
        self.register_buffer("p_mean", p.mean(0))
        self.register_buffer("p_std", p.std(0).clamp_min(1e-6))
        self.register_buffer("x_mean", x.mean(0))
        self.register_buffer("x_std", x.std(0).clamp_min(1e-6))
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, x.shape[1]))
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for m in self.net:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
        pn, xn = (p - self.p_mean) / self.p_std, (x - self.x_mean) / self.x_std
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        with torch.enable_grad():
            for _ in range(steps):
                i = torch.randint(len(p), (min(batch, len(p)),), generator=gen)
                loss = (self.net(pn[i]) - xn[i]).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        self.eval().requires_grad_(False)

    @torch.inference_mode()
    def forward(self, points) -> torch.Tensor:
        return self.net((_points(points) - self.p_mean) / self.p_std) * self.x_std + self.x_mean


def for_map(method: str, points, codes) -> MapInverse:
    """The inverse the app uses for a map drawn with ``method`` ("codes", "pca", "tsne", "umap")."""
    if method == "codes":
        return IdentityInverse()
    if method == "pca":
        return PCAInverse(codes)
    if method in ("tsne", "umap"):
        return NeighbourInverse(points, codes)
    raise VAEError(f"No inverse for a map drawn with {method!r}.")


def describe(method: str) -> str:
    """One line for the page: what a spot decodes to, for a map drawn with ``method``."""
    if method == "codes":
        return "The spot is the code itself (a 2-D latent)."
    if method == "pca":
        return ("PCA's inverse: the spot gives the two kept components; the dropped ones are set to the "
                "mapped codes' mean.")
    return (f"The mean of the codes of the {NEIGHBOURS} nearest map points, weighted by 1/distance "
            "(of the inverses measured, the closest to the true codes on held-out points that is ready at once: "
            "see the README).")


# ---------------------------------------------------------------------------------------------
# Spots on a grid, the prior's density there, and how good an inverse is


def grid(points, n: int, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An n x n grid over the map's range (plus a margin): the x and y ticks, and the nodes
    (n * n, 2), row by row from the bottom."""
    if not 2 <= n <= GRID_LIMIT:
        raise VAEError(f"A grid of spots has between 2 and {GRID_LIMIT} nodes a side, got {n}.")
    p = _points(points).numpy()
    if len(p) == 0:
        raise VAEError("A map with no points has no range to lay a grid over.")
    lo, hi = p.min(0), p.max(0)
    pad = np.maximum(hi - lo, 1e-6) * margin
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], n, dtype=np.float32)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], n, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], 1)


def prior_log_density(codes) -> torch.Tensor:
    """log N(z; 0, I) of each code (N,): the standard normal prior every continuous model here has."""
    z = _codes(codes).double()
    return (-0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)).float()


def held_out_error(truth, predicted) -> float:
    """Mean squared error of predicted codes, as a share of the true codes' total variance."""
    t, p = _codes(truth).double(), _codes(predicted).double()
    var = float(t.var(0, unbiased=False).sum())
    return float((p - t).pow(2).sum(1).mean()) / var if var > 0 else float("nan")


__all__ = ["GRID_LIMIT", "IdentityInverse", "MapInverse", "NEIGHBOURS", "NeighbourInverse", "NetInverse",
           "PCAInverse", "describe", "for_map", "grid", "held_out_error", "prior_log_density"]
