"""Decoding image files and Hub rows into one uint8 tensor of one size, safely.

Every image goes through ``images.decode_image``: a format allow-list, a pixel limit against
decompression bombs, EXIF orientation, any mode to L or RGB. The collected set is capped at
``settings.MAX_DECODED_BYTES``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import VAEError
from ..settings import MAX_DECODED_BYTES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

MAX_NATIVE_SIDE = 256                     # larger images are fitted to DEFAULT_SIZE unless a size is asked
DEFAULT_SIZE = 64


class ImageCollector:
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

        from ..images import decode_image

        img = decode_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS)   # L or RGB
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
