"""dSprites (Matthey et al., 2017), drawn exactly from its factor grid.

The factor order and index layout are the original's (deepmind/dsprites-dataset), without its
one-valued colour factor: index = sum(factor_index * base), so "every image with factor k
fixed" is index arithmetic. The drawing was fitted to the 320 real frames in that repository's
dsprites.gif (three shapes through every scale and orientation and the positions); it matches
them at 99.9% IoU, most frames exactly (see tests/test_data_sources.py). Geometry, in pixels of
the 64x64 canvas, pixel (r, c) covering [r, r+1) x [c, c+1), each pixel white iff its centre is
inside the shape (as the original's non-antialiased rasteriser does):
- the sprite centre is (16 + 32 posX, 16 + 32 posY): posX moves right, posY down;
- orientation turns the sprite counter-clockwise as the image is shown (row 0 at the top);
- at scale 1 the square is 19.2 wide, the ellipse has semi-axes 12.77 x 7.21 (long axis
  horizontal), the heart is the classic curve x = 9.6 sin^3 t,
  y = 0.6625 (13 cos t - 5 cos 2t - 2 cos 3t - cos 4t) + 1.44 (up), lobes at the top.
Only IEEE arithmetic, sqrt and cbrt touch pixel coordinates (the 40 orientation cosines come
from Python's math), so an index gives byte-identical images on every run.

Two sets: ``dsprites``, a fixed seeded 25,000-image subset rendered on the spot (20,000 train,
5,000 test), and ``dsprites-full``, all 737,280 images, built once into a bit-packed cache on
disk. Both keep their images a bit a pixel in memory (``PackedImages``): a batch or a subset is
unpacked when it is taken.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import VAEError
from ..io.files import atomic_file
from ..settings import cache_dir
from .imageset import SPLIT_SEED, ImageSet, Progress, Split, check_split, split_indices
from .packed import PackedImages

DSPRITES_SHAPES = ("square", "ellipse", "heart")
DSPRITES_FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
DSPRITES_SIZES = (3, 6, 40, 32, 32)
DSPRITES_BASES = tuple(int(np.prod(DSPRITES_SIZES[i + 1:])) for i in range(len(DSPRITES_SIZES)))  # 245760 ... 1
DSPRITES_N = int(np.prod(DSPRITES_SIZES))                                                         # 737,280
DSPRITES_SUBSET = 25_000           # images in the default ``dsprites`` set: 20,000 train + 5,000 test
DSPRITES_RENDER_VERSION = 1        # part of the cache's file name: bump when the drawing changes

DSPRITES_SIDE = 64
PACKED_ROW_BYTES = DSPRITES_SIDE * DSPRITES_SIDE // 8   # one image, a bit per pixel
STALE_BUILD_S = 600                # a temporary cache file older than this was left by a killed build

_DS_SCALES = np.linspace(0.5, 1.0, 6)
_DS_ORIENTATIONS = np.linspace(0.0, 2 * math.pi, 40)     # as in the original, both 0 and 2 pi
_DS_POSITIONS = np.linspace(0.0, 1.0, 32)
_DS_COS = np.array([math.cos(float(t)) for t in _DS_ORIENTATIONS])
_DS_SIN = np.array([math.sin(float(t)) for t in _DS_ORIENTATIONS])
_DS_CENTRES = 16.0 + 32.0 * _DS_POSITIONS                # sprite centre along x or y, in pixels
_DS_PATCH = 32                     # every sprite fits a 32x32 patch around its centre (radius < 14)
_DS_SQUARE_HALF = 9.6
_DS_ELLIPSE_AXES = (12.77, 7.21)
_DS_HEART_HALF_WIDTH, _DS_HEART_Y_SCALE, _DS_HEART_Y_SHIFT = 9.6, 0.6625, 1.44


def dsprites_factors() -> dict[str, np.ndarray]:
    """Factor name -> its possible values, in index order (sizes 3, 6, 40, 32, 32).

    Values are the original's ``latents_values``: shape 1, 2, 3 (square, ellipse, heart), scale
    0.5..1, orientation 0..2 pi (radians; 0 and 2 pi draw alike), posX and posY 0..1.
    """
    return {"shape": np.array([1.0, 2.0, 3.0]), "scale": _DS_SCALES.copy(),
            "orientation": _DS_ORIENTATIONS.copy(), "posX": _DS_POSITIONS.copy(), "posY": _DS_POSITIONS.copy()}


def dsprites_index(factor_indices) -> np.ndarray:
    """(N, 5) integer factor indices (shape, scale, orientation, posX, posY) -> (N,) image indices."""
    f = np.asarray(factor_indices, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 5:
        raise VAEError(f"dSprites factor indices must be (N, 5), got shape {f.shape}.")
    sizes = np.array(DSPRITES_SIZES)
    if f.size and ((f < 0).any() or (f >= sizes).any()):
        bad = f[((f < 0) | (f >= sizes)).any(1)][0]
        raise VAEError(f"dSprites factor indices {bad.tolist()} are out of range; sizes are {list(DSPRITES_SIZES)}.")
    return f @ np.array(DSPRITES_BASES, dtype=np.int64)


def dsprites_factor_indices(indices) -> np.ndarray:
    """(N,) image indices -> (N, 5) integer factor indices; the inverse of ``dsprites_index``."""
    idx = _dsprites_check(indices)
    return (idx[:, None] // np.array(DSPRITES_BASES)) % np.array(DSPRITES_SIZES)


def dsprites_factor_values(indices) -> np.ndarray:
    """(N,) image indices -> (N, 5) float64 factor values (shape 1..3, scale, orientation, posX, posY)."""
    f = dsprites_factor_indices(indices)
    values = list(dsprites_factors().values())
    return np.stack([values[k][f[:, k]] for k in range(5)], axis=1)


def _dsprites_check(indices) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= DSPRITES_N):
        raise VAEError(f"dSprites indices run from 0 to {DSPRITES_N - 1}; got {int(idx.min())}..{int(idx.max())}.")
    return idx


def render_dsprites(indices, chunk: int = 2048) -> torch.Tensor:
    """The dSprites images at these indices: uint8 (N, 1, 64, 64), 0 or 255."""
    idx = _dsprites_check(indices)
    out = np.empty((len(idx), DSPRITES_SIDE, DSPRITES_SIDE), dtype=np.uint8)
    for start in range(0, len(idx), chunk):
        out[start:start + chunk] = _render_chunk(idx[start:start + chunk])
    return torch.from_numpy(out).unsqueeze(1)


def render_dsprites_packed(indices, chunk: int = 2048) -> PackedImages:
    """The dSprites images at these indices, kept a bit a pixel (``PackedImages``): rendered and packed
    ``chunk`` images at a time, so the uint8 images are never all in memory."""
    idx = _dsprites_check(indices)
    bits = np.empty((len(idx), PACKED_ROW_BYTES), dtype=np.uint8)
    for start in range(0, len(idx), chunk):
        bits[start:start + chunk] = _packed_chunk(idx[start:start + chunk])
    return PackedImages(bits, (1, DSPRITES_SIDE, DSPRITES_SIDE))


def _packed_chunk(idx: np.ndarray) -> np.ndarray:
    return np.packbits(_render_chunk(idx).reshape(len(idx), -1) > 0, axis=1)


def _render_chunk(idx: np.ndarray) -> np.ndarray:
    n = len(idx)
    f = dsprites_factor_indices(idx)
    shape, scale = f[:, 0], _DS_SCALES[f[:, 1]][:, None, None]
    cos, sin = _DS_COS[f[:, 2]][:, None, None], _DS_SIN[f[:, 2]][:, None, None]
    cx, cy = _DS_CENTRES[f[:, 3]], _DS_CENTRES[f[:, 4]]
    ox, oy = np.floor(cx).astype(np.int64) - 16, np.floor(cy).astype(np.int64) - 16   # patch corner, in 0..32
    step = np.arange(_DS_PATCH)
    dx = (ox[:, None] + (step + 0.5)) - cx[:, None]           # (n, 32) pixel centres from the sprite centre
    dy = (oy[:, None] + (step + 0.5)) - cy[:, None]
    # Into the sprite's own frame (x right, y down, unit scale); the image turns counter-clockwise.
    u = (cos * dx[:, None, :] - sin * dy[:, :, None]) / scale  # (n, 32, 32)
    v = (sin * dx[:, None, :] + cos * dy[:, :, None]) / scale
    inside = np.zeros((n, _DS_PATCH, _DS_PATCH), dtype=bool)
    for k, test in enumerate((_in_square, _in_ellipse, _in_heart)):
        m = shape == k
        if m.any():
            inside[m] = test(u[m], v[m])
    out = np.zeros((n, DSPRITES_SIDE, DSPRITES_SIDE), dtype=np.uint8)
    rows, cols = oy[:, None] + step, ox[:, None] + step
    out[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = inside.view(np.uint8) * np.uint8(255)
    return out


def _in_square(u, v):
    return (np.abs(u) <= _DS_SQUARE_HALF) & (np.abs(v) <= _DS_SQUARE_HALF)


def _in_ellipse(u, v):
    a, b = _DS_ELLIPSE_AXES
    return np.square(u / a) + np.square(v / b) <= 1.0


def _in_heart(u, v):
    # The right half of the curve is two graphs over x = 9.6 s^3 (s = sin t): the top with
    # cos t = +sqrt(1 - s^2), the bottom with cos t = -sqrt(1 - s^2); inside lies between them.
    x = np.abs(u) / _DS_HEART_HALF_WIDTH
    s = np.cbrt(np.minimum(x, 1.0))
    c = np.sqrt(1.0 - s * s)
    y = (-_DS_HEART_Y_SHIFT - v) / _DS_HEART_Y_SCALE               # up, in the curve's units
    return (x <= 1.0) & (y <= _heart_y(c)) & (y >= _heart_y(-c))


def _heart_y(c):
    # 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t, as a polynomial in c = cos t
    c2 = c * c
    return 13.0 * c - 5.0 * (2.0 * c2 - 1.0) - 2.0 * (4.0 * c2 * c - 3.0 * c) - (8.0 * c2 * c2 - 8.0 * c2 + 1.0)


def dsprites_subset_indices() -> np.ndarray:
    """The fixed, seeded 25,000 grid indices of the default ``dsprites`` set, sorted."""
    return np.sort(np.random.default_rng(SPLIT_SEED).choice(DSPRITES_N, DSPRITES_SUBSET, replace=False))


def _dsprites_set(idx: np.ndarray, images: PackedImages, name: str) -> ImageSet:
    return ImageSet(images, torch.from_numpy(dsprites_factor_indices(idx)[:, 0].copy()),
                    factors=torch.from_numpy(dsprites_factor_values(idx)),
                    factor_names=DSPRITES_FACTOR_NAMES, class_names=DSPRITES_SHAPES, name=name)


def dsprites(split: Split = "all", progress: Progress | None = None) -> ImageSet:
    """The split of the fixed 25,000-image subset, rendering only the images of that split, kept a bit
    a pixel (13 MB for all of them, not 102 MB)."""
    check_split(split)
    subset = dsprites_subset_indices()
    idx = subset[split_indices(len(subset), split)]
    return _dsprites_set(idx, render_dsprites_packed(idx), "dsprites")


def dsprites_cache_path() -> Path:
    return cache_dir() / "dsprites" / f"dsprites-packed-v{DSPRITES_RENDER_VERSION}.npy"


def build_dsprites_cache(path: str | Path | None = None, progress: Progress | None = None,
                         chunk: int = 4096) -> Path:
    """Render all 737,280 images into a bit-packed .npy of (737280, 512) uint8 rows (377 MB).

    Rendered ``chunk`` images at a time into a temporary file beside ``path``, which is renamed
    into place only when complete; memory stays under 200 MB. Does nothing if ``path`` exists.
    """
    path = Path(path) if path is not None else dsprites_cache_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):      # left by a build that was killed outright
        if stale.stat().st_mtime < time.time() - STALE_BUILD_S:   # (a live build writes every second)
            stale.unlink(missing_ok=True)

    def write(tmp: Path) -> None:
        packed = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(DSPRITES_N, PACKED_ROW_BYTES))
        for start in range(0, DSPRITES_N, chunk):
            stop = min(start + chunk, DSPRITES_N)
            packed[start:stop] = _packed_chunk(np.arange(start, stop))
            if progress is not None:
                progress(stop, DSPRITES_N)
        packed.flush()
        del packed

    atomic_file(path, write)
    return path


def _open_dsprites_cache(progress: Progress | None) -> np.ndarray:
    path = build_dsprites_cache(progress=progress)
    try:
        packed = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise VAEError(f"The dSprites cache {path} is unreadable ({e}); delete it and it will be rebuilt.") from None
    if packed.shape != (DSPRITES_N, PACKED_ROW_BYTES) or packed.dtype != np.uint8:
        raise VAEError(f"The dSprites cache {path} has shape {packed.shape}, not ({DSPRITES_N}, {PACKED_ROW_BYTES}); "
                       "delete it and it will be rebuilt.")
    probe = np.random.default_rng(0).choice(DSPRITES_N, 16, replace=False)
    if not np.array_equal(np.unpackbits(packed[np.sort(probe)], axis=1),
                          render_dsprites(np.sort(probe)).reshape(16, -1).numpy() // 255):
        raise VAEError(f"The dSprites cache {path} does not match the renderer; delete it and it will be rebuilt.")
    return packed


def dsprites_full(split: Split = "all", progress: Progress | None = None) -> ImageSet:
    """The full grid's split, read from the cache and kept packed (all: 377 MB, not 3 GB unpacked)."""
    check_split(split)
    packed = _open_dsprites_cache(progress)
    idx = split_indices(DSPRITES_N, split)
    return _dsprites_set(idx, PackedImages(np.ascontiguousarray(packed[idx]), (1, DSPRITES_SIDE, DSPRITES_SIDE)),
                         "dsprites-full")


def dsprites_full_chunks(split: Split = "all", progress: Progress | None = None
                         ) -> Callable[[int], Iterator[tuple[np.ndarray, torch.Tensor]]]:
    """The full grid's split, streamed: opens the disk cache now (``progress`` hears its one-time build)
    and returns ``chunks(size)``, which yields (grid indices, uint8 (n, 1, 64, 64) images) chunks of at
    most ``size``, each unpacked only when asked for: memory holds one chunk, never the 3 GB set."""
    check_split(split)
    packed = _open_dsprites_cache(progress)
    idx = split_indices(DSPRITES_N, split)
    return lambda size: unpack_chunks(packed, idx, size)


def unpack_chunks(packed: np.ndarray, idx: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Rows ``idx`` of a bit-packed (N, 512) array (a memory map), unpacked ``chunk`` rows at a time."""
    if chunk < 1:
        raise VAEError(f"The chunk size must be at least 1, got {chunk}.")
    for start in range(0, len(idx), chunk):
        rows = idx[start:start + chunk]
        bits = np.unpackbits(packed[rows], axis=1) * np.uint8(255)
        yield rows, torch.from_numpy(bits.reshape(len(rows), 1, DSPRITES_SIDE, DSPRITES_SIDE))
