"""Binary images kept a bit a pixel: ``PackedImages`` stands in for an ImageSet's uint8 (N, C, H, W)
tensor of 0s and 255s, at an eighth of its memory.

dSprites is binary: its 25,000-image set is 102 MB as uint8 and 13 MB packed (the full grid: 3 GB
against 377 MB), and a server keeps the set it loaded for every visitor. What the library does
with a set's images takes a few rows at a time (batches, subsets, one image to show), and
indexing (and ``index_select`` along the images, as a training step takes its batch) unpacks only
the rows it takes; ``to`` the CPU keeps it packed, as a tensor's ``to`` returns itself. Everything
else a read-only tensor can do works too, on the whole set unpacked for that one call: torch
functions (``__torch_function__``), tensor methods and attributes (``__getattr__``), numpy
(``__array__``). Nothing writes into it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import VAEError


def _unpacked(value):
    """``value`` with every PackedImages in it (also inside lists, tuples and dicts) unpacked."""
    if isinstance(value, PackedImages):
        return value.unpack()
    if isinstance(value, (list, tuple)):
        return type(value)(_unpacked(v) for v in value)
    if isinstance(value, dict):
        return {k: _unpacked(v) for k, v in value.items()}
    return value


class PackedImages:
    """Read-only binary images: ``bits`` holds one row of ``np.packbits`` a image (C x H x W bits, in
    that order), ``shape`` is (N, C, H, W). Made by ``pack`` from uint8 images, or from rows packed
    elsewhere (the dSprites disk cache)."""

    dtype = torch.uint8
    device = torch.device("cpu")
    ndim = 4
    is_cuda = False

    def __init__(self, bits: np.ndarray, image_shape: tuple[int, int, int]):
        bits = np.asarray(bits)
        per = math.prod(image_shape)
        if bits.dtype != np.uint8 or bits.ndim != 2 or bits.shape[1] != (per + 7) // 8 or len(image_shape) != 3:
            raise VAEError(f"Packed images need uint8 rows of {(per + 7) // 8} bytes for images of shape "
                           f"{tuple(image_shape)}, got {bits.dtype} {bits.shape}.")
        self.bits = bits
        self.shape = torch.Size((len(bits), *image_shape))

    @classmethod
    def pack(cls, images: torch.Tensor) -> PackedImages:
        """uint8 (N, C, H, W) images whose every pixel is 0 or 255; any other value is refused, since it
        would not come back."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise VAEError(f"Only uint8 (N, C, H, W) images can be packed, got {images.dtype} {tuple(images.shape)}.")
        flat = images.detach().cpu().reshape(len(images), -1).numpy()
        on = flat > 0
        if not np.array_equal(flat[on], np.full(int(on.sum()), 255, dtype=np.uint8)):
            raise VAEError("Only binary images (every pixel 0 or 255) can be packed a bit a pixel.")
        return cls(np.packbits(on, axis=1), tuple(images.shape[1:]))

    @property
    def nbytes(self) -> int:
        """The memory it holds (the packed bits), not the size unpacked."""
        return self.bits.nbytes

    def __len__(self) -> int:
        return self.shape[0]

    def dim(self) -> int:
        return 4

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return math.prod(self.shape)

    def element_size(self) -> int:
        return 1

    def _rows(self, bits: np.ndarray) -> torch.Tensor:
        x = np.unpackbits(bits, axis=1, count=math.prod(self.shape[1:]))
        x *= np.uint8(255)
        return torch.from_numpy(x.reshape(len(bits), *self.shape[1:]))

    def unpack(self) -> torch.Tensor:
        """Every image, as a uint8 tensor of its own."""
        return self._rows(self.bits)

    def __getitem__(self, key) -> torch.Tensor:
        """Indexing as a tensor's, unpacking only the images the first index takes."""
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if first is Ellipsis or first is None or isinstance(first, bool):
            return self.unpack()[key]
        if isinstance(first, torch.Tensor):
            first = first.item() if first.dim() == 0 and first.dtype != torch.bool else first.cpu().numpy()
        if isinstance(first, (int, np.integer)):
            n = len(self)
            if not -n <= first < n:
                raise IndexError(f"index {first} is out of bounds for {n} images")
            row = int(first) % n
            out = self._rows(self.bits[row:row + 1])[0]
            return out[rest] if rest else out
        out = self._rows(self.bits[first])          # a slice, or an index or boolean array: numpy's own rules
        return out[(slice(None), *rest)] if rest else out

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        """A tensor's ``index_select``; along the images (dim 0) only those taken are unpacked (a training step's batch)."""
        return self[index] if dim in (0, -4) else self.unpack().index_select(dim, index)

    def to(self, *args, **kwargs):
        """Itself where a tensor's ``to`` would return the tensor itself (CPU and uint8 already); else the
        images unpacked, then moved or converted."""
        probe = torch.empty(0, dtype=torch.uint8)
        return self if probe.to(*args, **kwargs) is probe else self.unpack().to(*args, **kwargs)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        x = self.unpack().numpy()
        return x if dtype is None else x.astype(dtype)

    def __getattr__(self, name: str):
        """Any other tensor method or attribute, on the whole set unpacked."""
        if name.startswith("__") or name in ("bits", "shape"):
            raise AttributeError(name)
        return getattr(self.unpack(), name)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func(*_unpacked(args), **_unpacked(kwargs or {}))

    def __eq__(self, other):
        return self.unpack() == _unpacked(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"PackedImages(shape={tuple(self.shape)}, {self.nbytes:,} bytes packed)"


__all__ = ["PackedImages"]
