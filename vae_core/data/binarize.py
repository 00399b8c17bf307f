"""Stochastic binarization: grey levels p in [0, 1] become Bernoulli(p) draws, 0 or 1.

The field's binarized-MNIST convention (Salakhutdinov & Murray, 2008; Burda et al., 2016): training images are
redrawn every step ("dynamic binarization", ``bernoulli_draw`` with the run's seeded generator), and the test
images are binarized once, with a fixed seed (``binarized``), so every model is scored on the same binary images.
A Bernoulli likelihood scored on those is a log-likelihood of binary data, comparable in kind to the
literature's; scored on grey levels it is a grey-level cross-entropy (``evaluation.metrics.GREY_LEVEL``).
"""
from __future__ import annotations

import dataclasses

import torch

from ..errors import VAEError
from .imageset import ImageSet

TEST_BINARIZATION_SEED = 0          # the fixed binarization of a test split every reported figure uses
CHUNK_IMAGES_VALUES = 2 ** 22       # uniforms drawn at once: the peak above the uint8 result is 16 MB


def bernoulli_draw(p: torch.Tensor, generator: torch.Generator, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """x_bin ~ Bernoulli(p) elementwise, as p's dtype: one uniform u per value, x_bin = u < p (so p = 0 never
    gives 1 and p = 1 always does). ``rows`` = (offset, total): draw the uniforms of ``total`` rows and keep
    rows offset..offset + len(p), so processes that each hold a slice of a batch draw what one process would."""
    offset, total = rows if rows is not None else (0, p.shape[0])
    u = torch.rand((total, *p.shape[1:]), generator=generator, device=p.device)
    return (u.narrow(0, offset, p.shape[0]) < p).to(p.dtype)


def binarized(images: torch.Tensor, seed: int = TEST_BINARIZATION_SEED) -> torch.Tensor:
    """One fixed stochastic binarization of uint8 images (N, C, H, W): the same ``seed`` gives the same 0/255
    images every time, on every machine (a CPU generator, drawn in image order, a chunk at a time)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise VAEError(f"binarized takes uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}.")
    gen = torch.Generator().manual_seed(seed)
    n, per_image = images.shape[0], max(1, images[0:1].numel())
    out = torch.empty(tuple(images.shape), dtype=torch.uint8)
    step = max(1, CHUNK_IMAGES_VALUES // per_image)
    for start in range(0, n, step):
        p = images[start:start + step].to("cpu").float().div_(255.0)          # (b, C, H, W) in [0, 1]
        out[start:start + step] = bernoulli_draw(p, gen).mul_(255).to(torch.uint8)
    return out


def binarized_set(data: ImageSet, seed: int = TEST_BINARIZATION_SEED) -> ImageSet:
    """``data`` with its images binarized once by ``binarized(images, seed)``; it records the seed, so every
    figure computed on it can say which images it scored."""
    if data.binarization is not None:
        raise VAEError(f"{data.name or 'These images'} are already binarized (seed {data.binarization}).")
    return dataclasses.replace(data, images=binarized(data.images, seed), binarization=seed)
