"""Top singular vectors, found cheaply: of a matrix of codes, and of a decoder's Jacobian at one code.

``principal_axes``: an exact SVD of the centred codes when they are small, else a seeded randomized SVD (a range
finder with power iterations, Halko et al. 2011). ``top_right_singular``: the right singular vectors of
J = d decode(z) / dz (P pixels x D) without forming J where it is large: the whole Jacobian by forward-mode
passes when D is small, else subspace iteration on J^T J with batched ``jvp``/``vjp`` products (``Products``);
``local_plan`` says which, and refuses a search that would not fit its budget. Signs are canonical (the largest
entry positive). ``vae_core.latent.directions`` turns these into directions with their stabilities.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import VAEError
from ..models import VAEBase

LOCAL_MAX_VALUES = 2 ** 22   # default budget of a local search: decoder passes x values per decoded image
DENSE_MAX_DIMS = 256         # up to this latent size the whole Jacobian is cheaper than iterating
ITERATIONS = 12              # subspace-iteration rounds, at most
OVERSAMPLE = 2               # extra vectors carried through the iteration, for faster convergence
CHUNK = 64                   # tangents per vmapped batch: bounds activation memory
EXACT_SVD_MAX = 128          # principal axes: an exact SVD up to this many rows or columns, else randomized
POWER_ITERATIONS = 4         # randomized SVD: power iterations (sharpen the top axes of a flat spectrum)


def canonical_sign(v: torch.Tensor) -> torch.Tensor:
    """``v`` or ``-v``, whichever has its largest-magnitude entry positive (rows of a matrix, each)."""
    rows = v.view(-1, v.shape[-1])
    pick = rows.gather(1, rows.abs().argmax(1, keepdim=True))
    return (rows * torch.where(pick < 0, -1.0, 1.0).to(rows.dtype)).view_as(v)


def principal_axes(x: torch.Tensor, k: int, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` principal axes of rows ``x`` (N, D) as rows (k, D), and the variance along each.

    Small matrices get an exact SVD; larger ones a seeded randomized SVD (a range finder with
    power iterations, Halko et al. 2011): the top axes to many digits at a fraction of the cost."""
    xc = x - x.mean(0)
    q = min(k + 8, *xc.shape)
    if min(xc.shape) <= EXACT_SVD_MAX:
        _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    else:
        gen = gen if gen is not None else torch.Generator().manual_seed(0)
        y = xc @ torch.randn(xc.shape[1], q, generator=gen, dtype=xc.dtype)
        for _ in range(POWER_ITERATIONS):
            y = xc @ (xc.T @ torch.linalg.qr(y).Q)
        _, s, vh = torch.linalg.svd(torch.linalg.qr(y).Q.T @ xc, full_matrices=False)
    return canonical_sign(vh[:k]), s[:k] ** 2 / max(len(x) - 1, 1)


def _decoder(model: VAEBase, y) -> tuple[Callable, Callable]:
    """(f, batch): f maps one flat code (D,) to its flat decoded image (P,); batch does it for (m, D)."""
    shape = model.latent_shape

    def f(zf: torch.Tensor) -> torch.Tensor:
        return model.decode(zf.view(1, *shape), model.class_labels(y, 1)).flatten()

    def batch(zs: torch.Tensor) -> torch.Tensor:
        return model.decode(zs.view(len(zs), *shape), model.class_labels(y, len(zs))).flatten(1)

    return f, batch


class Products:
    """J V and J^T U at one code, counting decoder passes. J V is forward mode (torch.func.jvp,
    vmapped over the columns); where the decoder has an operation without a forward-mode
    derivative (e.g. the CPU flash attention of a diffusers VAE), central finite differences."""

    def __init__(self, model: VAEBase, z0: torch.Tensor, y):
        self.f, self.batch = _decoder(model, y)
        self.z0 = z0
        self.passes = 0
        self.forward_mode = True
        self._pull = None

    def jv(self, v: torch.Tensor) -> torch.Tensor:          # (m, D) -> (m, P)
        self.passes += len(v)
        if self.forward_mode:
            try:
                return torch.func.vmap(lambda t: torch.func.jvp(self.f, (self.z0,), (t,))[1], chunk_size=CHUNK)(v)
            except (NotImplementedError, RuntimeError):
                self.forward_mode = False
        eps = 1e-3 * (1.0 + float(self.z0.abs().max()))
        out = [(self.batch(self.z0 + eps * c) - self.batch(self.z0 - eps * c)) / (2 * eps) for c in v.split(CHUNK)]
        return torch.cat(out)

    def jtu(self, u: torch.Tensor) -> torch.Tensor:         # (m, P) -> (m, D)
        self.passes += len(u)
        if self._pull is None:
            _, self._pull = torch.func.vjp(self.f, self.z0)
        return torch.cat([torch.func.vmap(self._pull)(c)[0] for c in u.split(CHUNK)])


def local_plan(model: VAEBase, k: int, nudges: int = 0, max_values: int = LOCAL_MAX_VALUES) -> tuple[str, int, int]:
    """How a local search would run within ``max_values`` (decoder passes x values per image):
    ("dense", passes, 0) or ("iterate", passes, rounds). Raises a VAEError when even a short
    iteration does not fit, saying what it would take."""
    dims, per_image = math.prod(model.latent_shape), math.prod(model.config.in_shape)
    affordable = max_values // max(per_image, 1) // (1 + nudges)
    if dims <= DENSE_MAX_DIMS and dims <= affordable:
        return "dense", dims * (1 + nudges), 0
    m = min(dims, k + OVERSAMPLE)
    rounds = min(ITERATIONS, (affordable - m) // (2 * m))
    if rounds < 3:
        need = (3 * 2 * m + m) * (1 + nudges)
        raise VAEError(f"Finding {k} local direction{'s' * (k != 1)} of this model takes at least {need:,} decoder "
                       f"passes of {per_image:,} values each ({need * per_image:,} values); the budget is "
                       f"{max_values:,}. Ask for fewer directions, or use a model with smaller images.")
    return "iterate", (rounds * 2 * m + m) * (1 + nudges), rounds


def top_right_singular(p: Products, dims: int, k: int, mode: str, rounds: int,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, D) top right singular vectors of J (rows, canonical signs) and their singular values."""
    dev, dtype = p.z0.device, p.z0.dtype
    if mode == "dense":
        jac = p.jv(torch.eye(dims, device=dev, dtype=dtype)).T.double()            # (P, D)
        _, s, vh = torch.linalg.svd(jac, full_matrices=False)
        return canonical_sign(vh[:k]).detach().float().cpu(), s[:k].detach().float().cpu()
    m = min(dims, k + OVERSAMPLE)
    v = torch.linalg.qr(torch.randn(dims, m, generator=gen, dtype=torch.float64)).Q.to(dev, dtype)   # (D, m)
    for _ in range(rounds):
        w = p.jtu(p.jv(v.T)).T.double()                                             # J^T J V: (D, m)
        v = torch.linalg.qr(w).Q.to(dtype)
    jv = p.jv(v.T).T.double()                                                       # (P, m): Rayleigh-Ritz
    _, s, vh = torch.linalg.svd(jv, full_matrices=False)
    out = (v.double() @ vh.T)[:, :k].T                                              # (k, D)
    return canonical_sign(out).detach().float().cpu(), s[:k].detach().float().cpu()


__all__ = ["LOCAL_MAX_VALUES", "Products", "canonical_sign", "local_plan", "principal_axes", "top_right_singular"]
