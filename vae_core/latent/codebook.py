"""The codebook explorer: how a VQ-VAE uses its codes, what each code draws, and decoding an edited code grid.

A VQ-VAE's latent is a grid of code indices (7 x 7 for MNIST); each index picks one codebook
vector. Here the grid is read, edited and decoded as indices, and each code's own contribution
is shown as the patch it decodes to on a background of the most used code.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import ImageSet
from ..errors import VAEError
from ..models import VAEBase
from ..models.vq import VQVAE, codebook_perplexity
from .explore import decode


def is_vq(model: VAEBase) -> bool:
    return model.as_codebook() is not None


def has_code_prior(model: VAEBase) -> bool:
    return model.learned_prior() is not None


def _require(model: VAEBase) -> VQVAE:
    vq = model.as_codebook()
    if vq is None:
        raise VAEError("The codebook explorer needs a VQ-VAE (e.g. mnist-vq); pick one in the sidebar.")
    return vq


@torch.inference_mode()
def image_codes(model: VAEBase, x: torch.Tensor) -> torch.Tensor:
    """The code grid of images (B, C, H, W) in [0, 1]: (B, grid, grid) long, on the CPU."""
    m = _require(model)
    if tuple(x.shape[1:]) != tuple(m.config.in_shape):
        raise VAEError(f"The model expects images of shape {list(m.config.in_shape)}, got {list(x.shape[1:])}.")
    return m.codes(m.encode(x.to(m.device, torch.float32)).mu).cpu()


@torch.inference_mode()
def codebook_usage(model: VAEBase, data: ImageSet, n: int = 1000, seed: int = 0) -> dict:
    """How often each code is used on n images of ``data``: frequencies (K,), the share of codes used,
    their perplexity (the number of codes in effective use), and the most used code."""
    m = _require(model)
    sub, _ = data.seeded_subset(n, seed)
    counts = torch.zeros(m.config.codebook_size, dtype=torch.float64)
    for x, _ in sub.batches(500, m.device):
        counts += torch.bincount(m.codes(m.encode(x).mu).flatten().cpu(), minlength=len(counts)).double()
    freq = (counts / counts.sum()).numpy()
    return {"frequencies": freq, "usage": float((counts > 0).double().mean()),
            "perplexity": float(codebook_perplexity(counts)), "most_used": int(np.argmax(freq)),
            "n_images": len(sub)}


@torch.inference_mode()
def decode_codes(model: VAEBase, codes) -> torch.Tensor:
    """Decode code grids (grid, grid) or (B, grid, grid) of indices into images (B, C, H, W) in [0, 1]."""
    m = _require(model)
    idx = torch.as_tensor(codes, dtype=torch.long)
    if idx.dim() == 2:
        idx = idx[None]
    g, K = m.config.grid, m.config.codebook_size
    if tuple(idx.shape[1:]) != (g, g):
        raise VAEError(f"This model's code grid is {g}x{g}; got {list(idx.shape[1:])}.")
    if idx.numel() and (idx.min() < 0 or idx.max() >= K):
        raise VAEError(f"Codes must be between 0 and {K - 1}.")
    return decode(m, m.lookup(idx.to(m.device)), None)


def edit_code(codes: torch.Tensor, row: int, col: int, code: int, codebook_size: int) -> torch.Tensor:
    """A copy of the grid with the cell (row, col) set to ``code``."""
    g = codes.shape[-1]
    if not (0 <= row < codes.shape[-2] and 0 <= col < g):
        raise VAEError(f"The code grid has rows and columns 0 to {g - 1}; got cell ({row}, {col}).")
    if not 0 <= code < codebook_size:
        raise VAEError(f"Codes must be between 0 and {codebook_size - 1}, got {code}.")
    out = codes.clone()
    out[..., row, col] = code
    return out


@torch.inference_mode()
def code_patches(model: VAEBase, background: int, context: int = 1) -> torch.Tensor:
    """What each code draws: (K, C, p, p) crops. Each is decoded from a grid filled with ``background``
    (the most used code: on MNIST a blank, stroke-free area) with a (2 context + 1)-cell square of the
    code at the centre, and cropped to that square. One cell alone mostly decodes to the background
    (the decoder reads each cell with its neighbours), so the code is repeated to show its texture."""
    m = _require(model)
    g, K = m.config.grid, m.config.codebook_size
    if not 0 <= background < K:
        raise VAEError(f"The background code must be between 0 and {K - 1}, got {background}.")
    idx = torch.full((K, g, g), background, dtype=torch.long)
    c = g // 2
    lo_c, hi_c = max(0, c - context), min(g, c + context + 1)
    idx[:, lo_c:hi_c, lo_c:hi_c] = torch.arange(K)[:, None, None]
    x = decode_codes(m, idx)                                                      # (K, C, H, W)
    cell = x.shape[-1] // g
    return x[..., lo_c * cell:hi_c * cell, lo_c * cell:hi_c * cell]


__all__ = ["code_patches", "codebook_usage", "decode_codes", "edit_code", "has_code_prior", "image_codes", "is_vq"]
