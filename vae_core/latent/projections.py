"""2-D maps of latent codes (PCA, t-SNE, UMAP) and nearest neighbours in latent space.

UMAP is made fast in three ways, measured on a 2-core CPU (see bench/app_latency.py, bench/maps.py):
- up to 20,000 points (all the app offers) the k nearest neighbours are computed exactly, in
  row blocks of one fused matrix product in torch, and handed to umap-learn (``precomputed_knn``),
  so pynndescent's NN-descent, which costs ~20 s of numba compilation on first use, never runs;
  above that, where the exact search's N^2 work dominates, NN-descent takes over (``neighbours``);
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

t-SNE is openTSNE (Policar et al., 2024): Barnes-Hut gradients below 10,000 points, FFT-accelerated
ones (Linderman et al., 2019) above, on the same exact neighbours as UMAP's (``tsne``), with a callback every few iterations: that callback is
what lets a long map report how far it has got and stop when nobody wants it any more, which
scikit-learn's TSNE cannot do.
"""
from __future__ import annotations

import functools
import time
import warnings
from types import MappingProxyType
from typing import Callable, Literal, Mapping

import numpy as np
import torch

from ..errors import VAEError

Method = Literal["pca", "tsne", "umap"]
METHODS: Mapping[str, str] = MappingProxyType({"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"})
MAX_POINTS = 50_000
TSNE_EARLY_ITERATIONS, TSNE_ITERATIONS = 125, 375   # early exaggeration, then the rest (see tsne)
TSNE_CALLBACK_EVERY = 25                            # iterations between progress reports
TSNE_AFFINITY_SHARE = 0.15                          # of the time, before the first iteration (5,000 codes)
TSNE_BH_BELOW, TSNE_THETA = 10_000, 0.8             # Barnes-Hut (at this angle) below so many points, FFT above
Progress = Callable[[float, str], None]             # (fraction done, what is happening); may raise to stop
EXACT_KNN_MAX = 20_000            # above this many points, neighbours by NN-descent (see neighbours)
KNN_CHUNK = 512                   # rows per block of the exact neighbour search (100 MB at 50,000 points)
UMAP_EPOCH_POINTS = 2_000_000     # epochs x points: 200 epochs at 10,000 points


def _as_matrix(codes, max_points: int = MAX_POINTS) -> np.ndarray:
    """(N, *latent) codes as a float32 (N, D) matrix; more than ``max_points`` rows are refused (the app's
    budget; vae_core.latent.bigmap, on a user's own machine, passes its own)."""
    x = codes.detach().float().cpu().numpy() if torch.is_tensor(codes) else np.asarray(codes, np.float32)
    x = x.reshape(len(x), -1).astype(np.float32, copy=False)
    if len(x) > max_points:
        raise VAEError(f"{len(x):,} points are too many to map here; the limit is {max_points:,}.")
    if not np.isfinite(x).all():
        raise VAEError("Some codes are NaN or infinite; the model is broken for these images.")
    return x


def pca_basis(codes, max_points: int = MAX_POINTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes' mean (D,) and two leading principal axes (D, 2), float64 (an eigendecomposition
    of the D x D covariance). The sign of each axis is fixed (largest loading positive), so the
    map never flips between runs. vae_core.latent.inverse maps 2-D points back through the same basis."""
    x = torch.from_numpy(_as_matrix(codes, max_points)).double()
    if x.shape[1] < 2 or len(x) < 2:
        raise VAEError("PCA needs at least two points with at least two latent dimensions.")
    mean = x.mean(0)
    x = x - mean
    return mean, principal_axes(x.T @ x)


def principal_axes(scatter: torch.Tensor) -> torch.Tensor:
    """The two leading eigenvectors (D, 2) of a centred scatter matrix X^T X, most variance first,
    each signed so its largest loading is positive (the map never flips between runs). Shared by
    ``pca_basis`` and the streamed PCA of vae_core.latent.bigmap, which accumulates the scatter in blocks."""
    _, vecs = torch.linalg.eigh(scatter)                        # eigenvalues ascending
    axes = vecs[:, -2:].flip(1)                                 # (D, 2), most variance first
    return axes * torch.sign(axes.gather(0, axes.abs().argmax(0, keepdim=True)))


def pca(codes, max_points: int = MAX_POINTS) -> np.ndarray:
    """The codes on their two leading principal axes (``pca_basis``).

    Done in torch: importing scikit-learn's PCA would cost the first map about a second."""
    mean, axes = pca_basis(codes, max_points)
    return ((torch.from_numpy(_as_matrix(codes, max_points)).double() - mean) @ axes).float().numpy()


