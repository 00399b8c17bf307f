"""Directions in latent space worth moving along, and how far to trust each.

Three kinds, each a unit vector over the flattened latent (D = prod(latent_shape)):

- **principal**: the principal axes of the dataset's codes (posterior means), largest variance first;
- **local**: where the decoded image changes most at one code: the top right singular vectors of
  the decoder's Jacobian J = d decode(z) / dz (P pixels x D), found with ``torch.func``: the
  whole Jacobian by forward-mode passes when D is small, else subspace iteration on J^T J with
  batched ``jvp``/``vjp`` products (the SeFa / GANSpace idea, taken to the decoder of a VAE);
- **attribute**: class A's mean code minus class B's (White, 2016), or a ground-truth factor's
  regression direction (the codes' least-squares slope on the factors: the way the mean code moves
  as the factor grows).

Each comes with a stability: the mean |cosine| between the direction and re-estimates of it,
from bootstrap resamples of the codes (principal, attribute) or from small nudges of the code
(local). 1 means the data pin the direction down; ``chance_cosine(D)`` is what unrelated
directions score. ``spread`` is the data's standard deviation along the direction, so a slider
moves in data standard deviations.

Signs are canonical (principal and local: the largest entry positive; attribute: towards A, or
towards larger factor values), and every random draw is seeded, so the same model and data give
the same directions on any machine that computes the same floats.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Literal, Sequence

import torch

from ..data import ImageSet
from ..errors import VAEError
from ..models import VAEBase
from .spectra import LOCAL_MAX_VALUES, Products, canonical_sign, local_plan, principal_axes, top_right_singular

Kind = Literal["principal", "local", "attribute"]
N_BOOT = 50                  # bootstrap resamples for a stability
RIDGE = 1e-3                 # ridge strength of a factor regression, relative to the codes' mean variance
CODES = 1000                 # images encoded to find the dataset's directions
BOOT_MAX_VALUES = 5 * 10**7  # bootstrap budget: resamples x codes x latent size (fewer resamples for big latents)


@dataclasses.dataclass(frozen=True)
class Direction:
    kind: Kind
    name: str                       # "PC1", "local 2", "7 - 1", "scale"
    vector: torch.Tensor            # (D,) float32, unit norm, on the CPU
    spread: float = 1.0             # std of the data's codes along it (1.0 where there are no codes)
    stability: float | None = None  # mean |cos| with its re-estimates; None when not estimated
    detail: str = ""                # one short fact: "31% of the variance", "gain 4.2", "R2 0.83"

    def step(self, latent_shape: Sequence[int]) -> torch.Tensor:
        """One slider unit along it: ``spread`` times the unit vector, shaped (1, *latent)."""
        return (self.vector * self.spread).view(1, *latent_shape)


@dataclasses.dataclass(frozen=True)
class LocalResult:
    directions: tuple[Direction, ...]
    method: str                     # how the Jacobian was handled, for a caption
    passes: int                     # decoder passes spent (each: one image, with derivatives)


def chance_cosine(dims: int) -> float:
    """E|cos| between two independent random directions in ``dims`` dimensions: sqrt(2 / (pi D)) for large D."""
    d = max(int(dims), 1)
    if d == 1:
        return 1.0
    return math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)


def _flat(codes: torch.Tensor) -> torch.Tensor:
    if codes.dim() < 2 or len(codes) < 3:
        raise VAEError(f"Directions need the codes of at least 3 images, got {tuple(codes.shape)}.")
    return codes.flatten(1).double()


def _spread(x: torch.Tensor, v: torch.Tensor) -> float:
    s = float((x @ v.detach().double()).std())
    return s if s > 1e-12 else 1.0


def _stability(estimates: list[torch.Tensor], v: torch.Tensor) -> float | None:
    if not estimates:
        return None
    e = torch.stack(estimates).double()
    e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((e @ v.double()).abs().mean())


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    if not n > 1e-12:
        raise VAEError("The direction is zero: the two groups of codes have the same mean.")
    return v / n


# ---------------------------------------------------------------------------------------------
# Principal directions


def principal_directions(codes: torch.Tensor, k: int = 5, n_boot: int = N_BOOT, seed: int = 0) -> list[Direction]:
    """The top ``k`` principal directions of ``codes`` (N, *latent), each with its bootstrap stability
    (the mean |cos| between it and the same-rank axis of ``n_boot`` resamples of the rows).

    Two axes of nearly equal variance swap places between resamples, so their stability is low:
    correctly, since the data do not tell them apart."""
    x = _flat(codes)
    k = max(1, min(int(k), x.shape[1], len(x) - 1))
    gen = torch.Generator().manual_seed(seed)
    axes, var = principal_axes(x, k, gen)
    total = float((x - x.mean(0)).pow(2).sum() / max(len(x) - 1, 1))
    boots: list[list[torch.Tensor]] = [[] for _ in range(k)]
    for _ in range(n_boot):
        rows = torch.randint(len(x), (len(x),), generator=gen)
        b, _ = principal_axes(x[rows], k, gen)
        for i in range(k):
            boots[i].append(b[i])
    return [Direction("principal", f"PC{i + 1}", axes[i].float(), float(var[i].sqrt()) or 1.0,
                      _stability(boots[i], axes[i]),
                      f"{float(var[i]) / total:.0%} of the variance" if total > 0 else "")
            for i in range(k)]


# ---------------------------------------------------------------------------------------------
# Attribute directions


def class_contrast(codes: torch.Tensor, labels: torch.Tensor, a: int, b: int, names: Sequence[str] = (),
                   n_boot: int = N_BOOT, seed: int = 0) -> Direction:
    """Class ``a``'s mean code minus class ``b``'s, normalised; its stability from resampling each class."""
    x, labels = _flat(codes), torch.as_tensor(labels).flatten()
    name = lambda c: names[c] if 0 <= c < len(names) else str(c)      # noqa: E731
    if a == b:
        raise VAEError(f"Pick two different classes for a class contrast (both are {name(a)}).")
    groups = []
    for c in (a, b):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < 2:
            raise VAEError(f"Class {name(c)} has {len(idx)} image{'s' * (len(idx) != 1)} among the encoded ones; "
                           "a class contrast needs at least 2 of each.")
        groups.append(x[idx])
    v = _unit(groups[0].mean(0) - groups[1].mean(0))
    gen = torch.Generator().manual_seed(seed)
    boots = []
    for _ in range(n_boot):
        m = [g[torch.randint(len(g), (len(g),), generator=gen)].mean(0) for g in groups]
        boots.append(m[0] - m[1])
    spread = _spread(x, v)
    gap = float((groups[0].mean(0) - groups[1].mean(0)).norm()) / spread
    return Direction("attribute", f"{name(a)} - {name(b)}", v.float(), spread, _stability(boots, v),
                     f"class means {gap:.1f} sd apart")


def regression_direction(x: torch.Tensor, f: torch.Tensor, ridge: float = RIDGE) -> tuple[torch.Tensor, float]:
    """Ridge least squares of ``f`` (N,) on the rows of ``x`` (N, D), both centred: (w, R^2)."""
    xc, fc = x - x.mean(0), (f - f.mean()).double()
    gram = xc.T @ xc
    lam = ridge * float(gram.diagonal().mean()) + 1e-12
    w = torch.linalg.solve(gram + lam * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ fc)
    ss = float(fc.pow(2).sum())
    r2 = 1 - float((fc - xc @ w).pow(2).sum()) / ss if ss > 0 else 0.0
    return w, r2


def factor_slopes(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The codes' least-squares slope on each factor, all factors at once: rows (F, D) of B in
    x - mean = (f - mean) B. Row j is how the mean code moves per unit of factor j, the others held."""
    fc = (f - f.mean(0)).double()
    return torch.linalg.lstsq(fc, (x - x.mean(0)).double()).solution


