"""Convolutional VAE for 1- or 3-channel square images of 28, 32 or 64 pixels."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn as nn

from ..config import brief
from ..errors import VAEError
from .base import ModelConfig, Posterior, VAEBase, _positive
from .kernels import Conv, ConvT, Dense

SUPPORTED_SIZES = (28, 32, 64)


@dataclasses.dataclass(frozen=True)
class ConvConfig(ModelConfig):
    """Each entry of ``channels`` is a stride-2 conv layer, so the image shrinks by 2 per entry."""

    model_type: ClassVar[str] = "conv"
    channels: tuple[int, ...] = (32, 64)
    fc_dim: int = 256

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        c, h, w = self.in_shape
        if h != w or h not in SUPPORTED_SIZES:
            raise VAEError(f"{name} needs square images of {SUPPORTED_SIZES} pixels, got {brief(h)}x{brief(w)}; "
                           "resize the dataset (--image-size 28) or use the mlp model.")
        if not 1 <= len(self.channels) <= 4:
            raise VAEError(f"{name}.channels must list 1 to 4 layers, got {brief(list(self.channels))}.")
        if h % (2 ** len(self.channels)):
            raise VAEError(f"{name}: {h}-pixel images cannot be halved {len(self.channels)} times; "
                           "use fewer channels entries.")
        for ch in self.channels:
            _positive(name, "channels", ch, 2048)
        _positive(name, "fc_dim", self.fc_dim)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        s = self.in_shape[1] // 2 ** len(self.channels)
        return (self.channels[-1], s, s)

    def decode_values(self) -> int:
        return max(self.fc_dim, transposed_values(self.channels, self.in_shape))


def transposed_values(channels: tuple[int, ...], in_shape: tuple[int, ...]) -> int:
    """The widest output of ``conv_decoder`` for one image: each layer doubles the side."""
    c, h, _ = in_shape
    side = h // 2 ** len(channels)
    outs = [*reversed(channels), c]                   # the feature map, then each layer's output
    return max(ch * (side * 2 ** i) ** 2 for i, ch in enumerate(outs))


def conv_encoder(chans: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(chans[:-1], chans[1:]):
        layers += [Conv(a, b, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def conv_decoder(chans: list[int]) -> nn.Sequential:
    """Mirror of conv_encoder; chans runs from the feature channels to the image channels."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
        layers.append(ConvT(a, b, 4, stride=2, padding=1))
        if i < len(chans) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ConvVAE(VAEBase):
    def __init__(self, config: ConvConfig):
        super().__init__(config)
        c = config.in_shape[0]
        fc, (fch, fh, fw) = config.fc_dim, config.feature_shape
        flat = fch * fh * fw
        self.encoder = nn.Sequential(
            conv_encoder([c, *config.channels]), nn.Flatten(),                 # (B, flat)
            Dense(flat, fc), nn.ReLU(), Dense(fc, 2 * config.latent_dim))
        self.decoder_fc = nn.Sequential(Dense(config.latent_dim, fc), nn.ReLU(), Dense(fc, flat), nn.ReLU())
        self.decoder = conv_decoder([*reversed(config.channels), c])

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return Posterior(mu, logvar)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        lead = z.shape[:-1]                                    # (B,) or (k, B)
        h = self.decoder_fc(z.reshape(-1, z.shape[-1])).view(-1, *self.config.feature_shape)
        out = self.decoder(h)                                  # (N, C, H, W)
        return out.view(*lead, *out.shape[1:])
