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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware, so that bf16 autocast is faster, not emulated.

    CPUs: x86 with AVX512-BF16 or AMX-BF16, Arm with the BF16 extension. CUDA: compute capability 8.0
    (Ampere) and later. MPS: not counted (its bf16 support depends on the macOS version).
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    caps = getattr(torch._C._cpu, "_get_cpu_capability", None)     # private, hence the guard
    if caps is not None:
        c = caps()
        if c.get("avx512_bf16") or c.get("amx_bf16"):
            return True
    try:                                                            # Arm: the "bf16" feature flag
        with open("/proc/cpuinfo") as f:
            return any(line.lower().startswith("features") and " bf16" in line for line in f)
    except OSError:
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes bf16 where the device has native bf16, else fp32; fp32 and bf16 stay as asked."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision
