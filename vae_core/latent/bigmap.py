"""Maps of a whole large dataset, streamed: ``python -m vae_core map MODEL --dataset dsprites-full``.

The app maps at most a few tens of thousands of codes (its budget); this maps every image of a
set, on the user's own machine, without ever holding the images as floats:
- the images come in chunks (``open_stream``): dsprites-full is unpacked from its bit-packed
  disk cache one chunk at a time (3 GB as uint8, 12 GB as floats, if unpacked whole); other sets are
  small enough to load as uint8 and are sliced;
- each chunk is encoded as it arrives and only its posterior means are kept: (N, D) float32,
  29 MB for all 737,280 dSprites at D = 10;
- PCA is exact and streamed over the codes in blocks: the mean, then the centred scatter matrix
  X^T X (D x D, float64), whose two leading eigenvectors are the axes (``projections.principal_axes``,
  the same as the app's in-memory ``projections.pca``), then the projection, block by block;
- UMAP of many codes is fitted on a seeded subsample (``UMAP_FIT_POINTS``) and every other code is
  placed into that map as umap-learn's own ``transform`` does (its neighbours among the fitted
  points, found exactly in row blocks, give each new point a weighted-mean start and a few epochs
  of the layout with the fitted points held still). bench/big_map.py measures that against
  fitting all 100,000 codes at once: time and trustworthiness.
The result is written to Parquet (``write_parquet``), atomically: one row per image, with its index in
the set, its label and ground-truth factors where known, its 2-D position and its code.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import torch

from ..errors import VAEError

BigMethod = Literal["pca", "umap"]
UmapStrategy = Literal["subsample", "all"]
BIG_METHODS = ("pca", "umap")
ENCODE_BATCH = 2048                 # images per encoder call (32 MB of floats at 64x64)
PCA_BLOCK = 65_536                  # codes per block of the streamed PCA
UMAP_FIT_POINTS = 20_000            # codes the map is fitted on; the rest are placed into it
UMAP_MAX_ALL = 200_000              # the most codes "fit on all" takes (NN-descent and the layout grow with N)
TRANSFORM_BLOCK = 65_536            # new points placed into a UMAP map per call
Progress = Callable[[float, str], None]     # (fraction done, what is happening)


@dataclasses.dataclass
class Chunk:
    index: np.ndarray                   # (n,) int64: the images' indices in the set
    images: torch.Tensor                # uint8 (n, C, H, W), at the model's size
    labels: np.ndarray | None = None    # (n,) int64
    factors: np.ndarray | None = None   # (n, F) float64


@dataclasses.dataclass(frozen=True)
class Stream:
    """A set's images, read in chunks only when asked for: ``chunks(size)`` yields ``Chunk``s of at most ``size``."""
    name: str
    n: int
    chunks: Callable[[int], Iterator[Chunk]]
    has_labels: bool = False
    factor_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()


def open_stream(name: str, split: str = "all", image_size: int = 0, channels: int = 0,
                progress: Callable[[int, int], None] | None = None) -> Stream:
    """The images of a dataset (any name ``load_dataset`` takes) as a ``Stream``, conformed to
    ``image_size`` and ``channels``. dsprites-full is unpacked chunk by chunk from its disk cache
    (built once, about 1.5 minutes, if missing: ``progress(done, total)`` hears the build); any other
    set is loaded as uint8 and sliced."""
    from ..data import DATASETS, ImageSet, conform, load_dataset
    from ..data import dsprites as ds
    from ..data.imageset import split_indices

    if name != "dsprites-full":
        return stream_of(load_dataset(name, split, image_size, channels, progress=progress))
    read = ds.dsprites_full_chunks(split, progress)

    def chunks(size: int) -> Iterator[Chunk]:
        for idx, images in read(size):
            images = conform(ImageSet(images), image_size, channels).images
            yield Chunk(idx.astype(np.int64), images, ds.dsprites_factor_indices(idx)[:, 0], ds.dsprites_factor_values(idx))

    return Stream("dsprites-full", len(split_indices(DATASETS["dsprites-full"].images, split)), chunks,
                  has_labels=True, factor_names=ds.DSPRITES_FACTOR_NAMES, class_names=ds.DSPRITES_SHAPES)


