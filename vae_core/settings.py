"""Where vae_core keeps files, and the size limits it holds every input to: one place for both.

Caches (decoded datasets, the dSprites grid, feature classifiers) live under ``cache_dir()``:
``$VAE_CACHE_DIR``, else ``~/.cache/vae-latent-explorer``. The shipped checkpoints are found
beside the package after ``pip install .`` (package data) and in the source tree's
``checkpoints/`` when run from a checkout.
"""
from __future__ import annotations

import dataclasses
import math
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
# A JSON file of a model folder (config.json, model_index.json, trainer_state.json, ...), checked
# before it is read: a hostile repo's 1 GB "config" is refused, not parsed.
MAX_JSON_BYTES = 16 * 1024 * 1024
# The JSON header at the start of a safetensors file (the list of its tensors).
MAX_HEADER_BYTES = 16 * 1024 * 1024
# Seconds one Hub request (a file's metadata, a repo's file list) may wait for the server, and a whole fetch.
HUB_REQUEST_TIMEOUT = 10.0
HUB_FETCH_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class LoadPolicy:
    """What opening a model may reach and cost. The default is a local user's; the app's public
    mode (explorer.limits) narrows it for anonymous visitors.

    ``local_paths``: a source may name a folder on this machine (False: shipped names and Hub ids only).
    ``use_token``: Hub reads may send this machine's Hugging Face token (HF_TOKEN or a login).
    ``max_output_pixels``: values (C*H*W) of one decoded image; 0 for no limit.
    ``max_decode_values``: values one image's decode holds at the decoder's widest layer; 0 for no limit.
    ``max_download_bytes``: the files one Hub model may fetch.
    ``max_cache_bytes``: all Hub models kept on disk; the least recently used go first; 0 for no budget.
    ``request_timeout``: seconds one Hub metadata request may wait, given to huggingface_hub per call.
    ``fetch_timeout``: seconds a whole fetch may take before it is given up with a message.

    vae_core reads no environment variable for these: the app (explorer.limits) reads its own settings and
    passes a policy; the library never sets another package's module constants.
    """

    local_paths: bool = True
    use_token: bool = True
    max_output_pixels: int = 0
    max_decode_values: int = 0
    max_download_bytes: int = MAX_WEIGHTS_BYTES
    max_cache_bytes: int = 0
    request_timeout: float = HUB_REQUEST_TIMEOUT
    fetch_timeout: float = HUB_FETCH_TIMEOUT

    def __post_init__(self):
        for name in ("request_timeout", "fetch_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"LoadPolicy.{name} must be a positive number of seconds, got {value!r}.")


def cache_dir() -> Path:
    """The cache folder: ``$VAE_CACHE_DIR``, else ``~/.cache/vae-latent-explorer``."""
    return Path(os.environ.get("VAE_CACHE_DIR") or Path.home() / ".cache" / "vae-latent-explorer").expanduser()


def checkpoints_dir() -> Path:
    """The shipped checkpoints: installed as the package data ``vae_core/checkpoints`` (pyproject.toml
    maps the source tree's top-level ``checkpoints/`` there), or that folder itself in a checkout."""
    installed = PACKAGE_DIR / "checkpoints"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "checkpoints"
