"""2-D maps of latent codes (PCA, t-SNE, UMAP) and nearest neighbours in latent space.

UMAP is made fast in three ways, measured on a 2-core CPU (see bench/app_latency.py):
- the k nearest neighbours are computed exactly with one chunked matrix product in torch and
  handed to umap-learn (``precomputed_knn``), so pynndescent's NN-descent, which costs ~20 s
  of numba compilation on first use, never runs;
- umap-learn's own numba functions are compiled with disk caching switched on
  (``enable_numba_cache``): a fresh process loads them from the cache instead of compiling
  them again (~4 s); umap-learn does not ask numba to cache them itself;
- ``warm_up`` imports umap-learn and fits a tiny map; the app runs it in the background at
  start (explorer.startup), so a server pays the import and cache loading before anyone asks.
The layout runs on one thread (n_jobs=1): on a shared 2-core machine a second numba thread
gained nothing (1.7 s either way at 5,000 points) and left no core for other sessions.
The layout is initialised from PCA (Kobak & Linderman, 2021: as good as spectral, and free),
and optimised for 200 epochs (umap-learn's own choice above 10,000 points) up to 10,000
points, then for fewer (100 at 20,000), so the layout work stays about constant.

t-SNE is openTSNE's (Policar et al., 2024): the same objective and schedule as scikit-learn's
(PCA initialisation, learning rate n/12, 250 iterations of early exaggeration 12, then 500),
with a callback every few iterations. That callback is what lets a long map report how far it
has got and stop when nobody wants it any more, which scikit-learn's TSNE cannot do; it was
also a little quicker (17 s against 22 s for 5,000 codes on a 2-core CPU).
"""
from __future__ import annotations

import functools
import time
import warnings
from types import MappingProxyType
from typing import Callable, Literal, Mapping

import numpy as np
import torch

from .errors import VAEError

Method = Literal["pca", "tsne", "umap"]
METHODS: Mapping[str, str] = MappingProxyType({"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"})
MAX_POINTS = 50_000
TSNE_EARLY_ITERATIONS, TSNE_ITERATIONS = 250, 500   # openTSNE's and scikit-learn's schedule
TSNE_CALLBACK_EVERY = 25                            # iterations between progress reports
TSNE_AFFINITY_SHARE = 0.15                          # of the time, before the first iteration (5,000 codes)
Progress = Callable[[float, str], None]             # (fraction done, what is happening); may raise to stop
UMAP_EPOCH_POINTS = 2_000_000     # epochs x points: 200 epochs at 10,000 points


def _as_matrix(codes) -> np.ndarray:
    """(N, *latent) codes as a float32 (N, D) matrix."""
    x = codes.detach().float().cpu().numpy() if torch.is_tensor(codes) else np.asarray(codes, np.float32)
    x = x.reshape(len(x), -1).astype(np.float32, copy=False)
    if len(x) > MAX_POINTS:
        raise VAEError(f"{len(x):,} points are too many to map here; the limit is {MAX_POINTS:,}.")
    if not np.isfinite(x).all():
        raise VAEError("Some codes are NaN or infinite; the model is broken for these images.")
    return x


def pca(codes) -> np.ndarray:
    """The codes on their two leading principal axes (an eigendecomposition of the D x D covariance).

    Done in torch: importing scikit-learn's PCA would cost the first map about a second. The sign
    of each axis is fixed (largest loading positive), so the map never flips between runs.
    """
    x = torch.from_numpy(_as_matrix(codes)).double()
    if x.shape[1] < 2 or len(x) < 2:
        raise VAEError("PCA needs at least two points with at least two latent dimensions.")
    x = x - x.mean(0)
    _, vecs = torch.linalg.eigh(x.T @ x)                        # eigenvalues ascending
    axes = vecs[:, -2:].flip(1)                                 # (D, 2), most variance first
    axes = axes * torch.sign(axes.gather(0, axes.abs().argmax(0, keepdim=True)))
    return (x @ axes).float().numpy()


def max_perplexity(n: int) -> float:
    """The largest perplexity n points support: each point's 3 x perplexity neighbours must exist."""
    return (n - 1) / 3


