"""Fully connected VAE (and its conditional form, where a one-hot label joins input and code)."""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from ..config import brief
from ..errors import VAEError
from .base import MAX_WIDTH, ModelConfig, Posterior, VAEBase, _positive, mlp


@dataclasses.dataclass(frozen=True)
class MLPConfig(ModelConfig):
    """The classic 784-400-20 VAE is MLPConfig(hidden_dims=(400,), latent_dim=20)."""

    model_type: ClassVar[str] = "mlp"
    hidden_dims: tuple[int, ...] = (400,)

    def validate(self) -> None:
        super().validate()
        if len(self.hidden_dims) > 16:
            raise VAEError(f"{type(self).__name__}.hidden_dims has {len(self.hidden_dims)} layers; at most 16.")
        for h in self.hidden_dims:
            _positive(type(self).__name__, "hidden_dims", h)

    def decode_values(self) -> int:
        return max(math.prod(self.in_shape), *self.hidden_dims)


@dataclasses.dataclass(frozen=True)
class CVAEConfig(MLPConfig):
    """Conditional VAE: the class label enters the encoder and the decoder."""

    model_type: ClassVar[str] = "cvae"
    conditional: ClassVar[bool] = True
    num_classes: int = 10

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.num_classes <= MAX_WIDTH:
            raise VAEError(f"CVAEConfig.num_classes must be at least 1, got {brief(self.num_classes)}.")


class MLPVAE(VAEBase):
    def __init__(self, config: MLPConfig):
        super().__init__(config)
        d = math.prod(config.in_shape)
        k = config.num_classes
        # One head emits mu and logvar together: a single matmul instead of two.
        self.encoder = mlp([d + k, *config.hidden_dims, 2 * config.latent_dim])
        self.decoder = mlp([config.latent_dim + k, *reversed(config.hidden_dims), d])

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        h = x.flatten(1)                                        # (B, C*H*W)
        c = self.one_hot(y)
        if c is not None:
            h = torch.cat([h, c.to(h.dtype)], 1)
        mu, logvar = self.encoder(h).chunk(2, dim=-1)           # (B, D) each
        return Posterior(mu, logvar)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.one_hot(y)
        if c is not None:
            c = c.to(z.dtype).expand(*z.shape[:-1], c.shape[-1])   # z may be (k, B, D)
            z = torch.cat([z, c], -1)
        out = self.decoder(z)
        return out.view(*z.shape[:-1], *self.config.in_shape)
