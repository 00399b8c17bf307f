"""Weights files checked before they are read: a safetensors header against the model it should fill, every
value finite, and an optimizer's state as tensors and JSON (never a pickle).

The header is read without reading a tensor, and checked key by key, shape by shape, dtype by dtype against the
model (which may live on the meta device), so a mismatched or oversized file is refused before anything is
allocated.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import VAEError
from ..models import VAEBase
from ..settings import MAX_HEADER_BYTES, MAX_WEIGHTS_BYTES

# Weights in these files are Python pickles: loading refuses them (unpickling can run any code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")


_DTYPES = MappingProxyType({"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
                           "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool})


def read_header(weights: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, safetensors dtype)} from a safetensors file's header, without reading a tensor."""
    weights = Path(weights)
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{weights} is larger than {MAX_WEIGHTS_BYTES >> 30} GiB; refusing to load it.")
    try:
        with open(weights, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"a header of {n:,} bytes in a file of {size:,}")
            header = json.loads(fh.read(n))
        out = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape, dtype = tuple(int(d) for d in entry["shape"]), str(entry["dtype"])
            out[name] = (shape, dtype)
        return out
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError, struct.error) as e:
        raise VAEError(f"{weights} is corrupt or truncated ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                       "re-download it or use an earlier checkpoint.") from None


def check_header(weights: Path, model: torch.nn.Module, config_name: str = "config.json") -> None:
    """Every key, shape and dtype of the file's header against ``model`` (which may live on the meta
    device: nothing is allocated), so a mismatched or oversized file is refused before it is read.
    A VAE is checked on the weights model.safetensors holds (``vae_state_dict``: a VQ-VAE's code prior
    has its own file, checked against ``config_name`` prior_config.json)."""
    header = read_header(weights)
    expected = model.vae_state_dict() if isinstance(model, VAEBase) else model.state_dict()
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise VAEError(f"{weights} does not match its {config_name}: missing {missing[:5]}, "
                       f"unexpected {[n[:60] for n in unexpected[:5]]}.")
    for k, (shape, dtype) in header.items():
        if shape != tuple(expected[k].shape):
            raise VAEError(f"{weights}: {k} has shape {list(shape)[:8]} but the config needs {list(expected[k].shape)}.")
        if _DTYPES.get(dtype) != expected[k].dtype:
            raise VAEError(f"{weights}: {k} is {_DTYPES.get(dtype, dtype)} but the model needs {expected[k].dtype}.")


def finite_state(weights: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (its header already checked), refusing a corrupt file or a NaN/Inf value."""
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VAEError(f"{weights} is corrupt or truncated ({str(e).splitlines()[0]}); "
                       "re-download it or use an earlier checkpoint.") from None
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise VAEError(f"{weights}: {k} holds NaN or Inf values; this checkpoint is broken.")
    return state


# ---------------------------------------------------------------------------------------------
# Optimizer state without pickle: tensors to safetensors, the rest to JSON.


def optimizer_to_files(opt) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{name}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