def max_perplexity(n: int) -> float:
    """The largest perplexity n points support: each point's 3 x perplexity neighbours must exist."""
    return (n - 1) / 3


def tsne(codes, perplexity: float = 30.0, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """t-SNE with openTSNE: Barnes-Hut gradients below ``TSNE_BH_BELOW`` points, FFT-accelerated ones
    (Linderman et al., 2019) above (openTSNE's own switch), on exact neighbours, on torch's threads.

    Below 10,000 points Barnes-Hut at angle 0.8 reaches a lower KL divergence than the FFT
    interpolation at openTSNE's default grid, in about a third of its time (5,000 MNIST codes, one
    thread: KL 1.60 in 5.8 s against 1.61 in 16 s; bench/maps.py measures the time and the
    trustworthiness). The threads are torch's (``torch.get_num_threads()``), so the app's per-job
    thread budget holds here too.

    The affinities come from the same exact k-nearest-neighbour search as UMAP's (k = 3 x
    perplexity, openTSNE's own choice), so no tree is built; the layout starts from PCA (scaled
    to std 1e-4, as openTSNE does) with the learning rate N / exaggeration (Belkina et al., 2019),
    which converges in fewer iterations than the classic 250 + 500: ``TSNE_EARLY_ITERATIONS`` with
    early exaggeration 12, then ``TSNE_ITERATIONS`` more (bench/maps.py measures both the time and
    the trustworthiness against the classic schedule). ``progress(fraction, what)`` is called every
    few iterations; an exception it raises stops the map and propagates.
    """
    x = _as_matrix(codes)
    n = len(x)
    if not 1 <= perplexity <= max_perplexity(n):
        raise VAEError(f"t-SNE's perplexity must be between 1 and a third of the other points "
                       f"({max_perplexity(n):g} for {n} points), got {perplexity:g}.")
    threads = max(1, torch.get_num_threads())
    emb = _tsne_layout(x, _tsne_affinities(x, perplexity, threads, progress), seed, threads, progress)
    if progress:
        progress(1.0, "done")
    return np.asarray(emb, dtype=np.float32)


def _tsne_affinities(x: np.ndarray, perplexity: float, threads: int, progress: Progress | None):
    """t-SNE's joint probabilities P from the exact k = 3 x perplexity nearest neighbours of each point."""
    from openTSNE.affinity import PrecomputedAffinities, joint_probabilities_nn

    if progress:
        progress(0.0, "finding each point's neighbours")
    k = min(len(x) - 1, max(1, int(3 * perplexity)))
    idx, dist = neighbours(x, k + 1)
    if progress:
        progress(TSNE_AFFINITY_SHARE / 2, "computing affinities")     # a point where a stop can come
    P = joint_probabilities_nn(idx[:, 1:].astype(np.int64), dist[:, 1:].astype(np.float64), [perplexity],
                               symmetrize=True, n_jobs=threads)
    return PrecomputedAffinities(P, normalize=False)


def _tsne_layout(x: np.ndarray, affinities, seed: int, threads: int, progress: Progress | None):
    """The embedding: from PCA scaled to std 1e-4, early exaggeration, then the free iterations."""
    from openTSNE import TSNEEmbedding

    init = pca(x).astype(np.float64)
    init = init / np.std(init[:, 0]) * 1e-4
    gradient = dict(negative_gradient_method="bh", theta=TSNE_THETA) if len(x) < TSNE_BH_BELOW else \
        dict(negative_gradient_method="fft")
    emb = TSNEEmbedding(init, affinities, n_jobs=threads, random_state=seed,
                        callbacks_every_iters=TSNE_CALLBACK_EVERY, **gradient)
    emb = emb.optimize(TSNE_EARLY_ITERATIONS, exaggeration=12, momentum=0.5,
                       callbacks=_tsne_callbacks(progress, 0), propagate_exception=True)
    return emb.optimize(TSNE_ITERATIONS, momentum=0.8, callbacks=_tsne_callbacks(progress, TSNE_EARLY_ITERATIONS),
                        propagate_exception=True)


def _tsne_callbacks(progress: Progress | None, offset: int) -> list | None:
    """openTSNE callbacks that report iterations (counted from ``offset``) as progress after the affinities."""
    if not progress:
        return None
    from openTSNE.callbacks import Callback

    total = TSNE_EARLY_ITERATIONS + TSNE_ITERATIONS

    class Report(Callback):
        def __call__(self, iteration, error, embedding):
            done = min(offset + iteration, total)
            progress(TSNE_AFFINITY_SHARE + (1 - TSNE_AFFINITY_SHARE) * done / total, f"iteration {done} of {total}")
            return False

    return [Report()]


def neighbours(codes, k: int, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every point (itself first), as UMAP and t-SNE use them: exact (``knn``)
    up to ``EXACT_KNN_MAX`` points, NN-descent (pynndescent, as umap-learn uses) above.

    The exact search grows with N^2: at 50,000 points it takes several times as long as NN-descent,
    whose neighbours agree to 98% and give maps as trustworthy (bench/maps.py). Up to 20,000 points,
    all the app offers, it is exact and needs no numba compilation (pynndescent's costs its first
    call in a process several seconds).
    """
    x = _as_matrix(codes, max_points)
    if len(x) <= EXACT_KNN_MAX:
        return knn(x, k)
    from pynndescent import NNDescent

    idx, dist = NNDescent(x, n_neighbors=k, n_jobs=1, random_state=0).neighbor_graph
    return idx.astype(np.int32), dist.astype(np.float32)


def knn(codes, k: int, chunk: int = KNN_CHUNK, among=None,
        max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every point (itself first): int32 indices and float32 distances (N, k).

    Row blocks of ``chunk`` points against all N: one fused ``addmm`` writes |x_j|^2 - 2 x_i.x_j into
    a buffer made once (chunk x N floats, 100 MB at 50,000 points), the diagonal is set to -inf so
    each point comes first in its own list, and ``topk`` picks the k smallest. |x_i|^2, the same
    along a row, is added to the k winners only. Peak memory is the buffer, not N x N.
    With ``among`` (M, *latent), the neighbours are searched among those M points instead (indices
    into ``among``; a point is not its own neighbour there), as bigmap places new points into a map.
    """
    x = torch.from_numpy(_as_matrix(codes, max_points))
    ref = x if among is None else torch.from_numpy(_as_matrix(among, max_points))
    n, m = len(x), len(ref)
    if not 1 <= k <= m:
        raise VAEError(f"Cannot find {k} neighbours among {m} points.")
    sq = ref.pow(2).sum(1)                                                   # (M,)
    xt = ref.T.contiguous()                                                  # (D, M)
    buf = torch.empty(min(chunk, n), m)
    idx, dist = torch.empty(n, k, dtype=torch.int64), torch.empty(n, k)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        d2 = torch.addmm(sq[None], x[s:e], xt, beta=1.0, alpha=-2.0, out=buf[: e - s])   # (rows, M)
        if among is None:
            d2.diagonal(offset=s).fill_(-float("inf"))                      # itself first
        torch.topk(d2, k, dim=1, largest=False, sorted=True, out=(dist[s:e], idx[s:e]))
    dist.add_((x.pow(2).sum(1) if among is not None else sq)[:, None]).clamp_min_(0).sqrt_()
    if among is None:
        dist[:, 0] = 0.0                                                     # -inf + |x_i|^2: itself, at 0
    return idx.to(torch.int32).numpy(), dist.numpy()


def umap_epochs(n: int) -> int:
    return int(np.clip(UMAP_EPOCH_POINTS // max(n, 1), 100, 200))


def umap(codes, n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int | None = None,
         max_points: int = MAX_POINTS) -> np.ndarray:
    return fit_umap(codes, n_neighbors, min_dist, n_epochs, max_points).embedding_.astype(np.float32)


def fit_umap(codes, n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int | None = None,
             max_points: int = MAX_POINTS):
    """The fitted umap-learn reducer (its ``embedding_`` is the map, see ``umap``); vae_core.latent.bigmap
    places further points into it."""
    x = _as_matrix(codes, max_points)
    if not 2 <= n_neighbors < len(x):
        raise VAEError(f"UMAP's n_neighbors must be at least 2 and below the number of points ({len(x)}), "
                       f"got {n_neighbors}.")
    if not 0 <= min_dist <= 1:
        raise VAEError(f"UMAP's min_dist must be between 0 and 1, got {min_dist}.")
    enable_numba_cache()
    import umap as umap_learn

    idx, dist = neighbours(x, n_neighbors, max_points)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # "no search index": new points are placed by bigmap's own search
        reducer = umap_learn.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, init="pca", n_jobs=1,
                                  n_epochs=n_epochs or umap_epochs(len(x)), precomputed_knn=(idx, dist, None))
        reducer.fit(x)
    return reducer


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
    # `python -m vae_core.latent.projections`: warm the numba cache at install time (e.g. in a Dockerfile).
    print(warm_up())


__all__ = ["METHODS", "enable_numba_cache", "fit_umap", "knn", "max_perplexity", "nearest_neighbours", "neighbours",
           "pca", "pca_basis", "principal_axes", "project", "tsne", "umap", "warm_up"]
