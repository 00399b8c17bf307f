"""Hierarchical VAE in the top-down design (ladder VAE: Sønderby et al., 2016; NVAE: Vahdat & Kautz, 2020;
VDVAE: Child, 2021), with fully connected ("hvae") or convolutional ("hvae-conv") networks.

A bottom-up deterministic pass computes features at every layer. A top-down pass then visits the
stochastic layers from the top (the most global) down: at each layer the prior p(z_i | z_<i) comes
from the top-down state, and the posterior q(z_i | x, z_<i) from that same state joined with the
bottom-up features of the layer, so it combines what the layers above decided with what the image
shows. Layers are numbered in the order the top-down pass visits them: layer 1 is the top.

The model's latent coordinates are each layer's standardised value e_i = (z_i - mu_p) / std_p. Under
the prior every e_i is N(0, I), whatever the layers above drew, so to every page the model looks like
a flat VAE with an N(0, I) prior over e = [e_1, ..., e_L]: ``decode(e)`` runs the top-down pass with
z_i = mu_p + std_p * e_i; ``prior_sample`` draws e ~ N(0, I), so a temperature scales each layer's
prior std (as in NVAE); a slider moves a unit in prior standard deviations, the layers below keeping
their standardised values. The posterior lives in the same coordinates (NVAE's residual normal):
q(e_i | x, e_<i) = N(mu_i, sigma_i^2), whose KL to N(0, I) equals KL(q(z_i | .) || p(z_i | .)),
since both are moved by the same affine map. ``encode(x)`` gives those parameters along the path of
posterior means; ``draw`` samples every layer, and its KL and log q - log p (what the ELBO and the
IWAE weights need) follow the layers actually drawn.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn as nn

from ..config import TrainConfig
from ..errors import VAEError
from .base import ModelConfig, Posterior, PosteriorDraw, VAEBase, _positive
from .conv import SUPPORTED_SIZES

MAX_LAYERS = 8
MIN_CONV_SIDE = 4          # the convolutional variant halves the image at each layer while the side stays >= this


@dataclasses.dataclass(frozen=True)
class HierarchyConfig(ModelConfig):
    """What both variants share: the stochastic layers. ``latent_dim`` is the total over the layers."""

    latent_dim: int = 0                          # 0: the sum of latent_dims (given, it must equal that sum)
    latent_dims: tuple[int, ...] = (8, 16)       # units per stochastic layer, top (most global) first

    def __post_init__(self):
        if self.latent_dim == 0 and self.latent_dims and all(isinstance(d, int) for d in self.latent_dims):
            object.__setattr__(self, "latent_dim", sum(self.latent_dims))

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    def validate(self) -> None:
        name = type(self).__name__
        if not 1 <= len(self.latent_dims) <= MAX_LAYERS:
            raise VAEError(f"{name}.latent_dims must list 1 to {MAX_LAYERS} layer sizes (top first), "
                           f"got {list(self.latent_dims)}.")
        for d in self.latent_dims:
            _positive(name, "latent_dims", d)
        if self.latent_dim != sum(self.latent_dims):
            raise VAEError(f"{name}.latent_dim is the total over the layers: {sum(self.latent_dims)} for latent_dims "
                           f"{list(self.latent_dims)}, got {self.latent_dim}; leave it out.")
        super().validate()
        if self.num_classes:
            raise VAEError(f"{name} is unconditional; num_classes must be 0.")

    def check_training(self, train: TrainConfig) -> None:
        super().check_training(train)
        if train.objective not in ("elbo", "iwae"):
            raise VAEError(f"A hierarchical VAE trains with objective elbo or iwae; {train.objective!r} assumes one "
                           "N(0, I) prior over a flat code.")


@dataclasses.dataclass(frozen=True)
class HVAEConfig(HierarchyConfig):
    """Fully connected. With one layer, hidden_dims=(400,) and latent_dims=(20,) it is exactly the
    classic 784-400-20 VAE (the same networks, weight for weight)."""

    model_type: ClassVar[str] = "hvae"
    hidden_dims: tuple[int, ...] = (256, 256)    # width of each layer's deterministic features, top first

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if len(self.hidden_dims) != self.num_layers:
            raise VAEError(f"{name}.hidden_dims needs one width per stochastic layer ({self.num_layers}), "
                           f"got {list(self.hidden_dims)}.")
        for h in self.hidden_dims:
            _positive(name, "hidden_dims", h)

@dataclasses.dataclass(frozen=True)
class HVAEConvConfig(HierarchyConfig):
    """Convolutional: one conv block per layer, halving the image while its side stays even and at
    least 4 (28 -> 14 -> 7 -> 7 ...), so the lower layers see finer detail. Each layer's latent is a
    vector read from (and written into) its feature map through ``head_channels`` 1x1 channels."""

    model_type: ClassVar[str] = "hvae-conv"
    channels: tuple[int, ...] = (64, 32)         # feature channels per layer, top first
    head_channels: int = 8

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        c, h, w = self.in_shape
        if h != w or h not in SUPPORTED_SIZES:
            raise VAEError(f"{name} needs square images of {SUPPORTED_SIZES} pixels, got {h}x{w}; "
                           "use the hvae model for other sizes.")
        if len(self.channels) != self.num_layers:
            raise VAEError(f"{name}.channels needs one entry per stochastic layer ({self.num_layers}), "
                           f"got {list(self.channels)}.")
        for ch in self.channels:
            _positive(name, "channels", ch, 2048)
        _positive(name, "head_channels", self.head_channels, 256)

    @property
    def sides(self) -> tuple[int, ...]:
        """The side of each layer's feature map, top first."""
        side, out = self.in_shape[1], []
        for _ in self.channels:
            if side % 2 == 0 and side // 2 >= MIN_CONV_SIDE:
                side //= 2
            out.append(side)
        return tuple(reversed(out))

