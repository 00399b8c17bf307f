"""An autoregressive prior over a VQ-VAE's code grid: a small causal transformer (nanoGPT's shape).

Why a transformer and not a gated PixelCNN: the grid is small (7 x 7 = 49 codes for MNIST), so
attention over every earlier position costs nothing, and one masked attention layer already sees
the whole raster-order past. A PixelCNN needs a stack about as deep as the grid to reach the far
corner, and its vertical/horizontal two-stack design to avoid the blind spot of masked
convolutions. Causality here is one flag (``is_causal``), and the tests check it.

Codes are read in raster order (row by row); position t predicts code t from codes < t, the
first from a start token. ``log_prob`` is the exact log-likelihood of a grid, in nats.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import from_dict, to_dict
from ..errors import VAEError
from .base import _positive, parameter_count

MAX_PRIOR_PARAMS = 50_000_000


@dataclasses.dataclass(frozen=True)
class CodePriorConfig:
    """The prior's architecture; it is saved as prior_config.json beside the VQ-VAE's config.json."""

    prior_type: ClassVar[str] = "transformer"
    codebook_size: int = 64
    grid: int = 7                   # the code grid is grid x grid
    width: int = 128                # embedding size
    layers: int = 4
    heads: int = 4
    dropout: float = 0.1            # on attention and residual paths, in training only

    @classmethod
    def from_dict(cls, d: dict) -> "CodePriorConfig":
        if not isinstance(d, dict) or d.get("prior_type") != cls.prior_type:
            raise VAEError(f"A code prior config must have prior_type {cls.prior_type!r}; "
                           f"got {d.get('prior_type') if isinstance(d, dict) else type(d).__name__!r}.")
        return from_dict(cls, d, ignore=("prior_type",))

    def to_dict(self) -> dict:
        return {"prior_type": self.prior_type, **to_dict(self)}

    @property
    def positions(self) -> int:
        return self.grid * self.grid

    def validate(self) -> None:
        name = type(self).__name__
        _positive(name, "codebook_size", self.codebook_size)
        _positive(name, "grid", self.grid, 64)
        _positive(name, "width", self.width, 4096)
        _positive(name, "layers", self.layers, 48)
        _positive(name, "heads", self.heads, 64)
        if self.width % self.heads:
            raise VAEError(f"{name}.width ({self.width}) must be a multiple of heads ({self.heads}).")
        if not 0 <= self.dropout < 1:
            raise VAEError(f"{name}.dropout must be in [0, 1), got {self.dropout}.")
        n = parameter_count(lambda: CodeTransformer(self, validated=True))
        if n > MAX_PRIOR_PARAMS:
            raise VAEError(f"This code prior would have {n:,} parameters "
                           f"(limit {MAX_PRIOR_PARAMS:,}); use a smaller width or fewer layers.")


class SelfAttention(nn.Module):
    def __init__(self, cfg: CodePriorConfig):
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, W = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)   # (B, heads, T, w)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(out.transpose(1, 2).reshape(B, T, W)))


class Block(nn.Module):
    def __init__(self, cfg: CodePriorConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.attn = SelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(), nn.Linear(4 * cfg.width, cfg.width),
                                 nn.Dropout(cfg.dropout))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class CodeTransformer(nn.Module):
    """p(codes) = prod_t p(c_t | c_<t) over the raster-ordered code grid."""

    def __init__(self, config: CodePriorConfig, validated: bool = False):
        super().__init__()
        if not validated:
            config.validate()
        self.config = config
        K, W = config.codebook_size, config.width
        # The embeddings' first values are given, so on the meta device (the parameter count) no normal_ runs:
        # there it goes through Python references that import torch's compiler and sympy. Elsewhere the same
        # normal draws are made first, so a seeded run's random stream is what it was.
        meta = torch.get_default_device().type == "meta"
        first = (lambda *shape: torch.empty(*shape)) if meta else (lambda *shape: torch.randn(*shape))
        self.tok = nn.Embedding(K + 1, W, _weight=first(K + 1, W))     # code K is the start token
        self.pos = nn.Embedding(config.positions, W, _weight=first(config.positions, W))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln = nn.LayerNorm(W)
        self.head = nn.Linear(W, K)
        for name, p in self.named_parameters():                 # GPT-2's initialisation
            if meta:
                break
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * config.layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, grid, grid) or (B, T) long codes -> (B, T), refusing a wrong shape or an out-of-range code."""
        T, K = self.config.positions, self.config.codebook_size
        flat = codes.reshape(codes.shape[0], -1) if codes.dim() > 1 else codes[None]
        if flat.shape[1] != T:
            raise VAEError(f"The code prior reads {self.config.grid}x{self.config.grid} grids ({T} codes); "
                           f"got {list(codes.shape[1:])}.")
        if flat.numel() and (flat.min() < 0 or flat.max() >= K):
            raise VAEError(f"Codes must be in 0..{K - 1}.")
        return flat.long()

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits (B, t, K) of each position given the codes before it; codes (B, t) with t <= T."""
        B, t = codes.shape
        start = torch.full((B, 1), self.config.codebook_size, dtype=torch.long, device=codes.device)
        inp = torch.cat([start, codes[:, :-1]], 1)             # shifted right: position i sees codes < i
        h = self.drop(self.tok(inp) + self.pos(torch.arange(t, device=codes.device)))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(codes) per grid, in nats: (B,)."""
        flat = self.check_codes(codes)
        logp = F.log_softmax(self.forward(flat).float(), -1)
        return logp.gather(-1, flat[..., None]).squeeze(-1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               top_k: int = 0) -> torch.Tensor:
        """n grids (n, grid, grid), one code at a time; logits divided by ``temperature``, and only the
        ``top_k`` most likely codes kept at each step (0: all)."""
        if not temperature > 0:
            raise VAEError(f"The prior's temperature must be positive, got {temperature}.")
        K = self.config.codebook_size
        if not 0 <= top_k <= K:
            raise VAEError(f"top-k must be between 0 (all codes) and {K}, got {top_k}.")
        dev = next(self.parameters()).device
        codes = torch.zeros((n, 0), dtype=torch.long, device=dev)
        for _ in range(self.config.positions):
            step = torch.cat([codes, codes.new_zeros(n, 1)], 1)  # a placeholder where the next code goes
            logits = self.forward(step)[:, -1].float() / temperature
            if top_k:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, -1)
            gen_dev = generator.device if generator is not None else dev
            nxt = torch.multinomial(probs.to(gen_dev), 1, generator=generator).to(dev)
            codes = torch.cat([codes, nxt], 1)
        return codes.view(n, self.config.grid, self.config.grid)


def frequency_log_prob(codes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The independent-frequency baseline: log p(codes) with every position drawn from the code frequencies
    ``counts`` (add-one smoothed, so an unseen code is unlikely, not impossible). (B,) nats."""
    probs = (counts.double() + 1) / (counts.double().sum() + counts.numel())
    return probs.log()[codes.reshape(codes.shape[0], -1).long()].sum(1).float()


__all__ = ["CodePriorConfig", "CodeTransformer", "frequency_log_prob"]
