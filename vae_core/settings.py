"""Where vae_core keeps files, and the size limits it holds every input to: one place for both.

Caches (decoded datasets, the dSprites grid, feature classifiers) live under ``cache_dir()``:
``$VAE_CACHE_DIR``, else ``~/.cache/vae-latent-explorer``. The shipped checkpoints are found
beside the package after ``pip install .`` (package data) and in the source tree's
``checkpoints/`` when run from a checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# Bytes of one model's weight files (a checkpoint folder, a Hub repo's files, a pickle to convert).
MAX_WEIGHTS_BYTES = 2 * 1024 ** 3
# One encoded image read from a folder or a Hub dataset row; an upload has its own, smaller limit.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
# Pixels of one decoded image, checked from its header before decoding (decompression bombs).
MAX_IMAGE_PIXELS = 4096 * 4096
# An uploaded image file (Streamlit's server.maxUploadSize is set to match).
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# A whole decoded dataset, as uint8.
MAX_DECODED_BYTES = 4 * 1024 ** 3
# Images read from a folder or a Hub dataset unless max_images says otherwise.
DEFAULT_MAX_IMAGES = 60_000


def cache_dir() -> Path:
    """The cache folder: ``$VAE_CACHE_DIR``, else ``~/.cache/vae-latent-explorer``."""
    return Path(os.environ.get("VAE_CACHE_DIR") or Path.home() / ".cache" / "vae-latent-explorer").expanduser()


def checkpoints_dir() -> Path:
    """The shipped checkpoints: installed as the package data ``vae_core/checkpoints`` (pyproject.toml
    maps the source tree's top-level ``checkpoints/`` there), or that folder itself in a checkout."""
    installed = PACKAGE_DIR / "checkpoints"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "checkpoints"