def stream_of(data) -> Stream:
    """An ImageSet already in memory (as uint8) as a ``Stream`` of its slices."""
    def chunks(size: int) -> Iterator[Chunk]:
        if size < 1:
            raise VAEError(f"The batch size must be at least 1, got {size}.")
        for start in range(0, len(data), size):
            stop = min(start + size, len(data))
            yield Chunk(np.arange(start, stop, dtype=np.int64), data.images[start:stop],
                        None if data.labels is None else data.labels[start:stop].numpy(),
                        None if data.factors is None else data.factors[start:stop].double().numpy())

    return Stream(data.name, len(data), chunks, has_labels=data.labels is not None,
                  factor_names=tuple(data.factor_names) if data.factors is not None else (),
                  class_names=tuple(data.class_names))


@dataclasses.dataclass
class Encoded:
    index: np.ndarray                   # (N,) int64
    codes: np.ndarray                   # (N, D) float32 posterior means
    labels: np.ndarray | None
    factors: np.ndarray | None


@torch.inference_mode()
def encode_stream(model, stream: Stream, batch_size: int = ENCODE_BATCH,
                  progress: Progress | None = None) -> Encoded:
    """Posterior means of every image of ``stream``, a chunk at a time: only one chunk of images (and its
    floats) is alive at once; the codes go into an (N, D) array made once."""
    if batch_size < 1:
        raise VAEError(f"The batch size must be at least 1, got {batch_size}.")
    if model.num_classes and not stream.has_labels:
        raise VAEError(f"This conditional model needs class labels, and {stream.name or 'the dataset'} has none; "
                       "pick a labelled dataset.")
    d = int(np.prod(model.latent_shape))
    codes = np.empty((stream.n, d), dtype=np.float32)
    index = np.empty(stream.n, dtype=np.int64)
    labels = np.empty(stream.n, dtype=np.int64) if stream.has_labels else None
    factors = np.empty((stream.n, len(stream.factor_names))) if stream.factor_names else None
    done = 0
    for chunk in stream.chunks(batch_size):
        n = len(chunk.index)
        if done + n > stream.n:
            raise VAEError(f"{stream.name} gave more than the {stream.n:,} images it announced.")
        x = torch.div(chunk.images.to(model.device), 255.0)             # uint8 -> float32 in one pass
        y = torch.as_tensor(chunk.labels, device=model.device) if model.num_classes else None
        codes[done:done + n] = model.encode(x, y).mode().reshape(n, -1).float().cpu().numpy()
        index[done:done + n] = chunk.index
        if labels is not None:
            labels[done:done + n] = chunk.labels
        if factors is not None:
            factors[done:done + n] = chunk.factors
        done += n
        if progress:
            progress(done / stream.n, f"encoded {done:,} of {stream.n:,} images")
    if done != stream.n:
        raise VAEError(f"{stream.name} gave {done:,} images, not the {stream.n:,} it announced.")
    if not np.isfinite(codes).all():
        raise VAEError("Some codes are NaN or infinite; the model is broken for these images.")
    return Encoded(index, codes, labels, factors)