def tsne(codes, perplexity: float = 30.0, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """t-SNE of the codes (openTSNE, one thread, seeded). ``progress(fraction, what)`` is called
    every few iterations; an exception it raises stops the map and propagates."""
    import openTSNE

    x = _as_matrix(codes)
    if not 1 <= perplexity <= max_perplexity(len(x)):
        raise VAEError(f"t-SNE's perplexity must be between 1 and a third of the other points "
                       f"({max_perplexity(len(x)):g} for {len(x)} points), got {perplexity:g}.")
    total = TSNE_EARLY_ITERATIONS + TSNE_ITERATIONS
    done = [0]                                  # iterations over both phases (openTSNE restarts its count)

    def report(_iteration, _error, _embedding):
        done[0] += TSNE_CALLBACK_EVERY
        progress(TSNE_AFFINITY_SHARE + (1 - TSNE_AFFINITY_SHARE) * min(done[0], total) / total,
                 f"iteration {min(done[0], total)} of {total}")
        return False

    if progress:
        progress(0.0, "finding each point's neighbours")
    emb = openTSNE.TSNE(n_components=2, perplexity=perplexity, initialization="pca", learning_rate="auto",
                        early_exaggeration_iter=TSNE_EARLY_ITERATIONS, n_iter=TSNE_ITERATIONS, n_jobs=1,
                        random_state=seed, verbose=False, callbacks=report if progress else None,
                        callbacks_every_iters=TSNE_CALLBACK_EVERY).fit(x)
    if progress:
        progress(1.0, "done")
    return np.asarray(emb, dtype=np.float32)


def knn(codes, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every point (itself first): int32 indices and float32 distances (N, k)."""
    x = torch.from_numpy(_as_matrix(codes))
    sq = x.pow(2).sum(1)
    idx, dist = [], []
    for s in range(0, len(x), chunk):
        rows = torch.arange(s, min(s + chunk, len(x)))
        d2 = sq[rows, None] - 2 * x[rows] @ x.T + sq[None]                 # (chunk, N) squared distances
        d2[torch.arange(len(rows)), rows] = -1.0                            # each point first in its own list
        v, i = d2.topk(k, dim=1, largest=False)
        idx.append(i.to(torch.int32))
        dist.append(v.clamp_min_(0).sqrt_())
    return torch.cat(idx).numpy(), torch.cat(dist).numpy()


def umap_epochs(n: int) -> int:
    return int(np.clip(UMAP_EPOCH_POINTS // max(n, 1), 100, 200))


def umap(codes, n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int | None = None) -> np.ndarray:
    x = _as_matrix(codes)
    if not 2 <= n_neighbors < len(x):
        raise VAEError(f"UMAP's n_neighbors must be at least 2 and below the number of points ({len(x)}), "
                       f"got {n_neighbors}.")
    if not 0 <= min_dist <= 1:
        raise VAEError(f"UMAP's min_dist must be between 0 and 1, got {min_dist}.")
    enable_numba_cache()
    import umap as umap_learn

    idx, dist = knn(x, n_neighbors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # "no search index": we never transform new points
        reducer = umap_learn.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, init="pca", n_jobs=1,
                                  n_epochs=n_epochs or umap_epochs(len(x)), precomputed_knn=(idx, dist, None))
        return reducer.fit_transform(x).astype(np.float32)


def project(codes, method: Method, *, seed: int = 0, perplexity: float = 30.0, n_neighbors: int = 15,
            min_dist: float = 0.1, progress: Progress | None = None) -> np.ndarray:
    """Map codes (N, *latent) to 2-D points (N, 2) with PCA, t-SNE or UMAP.

    ``progress(fraction, what)``, where given, hears how far the map has got: t-SNE reports every
    few iterations, the others when they start and end. An exception it raises stops the map."""
    if method == "pca":
        return pca(codes)
    if method == "tsne":
        return tsne(codes, perplexity, seed, progress)
    if method == "umap":
        if progress:
            progress(0.0, "finding neighbours and laying out")
        points = umap(codes, n_neighbors, min_dist)
        if progress:
            progress(1.0, "done")
        return points
    raise VAEError(f"Unknown projection {method!r}; choose one of {sorted(METHODS)}.")


def nearest_neighbours(codes, query: list[int] | np.ndarray, k: int = 5) -> np.ndarray:
    """Indices (len(query), k) of the k nearest other points to each query point, in latent space."""
    x = torch.from_numpy(_as_matrix(codes))
    q = torch.as_tensor(np.asarray(query, dtype=np.int64))
    if len(q) and (q.min() < 0 or q.max() >= len(x)):
        raise VAEError(f"Point indices must be between 0 and {len(x) - 1}.")
    k = min(k, len(x) - 1)
    d = torch.cdist(x[q], x)                                      # (Q, N)
    d[torch.arange(len(q)), q] = float("inf")                    # not its own neighbour
    return d.topk(k, dim=1, largest=False).indices.numpy()


# ---------------------------------------------------------------------------------------------
# Paying numba's compile cost early


@functools.cache
def enable_numba_cache() -> int:
    """Switch on numba's disk cache for umap-learn's jitted functions, once per process; returns how many.

    numba writes the cache beside the source (``__pycache__``) or, where that is read-only,
    to a user cache folder; NUMBA_CACHE_DIR moves it. Functions that cannot be cached only warn.
    """
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils
    from numba.core.registry import CPUDispatcher

    count = 0
    for mod in (umap.umap_, umap.layouts, umap.spectral, umap.utils):
        for f in vars(mod).values():
            if isinstance(f, CPUDispatcher) and not f.signatures:
                f.enable_caching()
                count += 1
    return count


def warm_up(n: int = 300) -> dict[str, float]:
    """Import umap-learn and fit a tiny map, so the numba code the app needs is compiled or loaded."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enable_numba_cache()
        t1 = time.perf_counter()
        x = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
        umap(x, n_neighbors=15, n_epochs=2)
    t2 = time.perf_counter()
    return {"import_s": t1 - t0, "fit_s": t2 - t1}


if __name__ == "__main__":
    # `python -m vae_core.project`: warm the numba cache at install time (e.g. in a Dockerfile).
    print(warm_up())


__all__ = ["METHODS", "enable_numba_cache", "knn", "max_perplexity", "nearest_neighbours", "pca", "project",
           "tsne", "umap", "warm_up"]