@dataclasses.dataclass
class LayerDraw:
    """One layer of a top-down pass: its prior and posterior in z coordinates, and its standardised value."""

    prior_mu: torch.Tensor             # (N, D_i)
    prior_logvar: torch.Tensor
    mu: torch.Tensor | None            # posterior N(mu, exp(logvar)) of the standardised e_i; None: generative pass
    logvar: torch.Tensor | None
    e: torch.Tensor                    # the standardised value used, (N, D_i)

    @property
    def z(self) -> torch.Tensor:
        return self.prior_mu + torch.exp(0.5 * self.prior_logvar) * self.e

    @property
    def posterior_z(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance in z coordinates."""
        return self.prior_mu + torch.exp(0.5 * self.prior_logvar) * self.mu, self.prior_logvar + self.logvar


class HierarchicalVAE(VAEBase):
    """The top-down pass, shared by both variants; a variant supplies its networks through five hooks."""

    config: HierarchyConfig

    def as_hierarchy(self) -> HierarchicalVAE:
        return self

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(self.config.latent_dims)

    @property
    def num_layers(self) -> int:
        return len(self.layer_sizes)

    def layer_slices(self) -> list[slice]:
        """Where each layer's units sit in the latent vector, top first."""
        ends = torch.tensor(self.layer_sizes).cumsum(0).tolist()
        return [slice(e - d, e) for e, d in zip(ends, self.layer_sizes)]

    # -- the hooks a variant implements -------------------------------------------------------
    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Deterministic features of every layer, top first."""
        raise NotImplementedError

    def posterior_params(self, j: int, feat: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """(N, 2 D_j): mu and logvar of q(e_j | x, e_<j), from layer j's features and the top-down state."""
        raise NotImplementedError

    def prior_params(self, j: int, state: torch.Tensor) -> torch.Tensor:
        """(N, 2 D_j): mu and logvar of p(z_j | z_<j) from the top-down state (j >= 1; the top's prior is N(0, I))."""
        raise NotImplementedError

    def merge(self, j: int, state: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """The top-down state after layer j, from the state before it and z_j; it is the next layer's state."""
        raise NotImplementedError

    def output(self, state: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output (N, C, H, W) from the state after the bottom layer."""
        raise NotImplementedError

    # -- the top-down pass --------------------------------------------------------------------
    def top_down(self, feats: list[torch.Tensor] | None, noise: torch.Tensor) -> tuple[torch.Tensor, list[LayerDraw]]:
        """Run the top-down pass on N rows; returns the decoder output and every layer's draw.

        feats None: the generative pass, ``noise`` (N, D) holds the standardised values e.
        With feats (one (N, ...) tensor per layer): the posterior pass, each e_j = mu_j + sigma_j * noise_j.
        """
        state, layers = None, []
        for j, eps in enumerate(noise.split(list(self.layer_sizes), dim=-1)):
            if j == 0:
                p_mu = p_logvar = torch.zeros_like(eps)
            else:
                p_mu, p_logvar = self.prior_params(j, state).chunk(2, dim=-1)
            mu = logvar = None
            e = eps
            if feats is not None:
                mu, logvar = self.posterior_params(j, feats[j], state).chunk(2, dim=-1)
                e = mu + torch.exp(0.5 * logvar) * eps
            layer = LayerDraw(p_mu, p_logvar, mu, logvar, e)
            state = self.merge(j, state, layer.z)
            layers.append(layer)
        return self.output(state), layers

    def _posterior_pass(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, list[LayerDraw]]:
        """The posterior pass for noise (*S, B, D): the bottom-up features are computed once and repeated."""
        lead = noise.shape[:-2]
        feats = self.bottom_up(x.reshape(-1, *self.config.in_shape))
        s = math.prod(lead)
        if lead:
            feats = [f.unsqueeze(0).expand(s, *f.shape).reshape(-1, *f.shape[1:]) for f in feats]
        out, layers = self.top_down(feats, noise.reshape(-1, noise.shape[-1]))
        return out.view(*noise.shape[:-1], *out.shape[1:]), layers

    # -- the interface --------------------------------------------------------------------------
    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
                     layer_temperatures=None) -> torch.Tensor:
        """e ~ N(0, I) scaled by ``temperature``, and each layer's part by its own ``layer_temperatures[i]``
        (top first): a layer's temperature scales its prior's standard deviation, as in NVAE."""
        e = super().prior_sample(n, generator, temperature)
        if layer_temperatures is not None:
            if len(layer_temperatures) != self.num_layers:
                raise VAEError(f"This model has {self.num_layers} layers; give one temperature for each, got "
                               f"{len(layer_temperatures)}.")
            scale = torch.cat([torch.full((d,), float(t)) for d, t in zip(self.layer_sizes, layer_temperatures)])
            e = e * scale.to(e.device, e.dtype)
        return e

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        """q(e | x) along the path of posterior means (each layer's e_j at its mean): (B, D) each."""
        _, layers = self._posterior_pass(x, x.new_zeros(x.shape[0], self.config.latent_dim))
        return Posterior(torch.cat([l.mu for l in layers], -1), torch.cat([l.logvar for l in layers], -1))

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        lead = z.shape[:-1]                                      # (B,) or (k, B)
        out, _ = self.top_down(None, z.reshape(-1, z.shape[-1]))
        return out.view(*lead, *out.shape[1:])

    def draw(self, x: torch.Tensor, y: torch.Tensor | None, eps: torch.Tensor | None,
             post: Posterior | None = None) -> PosteriorDraw:
        """Every layer drawn from its posterior given the layers drawn above it (``post`` is not needed:
        the parameters of the lower layers depend on the draw). KL per unit is each layer's closed form
        given the layers above; log q - log p sums over the layers (their Jacobians cancel)."""
        if eps is None:
            eps = x.new_zeros(x.shape[0], self.config.latent_dim)
        out, layers = self._posterior_pass(x, eps)
        shape = eps.shape
        e = torch.cat([l.e for l in layers], -1).view(shape)
        mu = torch.cat([l.mu for l in layers], -1).view(shape)
        logvar = torch.cat([l.logvar for l in layers], -1).view(shape)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
        # log N(e; mu, sigma) - log N(e; 0, 1), with e = mu + sigma * eps
        log_ratio = (0.5 * (e.pow(2) - eps.pow(2)) - 0.5 * logvar).sum(-1)
        return PosteriorDraw(e, out, kl, log_ratio)


def _zero_last(layer: nn.Linear) -> nn.Linear:
    """Start a prior head at N(0, I): a lower layer's prior begins as the top's and is learned from there."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class HVAE(HierarchicalVAE):
    """Fully connected top-down hierarchy. Layer j (top first) has features of width H_j."""

    def __init__(self, config: HVAEConfig):
        super().__init__(config)
        x, H, D = math.prod(config.in_shape), config.hidden_dims, config.latent_dims
        below = [*H[1:], x]
        self.up = nn.ModuleList(nn.Sequential(nn.Linear(below[j], H[j]), nn.ReLU()) for j in range(len(H)))
        self.posterior = nn.ModuleList(
            nn.Linear(H[j] + (H[j - 1] if j else 0), 2 * D[j]) for j in range(len(H)))
        self.prior = nn.ModuleList([nn.Identity()] + [_zero_last(nn.Linear(H[j - 1], 2 * D[j]))
                                                      for j in range(1, len(H))])
        self.down = nn.ModuleList(
            nn.Sequential(nn.Linear((H[j - 1] if j else 0) + D[j], H[j]), nn.ReLU()) for j in range(len(H)))
        self.out = nn.Linear(H[-1], x)

    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, feats = x.flatten(1), []
        for block in reversed(self.up):                        # bottom layer first
            h = block(h)
            feats.append(h)
        return feats[::-1]

    def posterior_params(self, j, feat, state):
        return self.posterior[j](feat if state is None else torch.cat([feat, state], -1))

    def prior_params(self, j, state):
        return self.prior[j](state)

    def merge(self, j, state, z):
        return self.down[j](z if state is None else torch.cat([state, z], -1))

    def output(self, state):
        return self.out(state).view(-1, *self.config.in_shape)


class HVAEConv(HierarchicalVAE):
    """Convolutional top-down hierarchy: layer j (top first) works on a C_j x S_j x S_j feature map."""

    def __init__(self, config: HVAEConvConfig):
        super().__init__(config)
        C, S, D, k = config.channels, config.sides, config.latent_dims, config.head_channels
        img, side = config.in_shape[0], config.in_shape[1]
        below_c, below_s = [*C[1:], img], [*S[1:], side]
        self.up = nn.ModuleList(nn.Sequential(_resample_conv(below_c[j], C[j], below_s[j], S[j]), nn.ReLU())
                                for j in range(len(C)))

        def head(in_ch, j, zero=False):
            last = nn.Linear(k * S[j] * S[j], 2 * D[j])
            return nn.Sequential(nn.Conv2d(in_ch, k, 1), nn.ReLU(), nn.Flatten(), _zero_last(last) if zero else last)

        self.posterior = nn.ModuleList(head(C[j] * (2 if j else 1), j) for j in range(len(C)))
        self.prior = nn.ModuleList([nn.Identity()] + [head(C[j], j, zero=True) for j in range(1, len(C))])
        self.inject = nn.ModuleList(nn.Linear(D[j], C[j] * S[j] * S[j]) for j in range(len(C)))
        self.mix = nn.ModuleList(nn.Sequential(nn.Conv2d(C[j], C[j], 3, padding=1), nn.ReLU()) for j in range(len(C)))
        # From each layer's map to the next layer's (or, after the bottom layer, to the image).
        self.step = nn.ModuleList(
            nn.Sequential(_resample_conv(C[j], C[j + 1], S[j], S[j + 1], transpose=True), nn.ReLU())
            for j in range(len(C) - 1))
        self.out = _resample_conv(C[-1], img, S[-1], side, transpose=True)

    def bottom_up(self, x):
        h, feats = x, []
        for block in reversed(self.up):
            h = block(h)
            feats.append(h)
        return feats[::-1]

    def posterior_params(self, j, feat, state):
        return self.posterior[j](feat if state is None else torch.cat([feat, state], 1))

    def prior_params(self, j, state):
        return self.prior[j](state)

    def merge(self, j, state, z):
        c, s = self.config.channels[j], self.config.sides[j]
        h = self.inject[j](z).view(-1, c, s, s)
        h = self.mix[j](h if state is None else state + h)
        return self.step[j](h) if j < len(self.step) else h

    def output(self, state):
        return self.out(state)


def _resample_conv(in_ch: int, out_ch: int, in_side: int, out_side: int, transpose: bool = False) -> nn.Module:
    """A conv that maps a side to half (or, transposed, to double) itself, or keeps it."""
    if in_side == out_side:
        return nn.Conv2d(in_ch, out_ch, 3, padding=1)
    if transpose:
        if out_side != 2 * in_side:
            raise VAEError(f"cannot grow a {in_side}-pixel map to {out_side} pixels in one step")
        return nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1)
    if in_side != 2 * out_side:
        raise VAEError(f"cannot shrink a {in_side}-pixel map to {out_side} pixels in one step")
    return nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1)


__all__ = ["HVAE", "HVAEConfig", "HVAEConv", "HVAEConvConfig", "HierarchicalVAE", "HierarchyConfig", "LayerDraw"]