def streamed_pca(codes: np.ndarray, block: int = PCA_BLOCK) -> np.ndarray:
    """Exact PCA of (N, D) codes in blocks of ``block`` rows (float64 sums; memory: one block): the same
    axes and signs as ``projections.pca``, with no limit on N."""
    from .projections import principal_axes

    n, d = codes.shape
    if d < 2 or n < 2:
        raise VAEError("PCA needs at least two points with at least two latent dimensions.")
    blocks = range(0, n, block)
    mean = sum(torch.from_numpy(codes[s:s + block]).double().sum(0) for s in blocks) / n
    scatter = torch.zeros(d, d, dtype=torch.float64)
    for s in blocks:
        c = torch.from_numpy(codes[s:s + block]).double() - mean
        scatter.addmm_(c.T, c)
    axes = principal_axes(scatter)
    out = np.empty((n, 2), dtype=np.float32)
    for s in blocks:
        out[s:s + block] = ((torch.from_numpy(codes[s:s + block]).double() - mean) @ axes).float().numpy()
    return out


def big_umap(codes: np.ndarray, strategy: UmapStrategy = "subsample", fit_points: int = UMAP_FIT_POINTS,
             seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
             progress: Progress | None = None) -> np.ndarray:
    """UMAP of many codes: ``subsample`` fits a seeded ``fit_points`` of them (exact neighbours) and places
    the rest into that map (``place_into_umap``); ``all`` fits every code (NN-descent above 20,000)."""
    from . import projections

    n = len(codes)
    if strategy == "all" or n <= fit_points:
        if n > UMAP_MAX_ALL:
            raise VAEError(f"Fitting UMAP on all {n:,} codes is refused above {UMAP_MAX_ALL:,}; "
                           "use --umap-strategy subsample.")
        if progress:
            progress(0.0, f"fitting UMAP on all {n:,} codes")
        return projections.umap(codes, n_neighbors, min_dist, max_points=max(n, projections.MAX_POINTS))
    if strategy != "subsample":
        raise VAEError(f"Unknown UMAP strategy {strategy!r}; choose subsample or all.")
    if fit_points <= n_neighbors:
        raise VAEError(f"UMAP needs more than n_neighbors ({n_neighbors}) codes to fit on, got {fit_points}.")
    fit_idx = np.sort(np.random.default_rng(seed).choice(n, fit_points, replace=False))
    if progress:
        progress(0.0, f"fitting UMAP on {fit_points:,} of the {n:,} codes")
    reducer = projections.fit_umap(codes[fit_idx], n_neighbors, min_dist, max_points=fit_points)
    out = np.empty((n, 2), dtype=np.float32)
    out[fit_idx] = reducer.embedding_
    rest = np.setdiff1d(np.arange(n), fit_idx, assume_unique=True)
    for s in range(0, len(rest), TRANSFORM_BLOCK):
        if progress:
            progress(0.5 + 0.5 * s / len(rest), f"placing codes {s:,} of {len(rest):,} into the map")
        sel = rest[s:s + TRANSFORM_BLOCK]
        out[sel] = place_into_umap(reducer, codes[fit_idx], codes[sel], seed=seed + 1 + s)
    return out