def factor_directions(codes: torch.Tensor, factors: torch.Tensor, names: Sequence[str], n_boot: int = N_BOOT,
                      seed: int = 0) -> list[Direction]:
    """One direction per ground-truth factor: the way the mean code moves as the factor grows (the
    codes regressed on all the factors together; the analogue, for a factor, of a class contrast's
    difference of means), with a bootstrap stability and, as its detail, how well the codes predict
    the factor linearly (the R^2 of a ridge fit of the factor on the codes). A factor constant over
    these images has no direction and is left out.

    (Not the readout weights w of factor ~ codes: those point wherever the codes' noise is smallest,
    not where the factor's images lie; Haufe et al., 2014, on patterns against filters.)"""
    x, factors = _flat(codes), torch.as_tensor(factors).double()
    if factors.dim() != 2 or len(factors) != len(x):
        raise VAEError(f"Expected one row of factor values per code, got {tuple(factors.shape)} for {len(x)} codes.")
    keep = [j for j in range(factors.shape[1]) if float(factors[:, j].std()) > 0]
    if not keep:
        return []
    f = factors[:, keep]
    slopes = factor_slopes(x, f)
    gen = torch.Generator().manual_seed(seed)
    boots = []
    for _ in range(n_boot):
        rows = torch.randint(len(x), (len(x),), generator=gen)
        boots.append(factor_slopes(x[rows], f[rows]))
    out = []
    for i, j in enumerate(keep):
        if not slopes[i].norm() > 1e-12:
            continue
        v = slopes[i] / slopes[i].norm()
        r2 = regression_direction(x, f[:, i])[1]
        name = names[j] if j < len(names) else f"factor {j}"
        out.append(Direction("attribute", name, v.float(), _spread(x, v), _stability([b[i] for b in boots], v),
                             f"R2 {r2:.2f}"))
    return out


