"""ImageSet, the one container every source yields, and what every consumer does with one:
fixed splits, seeded subsets, batches for a model, and fitting the images to a size."""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import VAEError
from .packed import PackedImages

Split = Literal["train", "test", "all"]
Progress = Callable[[int, int], None]     # progress(done, total); raise from it to stop the work
SPLIT_SEED = 1234          # fixed, so every run and every user sees the same split
TEST_FRACTION = 0.2
RESIZE_CHUNK_BYTES = 32 * 2 ** 20   # float temporaries of one step of a resize: its peak above the result


@dataclasses.dataclass
class ImageSet:
    images: torch.Tensor | PackedImages     # uint8 (N, C, H, W); binary sets (dSprites) kept a bit a pixel
    labels: torch.Tensor | None = None      # int64 (N,)
    factors: torch.Tensor | None = None     # (N, F) ground-truth factor values, where known
    factor_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    name: str = ""
    warnings: tuple[str, ...] = ()          # what the loader skipped or changed, one line each
    binarization: int | None = None         # the seed of the fixed binarization these images are (data.binarize)

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

    def seeded_subset(self, n: int, seed: int) -> tuple["ImageSet", torch.Tensor]:
        """A fixed random subset of at most ``n`` images (datasets may be sorted by class), and its indices."""
        idx = seeded_indices(len(self), n, seed)
        return (self if len(idx) == len(self) else self.subset(idx)), idx

    def labelled_subset(self, per_class: int, seed: int) -> tuple["ImageSet", torch.Tensor]:
        """``per_class`` images of every class, drawn with ``seed`` (see ``class_balanced_indices``), and their indices."""
        if self.labels is None:
            raise VAEError(f"{self.name or 'This dataset'} has no labels, so there are no classes to draw from.")
        idx = class_balanced_indices(self.labels, per_class, seed)
        return self.subset(idx), idx

    def float_images(self, device=None) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.to(device).float().div_(255.0)

    def batches(self, batch_size: int, device=None, with_labels: bool = False,
                limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(x, y) batches in order: x float32 in [0, 1] on ``device``, y the labels when ``with_labels``
        (a conditional model needs them: a set without labels is refused), else None."""
        if with_labels and self.labels is None:
            raise VAEError(f"This conditional model needs class labels, and {self.name or 'the dataset'} has none; "
                           "pick a labelled dataset.")
        n = len(self) if limit is None else min(len(self), limit)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            x = self.images[start:stop].to(device).float().div_(255.0)
            y = self.labels[start:stop].to(device) if with_labels else None
            yield x, y


def seeded_indices(total: int, n: int, seed: int) -> torch.Tensor:
    """``min(n, total)`` distinct indices below ``total``, drawn with ``seed``, sorted; all of them when n >= total."""
    if n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def class_balanced_indices(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """The first ``per_class`` images of every class in one seeded random order, sorted: a fixed, class-balanced
    labelled subset (the same ``seed`` always picks the same images; a larger ``per_class`` extends the smaller set)."""
    if per_class < 1:
        raise VAEError(f"The number of labels per class must be at least 1, got {per_class}.")
    labels = labels.cpu()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = []
    for c in torch.unique(labels).tolist():
        of_class = order[labels[order] == c]
        if len(of_class) < per_class:
            raise VAEError(f"Class {c} has only {len(of_class)} images, fewer than the {per_class} labels per class "
                           "asked for; ask for fewer.")
        picked.append(of_class[:per_class])
    return torch.cat(picked).sort().values


def split_indices(n: int, split: Split) -> np.ndarray:
    """The fixed, seeded split of n images: 20% test, the rest train; ``all`` is every index."""
    if split == "all":
        return np.arange(n)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = int(round(n * TEST_FRACTION))
    return np.sort(perm[:n_test] if split == "test" else perm[n_test:])


def take_split(full: ImageSet, split: Split) -> ImageSet:
    """One split of a whole set; ``all`` is the set itself, not a copy."""
    check_split(split)
    return full if split == "all" else full.subset(split_indices(len(full), split))


def check_split(split: str) -> None:
    if split not in ("train", "test", "all"):
        raise VAEError(f"Unknown split {split!r}; choose train, test or all.")


def conform(data: ImageSet, image_size: int = 0, channels: int = 0) -> ImageSet:
    """Resize to a square ``image_size`` and convert grey <-> RGB; the same set when nothing changes.

    Streamed: the result is allocated once and filled a few images at a time, so the work's peak is the
    result plus ``RESIZE_CHUNK_BYTES`` of temporaries (whole-set float copies and a list of chunks joined at
    the end took about ten times the result)."""
    images = data.images
    n, (c, h, w) = len(images), tuple(images.shape[1:])
    out_c = channels or c
    if out_c != c and (c, out_c) not in ((1, 3), (3, 1)):
        raise VAEError(f"Cannot convert {c}-channel images to {channels} channels.")
    size = (image_size, image_size) if image_size else (h, w)
    if (out_c, *size) == (c, h, w):
        return data
    out = torch.empty((n, out_c, *size), dtype=torch.uint8)
    step = max(1, RESIZE_CHUNK_BYTES // (4 * 2 * (c * h * w + out_c * size[0] * size[1])))
    for start in range(0, n, step):
        chunk = images[start:start + step]                          # (b, c, h, w) uint8
        if (c, out_c) == (3, 1):
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            chunk = (chunk.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        if size != (h, w):
            chunk = F.interpolate(chunk.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
            chunk = chunk.round().clamp(0, 255).to(torch.uint8)
        out[start:start + step] = chunk                             # grey to RGB: broadcast over the channels
    return dataclasses.replace(data, images=out)