def place_into_umap(reducer, fitted: np.ndarray, new: np.ndarray, seed: int = 0) -> np.ndarray:
    """New codes placed into a fitted UMAP map, as umap-learn's ``transform`` does, with the neighbours
    found exactly (``projections.knn`` among the fitted codes) rather than by a search index (the reducer
    has none: it was fitted on precomputed neighbours). Each new point starts at the membership-
    weighted mean of its neighbours' positions, then a third of the fit's epochs of the layout move
    it, the fitted points held still."""
    import scipy.sparse
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import compute_membership_strengths, init_graph_transform, make_epochs_per_sample, smooth_knn_dist

    from .projections import knn

    k = reducer.n_neighbors
    idx, dist = knn(new, k, among=fitted, max_points=max(len(new), len(fitted)))
    sigmas, rhos = smooth_knn_dist(dist, float(k), local_connectivity=max(0.0, reducer.local_connectivity - 1.0))
    rows, cols, vals, _ = compute_membership_strengths(idx, dist, sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(new), len(fitted)))
    csr = graph.tocsr()
    csr.eliminate_zeros()
    embedding = init_graph_transform(csr, reducer.embedding_).astype(np.float32)
    n_epochs = max(1, int(reducer.n_epochs // 3))
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    rng_state = np.random.default_rng(seed).integers(-(2 ** 31), 2 ** 31 - 1, 3).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embedding = optimize_layout_euclidean(
            embedding, reducer.embedding_.astype(np.float32, copy=True), graph.row, graph.col, n_epochs,
            graph.shape[1], make_epochs_per_sample(graph.data, n_epochs), reducer._a, reducer._b, rng_state,
            reducer.repulsion_strength, reducer._initial_alpha / 4.0, reducer.negative_sample_rate, False)
    return np.asarray(embedding, dtype=np.float32)


@dataclasses.dataclass
class BigMap:
    encoded: Encoded
    positions: np.ndarray               # (N, 2) float32
    method: str
    factor_names: tuple[str, ...]
    class_names: tuple[str, ...]
    seconds: dict[str, float]           # encode, project

    def table(self):
        """The map as a pyarrow Table: index, label (and class name), factors, x, y, z0..z{D-1}."""
        import pyarrow as pa

        e = self.encoded
        cols: dict[str, object] = {"index": e.index}
        if e.labels is not None:
            cols["label"] = e.labels
            if self.class_names:
                names = np.asarray(self.class_names, dtype=object)
                cols["class_name"] = pa.DictionaryArray.from_arrays(
                    pa.array(e.labels.astype(np.int32)), pa.array(list(names)))
        for k, name in enumerate(self.factor_names):
            cols[name] = e.factors[:, k]
        cols["x"], cols["y"] = self.positions[:, 0], self.positions[:, 1]
        for k in range(e.codes.shape[1]):
            cols[f"z{k}"] = e.codes[:, k]
        return pa.table(cols)


def map_dataset(model, dataset: "str | Stream", method: BigMethod = "pca", split: str = "all", *,
                batch_size: int = ENCODE_BATCH, umap_strategy: UmapStrategy = "subsample",
                fit_points: int = UMAP_FIT_POINTS, seed: int = 0,
                progress: Progress | None = None) -> BigMap:
    """Encode every image of ``dataset`` (a name, or a ``Stream`` already opened at the model's size) in
    streamed batches and map the codes with PCA or UMAP."""
    if method not in BIG_METHODS:
        raise VAEError(f"Unknown map method {method!r}; choose one of {list(BIG_METHODS)}.")
    c, h, _ = model.config.in_shape
    stream = dataset if isinstance(dataset, Stream) else open_stream(dataset, split, image_size=h, channels=c)
    say = progress or (lambda f, what: None)
    t0 = time.perf_counter()
    encoded = encode_stream(model, stream, batch_size, lambda f, what: say(0.5 * f, what))
    t1 = time.perf_counter()
    if method == "pca":
        say(0.5, "projecting onto the two principal axes")
        positions = streamed_pca(encoded.codes)
    else:
        positions = big_umap(encoded.codes, umap_strategy, fit_points, seed,
                             progress=lambda f, what: say(0.5 + 0.5 * f, what))
    t2 = time.perf_counter()
    say(1.0, "done")
    return BigMap(encoded, positions, method, stream.factor_names, stream.class_names,
                  {"encode": t1 - t0, "project": t2 - t1})


def write_parquet(bigmap: BigMap, path: str | Path) -> Path:
    """Write the map to a Parquet file atomically (a temporary file renamed into place)."""
    import pyarrow.parquet as pq

    from ..io.files import atomic_file

    path = Path(path)
    table = bigmap.table()
    atomic_file(path, lambda tmp: pq.write_table(table, tmp, row_group_size=131_072))
    return path


__all__ = ["BIG_METHODS", "BigMap", "Chunk", "Encoded", "Stream", "big_umap", "encode_stream", "map_dataset",
           "open_stream", "place_into_umap", "stream_of", "streamed_pca", "write_parquet"]
