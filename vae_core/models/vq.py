"""VQ-VAE (van den Oord et al., 2017): a conv encoder, a codebook, and a straight-through estimator."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TrainConfig, brief
from ..errors import VAEError
from .base import ModelConfig, Posterior, VAEBase, _gen_device, _positive
from .conv import SUPPORTED_SIZES, conv_decoder, conv_encoder, transposed_values
from .kernels import Conv
from .vq_prior import CodeTransformer


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

    def decode_values(self) -> int:
        return max(self.latent_dim * self.grid ** 2, transposed_values(self.channels, self.in_shape))

    def check_training(self, train: TrainConfig) -> None:
        super().check_training(train)
        if train.objective != "elbo":
            raise VAEError(f"The VQ-VAE trains with its own objective; objective={train.objective!r} does not apply.")


@dataclasses.dataclass(frozen=True)
class CodebookLoss:
    """The VQ-VAE's own loss terms for a batch, and the code use its codebook's upkeep needs."""

    codebook: torch.Tensor        # (B,) ||sg[z_e] - z_q||^2: moves the codes toward the encoder outputs
    commitment: torch.Tensor      # (B,) commitment * ||z_e - sg[z_q]||^2: keeps the encoder near its codes
    counts: torch.Tensor          # (K,) how often each code was picked in the batch

    def usage(self) -> torch.Tensor:
        """The share of codes picked at least once in the batch."""
        return (self.counts > 0).float().mean()

    def perplexity(self) -> torch.Tensor:
        return codebook_perplexity(self.counts)


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
        # The codebook's first values are given, so Embedding never runs its normal_ init: on the meta device
        # (loading's shape probe) normal_ and randn go through Python references that import torch's compiler
        # package and sympy, 800 modules and 60 MB the server would keep for as long as it runs. Elsewhere the
        # same normal draws are made first, so a seeded run's random stream is what it was.
        k, d = config.codebook_size, config.latent_dim
        first = torch.empty(k, d) if torch.get_default_device().type == "meta" else torch.randn(k, d)
        self.codebook = nn.Embedding(k, d, _weight=first.uniform_(-1 / k, 1 / k))
        # How often each code is used on the training data; sampling draws codes from it.
        self.register_buffer("code_usage", torch.full((config.codebook_size,), 1.0 / config.codebook_size))
        # An autoregressive prior over the code grid, trained after the VQ-VAE (train-prior) and
        # saved in its own files: attach_prior sets it, and sampling and evaluation then use it.
        self.code_prior: CodeTransformer | None = None

    def as_codebook(self) -> VQVAE:
        return self

    def learned_prior(self) -> CodeTransformer | None:
        return self.code_prior

    def attach_prior(self, prior: CodeTransformer | None) -> None:
        """Use ``prior`` for sampling and likelihoods (None: back to independent code frequencies)."""
        if prior is not None:
            pc = prior.config
            if (pc.codebook_size, pc.grid) != (self.config.codebook_size, self.config.grid):
                raise VAEError(f"This code prior models {pc.grid}x{pc.grid} grids of {pc.codebook_size} codes, but the "
                               f"VQ-VAE has {self.config.grid}x{self.config.grid} grids of {self.config.codebook_size}; "
                               "train a prior for this model (python -m vae_core train-prior RUN).")
            prior = prior.to(self.codebook.weight.device).train(self.training)
        self.code_prior = prior

    def vae_state_dict(self) -> dict[str, torch.Tensor]:
        """The VQ-VAE's own weights, without an attached code prior's (which live in their own file)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("code_prior.")}

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

    def codebook_loss(self, z_e: torch.Tensor) -> CodebookLoss:
        """The codebook and commitment losses of encoder outputs ``z_e`` (B, D, h, w), with the batch's code use."""
        z_q, idx = self.quantize(z_e)
        codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").flatten(1).sum(1)
        commitment = F.mse_loss(z_e, z_q.detach(), reduction="none").flatten(1).sum(1)
        counts = torch.bincount(idx.flatten(), minlength=self.config.codebook_size).float()
        return CodebookLoss(codebook, self.config.commitment * commitment, counts)

    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
                     top_k: int = 0) -> torch.Tensor:
        """With a learned code prior (python -m vae_core train-prior), code grids are drawn from it one
        code at a time in raster order, each given the codes before it, so the samples are coherent
        images. Without one, each position's code is drawn independently from the training code
        frequencies: the samples then show the code vocabulary, textures rather than coherent images.
        Temperature divides the log-probabilities (below 1: sharper, above 1: flatter); top-k keeps
        only the k most likely codes at each draw (0: all).
        """
        g = self.config.grid
        if self.code_prior is not None:
            return self.lookup(self.code_prior.sample(n, generator, temperature, top_k))
        if not 0 <= top_k <= self.config.codebook_size:
            raise VAEError(f"top-k must be between 0 (all codes) and {self.config.codebook_size}, got {top_k}.")
        probs = self.code_usage.clamp_min(1e-8).pow(1.0 / max(temperature, 1e-3))
        if top_k:
            probs = probs * (probs >= probs.topk(top_k).values[-1])
        dev = _gen_device(generator, self.device)
        idx = torch.multinomial(probs.to(dev), n * g * g, replacement=True, generator=generator)
        return self.lookup(idx.view(n, g, g).to(self.device))

    @torch.no_grad()
    def restart_dead_codes(self, counts: torch.Tensor, z_e: torch.Tensor, generator: torch.Generator) -> int:
        """Re-initialise every code unused in ``counts`` to an encoder output drawn at random from ``z_e``
        (B, D, h, w), the current batch: the random restart of Dhariwal et al. (2020, Jukebox).
        A dead code gets no gradient, so without this it stays dead; placed on the data, it is used
        at once. Returns how many codes were restarted."""
        dead = (counts == 0).nonzero().flatten()
        if len(dead) == 0:
            return 0
        flat = z_e.movedim(1, -1).reshape(-1, z_e.shape[1])               # (B*h*w, D)
        pick = torch.randint(len(flat), (len(dead),), generator=generator, device=generator.device).to(flat.device)
        self.codebook.weight[dead.to(flat.device)] = flat[pick].to(self.codebook.weight.dtype)
        return len(dead)