# ---------------------------------------------------------------------------------------------
# Local directions: the decoder's Jacobian


def local_directions(model: VAEBase, z: torch.Tensor, k: int = 3, y: int | None = None, *,
                     codes: torch.Tensor | None = None, nudges: int = 0, nudge: float = 0.1, seed: int = 0,
                     max_values: int = LOCAL_MAX_VALUES) -> LocalResult:
    """The ``k`` directions at code ``z`` (1, *latent) along which the decoded image changes most.

    Each direction's detail is its gain, ||J v||: how far the image moves (L2 over its pixels)
    per unit step of the code. With ``nudges`` > 0, its stability is the mean |cos| between it and
    the same-rank direction at ``nudges`` codes nudged by ``nudge`` per latent unit (scaled by the
    codes' spread where ``codes`` are given). ``codes`` also give each direction its data spread.
    The cost is checked against ``max_values`` before any pass (``local_plan``)."""
    dims = math.prod(model.latent_shape)
    k = max(1, min(int(k), dims))
    mode, _, rounds = local_plan(model, k, nudges, max_values)
    gen = torch.Generator().manual_seed(seed)
    scale = codes.flatten(1).float().std(0).clamp_min(1e-3) if codes is not None and len(codes) > 1 else None
    total_passes, forward_mode = 0, True
    with torch.inference_mode(False), torch.enable_grad():
        # A fresh tensor outside inference mode: torch.func cannot trace through an inference tensor.
        z0 = z.detach().reshape(-1).clone().to(model.device, torch.float32)
        tops, gains = None, None
        boots: list[list[torch.Tensor]] = [[] for _ in range(k)]
        for j in range(1 + nudges):
            zj = z0
            if j:
                noise = torch.randn(dims, generator=gen) * nudge * (scale if scale is not None else 1.0)
                zj = z0 + noise.to(z0.device)
            p = Products(model, zj, y)
            vecs, s = top_right_singular(p, dims, k, mode, rounds, gen)
            total_passes += p.passes
            forward_mode &= p.forward_mode
            if j == 0:
                tops, gains = vecs, s
            else:
                for i in range(k):
                    boots[i].append(vecs[i])
    x = codes.flatten(1).double() if codes is not None and len(codes) > 1 else None
    dirs = tuple(Direction("local", f"local {i + 1}", tops[i], _spread(x, tops[i]) if x is not None else 1.0,
                           _stability(boots[i], tops[i]), f"gain {float(gains[i]):.3g}") for i in range(k))
    how = (f"the whole Jacobian ({dims} {'forward-mode' if forward_mode else 'finite-difference'} passes)"
           if mode == "dense" else
           f"subspace iteration on J^T J ({rounds} rounds; J v by "
           f"{'forward mode' if forward_mode else 'finite differences'}, J^T u by reverse mode)")
    return LocalResult(dirs, how, total_passes)


