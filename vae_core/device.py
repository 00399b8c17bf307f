"""Device choice: CUDA, then MPS, then CPU, unless the user names one."""
from __future__ import annotations

import torch

from .errors import VAEError


def pick_device(name: str | torch.device | None = None) -> torch.device:
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VAEError(f"Device {name!r} was asked for but CUDA is not available here; use --device cpu or auto.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VAEError(f"Device {name!r} was asked for but MPS is not available here; use --device cpu or auto.")
    return dev
