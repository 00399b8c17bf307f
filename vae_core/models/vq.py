"""VQ-VAE (van den Oord et al., 2017): a conv encoder, a codebook, and a straight-through estimator."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import brief
from ..errors import VAEError
from ..kernels import Conv
from .base import ModelConfig, Posterior, VAEBase, _gen_device, _positive
from .conv import SUPPORTED_SIZES, conv_decoder, conv_encoder, transposed_values


@dataclasses.dataclass(frozen=True)
class VQConfig(ModelConfig):
    """latent_dim is the size of each code vector; the latent is a (latent_dim, h, w) grid of them."""

    model_type: ClassVar[str] = "vq"
    latent_dim: int = 16
    channels: tuple[int, ...] = (32, 64)
    codebook_size: int = 64
    commitment: float = 0.25

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        c, h, w = self.in_shape
        if h != w or h not in SUPPORTED_SIZES:
            raise VAEError(f"{name} needs square images of {SUPPORTED_SIZES} pixels, got {brief(h)}x{brief(w)}.")
        if not 1 <= len(self.channels) <= 4 or h % (2 ** len(self.channels)):
            raise VAEError(f"{name}.channels must list 1 to 4 layers that halve {h} evenly.")
        for ch in self.channels:
            _positive(name, "channels", ch, 2048)
        _positive(name, "codebook_size", self.codebook_size)
        if self.commitment < 0:
            raise VAEError(f"{name}.commitment must be non-negative.")

    @property
    def grid(self) -> int:
        return self.in_shape[1] // 2 ** len(self.channels)

    def estimated_params(self) -> int:
        chans = [self.in_shape[0], *self.channels, self.latent_dim]
        return 2 * sum(a * b * 16 + b for a, b in zip(chans[:-1], chans[1:])) + self.codebook_size * self.latent_dim

    def decode_values(self) -> int:
        return max(self.latent_dim * self.grid ** 2, transposed_values(self.channels, self.in_shape))


def codebook_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the code frequencies: how many codes are in effective use (1 to K)."""
    probs = counts / counts.sum()
    return torch.exp(-(probs * torch.log(probs + 1e-10)).sum())


class VQVAE(VAEBase):
    def __init__(self, config: VQConfig):
        super().__init__(config)
        c = config.in_shape[0]
        self.encoder = nn.Sequential(conv_encoder([c, *config.channels]),
                                     Conv(config.channels[-1], config.latent_dim, 1))
        self.decoder = nn.Sequential(Conv(config.latent_dim, config.channels[-1], 1), nn.ReLU(),
                                     conv_decoder([*reversed(config.channels), c]))
        self.codebook = nn.Embedding(config.codebook_size, config.latent_dim)
        self.codebook.weight.data.uniform_(-1.0 / config.codebook_size, 1.0 / config.codebook_size)
        # How often each code is used on the training data; sampling draws codes from it.
        self.register_buffer("code_usage", torch.full((config.codebook_size,), 1.0 / config.codebook_size))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        g = self.config.grid
        return (self.config.latent_dim, g, g)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        return Posterior(self.encoder(x), None)               # z_e: (B, D, h, w), a point mass

    def codes(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector at every position: (B, h, w)."""
        flat = z_e.movedim(1, -1).reshape(-1, z_e.shape[1])   # (B*h*w, D)
        e = self.codebook.weight
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]
        return d.argmin(1).view(z_e.shape[0], *z_e.shape[2:])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return self.codebook(idx).movedim(-1, 1)               # (B, D, h, w)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.codes(z_e)
        return self.lookup(idx), idx

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, quantize: bool = True) -> torch.Tensor:
        lead = z.shape[:-3]
        z = z.reshape(-1, *z.shape[-3:])
        if quantize:
            z_q, _ = self.quantize(z)
            z = z + (z_q - z).detach()                          # straight-through estimator
        out = self.decoder(z)
        return out.view(*lead, *out.shape[1:])

    def extra_loss(self, post: Posterior) -> dict[str, torch.Tensor]:
        z_e = post.mu
        z_q, idx = self.quantize(z_e)
        codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").flatten(1).sum(1)
        commitment = F.mse_loss(z_e, z_q.detach(), reduction="none").flatten(1).sum(1)
        counts = torch.bincount(idx.flatten(), minlength=self.config.codebook_size).float()
        return {"codebook": codebook, "commitment": self.config.commitment * commitment,
                "_counts": counts, "perplexity": codebook_perplexity(counts).detach(),
                "codebook_usage": (counts > 0).float().mean().detach()}

    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Codes drawn independently per position from the training code frequencies.

        A VQ-VAE has no continuous prior; without a learned autoregressive prior, this is the
        honest choice: samples show the code vocabulary, not coherent digits. Temperature
        flattens (>1) or sharpens (<1) the frequency distribution.
        """
        g = self.config.grid
        probs = self.code_usage.clamp_min(1e-8).pow(1.0 / max(temperature, 1e-3))
        dev = _gen_device(generator, self.device)
        idx = torch.multinomial(probs.to(dev), n * g * g, replacement=True, generator=generator)
        return self.lookup(idx.view(n, g, g).to(self.device))