# ---------------------------------------------------------------------------------------------
# Directions of a dataset's codes, and moving along them


def boot_count(n: int, dims: int, n_boot: int = N_BOOT) -> int:
    """How many bootstrap resamples of ``n`` codes of ``dims`` values fit the budget (at least 5)."""
    return max(5, min(n_boot, BOOT_MAX_VALUES // max(n * dims, 1)))


def dataset_codes(model: VAEBase, data: ImageSet, n: int = CODES, seed: int = 0) -> tuple[torch.Tensor, ImageSet]:
    """The posterior means of a fixed random subset of at most ``n`` images, and that subset."""
    from .explore import encode_dataset

    sub, _ = data.seeded_subset(n, seed)
    return encode_dataset(model, sub), sub


def dataset_directions(codes: torch.Tensor, data: ImageSet, kind: Literal["principal", "factors", "classes"],
                       k: int = 4, a: int = 0, b: int = 1, seed: int = 0) -> list[Direction]:
    """Directions of ``codes`` (encoded from ``data``, row for row): the top ``k`` principal ones, one
    per ground-truth factor, or class ``a`` minus class ``b``; each with its bootstrap stability."""
    n_boot = boot_count(len(codes), codes[0].numel())
    if kind == "principal":
        return principal_directions(codes, k, n_boot=n_boot, seed=seed)
    if kind == "factors":
        if data.factors is None:
            raise VAEError(f"{data.name or 'This dataset'} has no ground-truth factors; pick dSprites for "
                           "factor directions.")
        return factor_directions(codes, data.factors, data.factor_names, n_boot=n_boot, seed=seed)
    if kind == "classes":
        if data.labels is None:
            raise VAEError(f"{data.name or 'This dataset'} has no class labels; class directions need them.")
        return [class_contrast(codes, data.labels, a, b, data.class_names, n_boot=n_boot, seed=seed)]
    raise VAEError(f"Unknown kind of direction {kind!r}: use principal, factors or classes.")


def move(z: torch.Tensor, found: Sequence[Direction], amounts: Sequence[float]) -> torch.Tensor:
    """``z`` (1, *latent) moved ``amounts[i]`` spreads along each ``found[i]``."""
    if len(found) != len(amounts):
        raise VAEError(f"Got {len(amounts)} amounts for {len(found)} directions.")
    out = z.clone()
    for d, t in zip(found, amounts):
        out = out + float(t) * d.step(z.shape[1:]).to(z.device, z.dtype)
    return out


def direction_codes(z: torch.Tensor, found: Sequence[Direction], lo: float = -3.0, hi: float = 3.0,
                    steps: int = 7) -> torch.Tensor:
    """Codes along each direction from ``z``: (len(found) * steps, *latent), one row of ``steps`` per
    direction, from ``lo`` to ``hi`` spreads."""
    ts = torch.linspace(lo, hi, steps, dtype=z.dtype)
    return torch.cat([z + ts.view(-1, *[1] * (z.dim() - 1)) * d.step(z.shape[1:]).to(z.dtype) for d in found])


# ---------------------------------------------------------------------------------------------
# How directions line up with known factors


def best_alignment(direction: Direction, references: Sequence[Direction]) -> tuple[str, float]:
    """The reference (e.g. a factor's regression direction) closest to ``direction``, and |cos| with it."""
    if not references:
        return "", float("nan")
    cos = [abs(float(direction.vector.double() @ r.vector.double())) for r in references]
    i = max(range(len(cos)), key=cos.__getitem__)
    return references[i].name, cos[i]


def factor_alignment(model: VAEBase, codes: torch.Tensor, factors: torch.Tensor, factor_names: Sequence[str],
                     labels: torch.Tensor | None = None, class_names: Sequence[str] = (), *, k: int = 3,
                     local_codes: int = 16, n_boot: int = N_BOOT, seed: int = 0,
                     max_values: int = LOCAL_MAX_VALUES,
                     progress: Callable[[float, str], None] | None = None) -> dict:
    """How well each kind of direction lines up with the ground-truth factors: every direction's
    |cos| with the closest factor's regression direction (the references, fitted on the same codes).

    Rows: the top ``k`` principal directions; local direction i, averaged over the codes of
    ``local_codes`` images (the mean of each code's best |cos|, and the factor most often best);
    each class contrast against the first class (where ``labels`` are given). Also returned:
    the references themselves with their R^2 and stability, and the chance level of |cos|."""
    refs = factor_directions(codes, factors, factor_names, n_boot=n_boot, seed=seed)
    tick = progress or (lambda frac, what: None)
    rows = []

    def row(d: Direction, best: str, cos: float, note: str = "") -> dict:
        return {"kind": d.kind, "name": d.name, "best_factor": best, "cosine": cos, "stability": d.stability,
                "detail": note or d.detail}

    tick(0.1, "principal directions")
    for d in principal_directions(codes, k, n_boot=n_boot, seed=seed):
        rows.append(row(d, *best_alignment(d, refs)))
    if labels is not None:
        tick(0.2, "class contrasts")
        classes = sorted(int(c) for c in torch.unique(torch.as_tensor(labels)))
        for c in classes[1:]:
            d = class_contrast(codes, labels, c, classes[0], class_names, n_boot=n_boot, seed=seed)
            rows.append(row(d, *best_alignment(d, refs)))
    picks = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[:local_codes]
    per_rank: list[list[tuple[str, float]]] = [[] for _ in range(k)]
    found = None
    for n, i in enumerate(picks.tolist()):
        tick(0.3 + 0.7 * n / max(len(picks), 1), f"local directions at code {n + 1} of {len(picks)}")
        y = int(labels[i]) if labels is not None and model.num_classes else None
        found = local_directions(model, codes[i:i + 1], k, y, codes=codes, seed=seed + n, max_values=max_values)
        for r, d in enumerate(found.directions):
            per_rank[r].append(best_alignment(d, refs))
    for r, pairs in enumerate(per_rank):
        if not pairs:
            continue
        names = [p[0] for p in pairs]
        best = max(set(names), key=lambda s: (names.count(s), s))
        mean = sum(p[1] for p in pairs) / len(pairs)
        rows.append({"kind": "local", "name": f"local {r + 1}", "best_factor": best, "cosine": mean,
                     "stability": None, "detail": f"mean over {len(pairs)} codes; {best} best at "
                                                  f"{names.count(best)} of them"})
    return {"rows": rows, "references": [{"name": d.name, "stability": d.stability, "detail": d.detail}
                                         for d in refs],
            "chance": chance_cosine(codes[0].numel()), "images": len(codes), "local_codes": len(picks),
            "local_method": found.method if found is not None else ""}


def dataset_alignment(model: VAEBase, data: ImageSet, n: int = CODES, seed: int = 0, k: int = 3,
                      local_codes: int = 16, progress: Callable[[float, str], None] | None = None) -> dict:
    """``factor_alignment`` on the codes of a fixed random subset of at most ``n`` images of ``data``."""
    if data.factors is None:
        raise VAEError(f"{data.name or 'This dataset'} has no ground-truth factors to align directions with; "
                       "pick dSprites.")
    if progress:
        progress(0.0, "encoding images")
    codes, sub = dataset_codes(model, data, n, seed)
    return factor_alignment(model, codes, sub.factors, sub.factor_names, sub.labels, sub.class_names, k=k,
                            local_codes=local_codes, n_boot=boot_count(len(codes), codes[0].numel()), seed=seed,
                            progress=progress)


__all__ = ["Direction", "LocalResult", "best_alignment", "boot_count", "canonical_sign", "chance_cosine",
           "class_contrast", "dataset_alignment", "dataset_codes", "dataset_directions", "direction_codes", "factor_alignment",
           "factor_directions", "factor_slopes", "local_directions", "local_plan", "move", "principal_axes", "principal_directions",
           "regression_direction"]
