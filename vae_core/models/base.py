"""What every model shares: the posterior object, config validation, and the interface.

Every model speaks:
    encode(x, y=None) -> Posterior
    decode(z, y=None) -> x_hat (the likelihood's mean, images roughly in [0, 1])
    sample(n, generator=None, y=None, temperature=1.0) -> images
    latent_shape, config, num_classes
so pages and the training loop never ask what kind of model they hold.

What a family can do beyond that, it says through optional capabilities on ``VAEBase``: ``as_codebook()``
(a grid of discrete codes), ``as_hierarchy()`` (stochastic layers), ``as_classifier()`` (it infers an image's
class) and ``learned_prior()`` (a code prior fitted after it). Each answers None on the base class, and the
family that has the capability answers itself. Code outside ``models/`` asks these, never a family's name,
``isinstance`` or ``hasattr``; a family's rules for training live on its config (``check_training``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TrainConfig, brief, from_dict, to_dict
from ..errors import VAEError
from ..settings import LoadPolicy
from .kernels import Dense

LOG_2PI = math.log(2 * math.pi)
Likelihood = Literal["bernoulli", "gaussian", "gaussian-learned", "laplace"]

# Guards against configs that would allocate absurd amounts of memory before we notice.
MAX_WIDTH = 16_384          # widest layer, channel count or codebook size we accept
MAX_PARAMS = 200_000_000    # a VAE explorer has no business with more than this


class Posterior:
    """A diagonal Gaussian q(z|x) (or a point mass when logvar is None, as for a VQ-VAE)."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor | None):
        self.mu = mu
        self.logvar = logvar

    @property
    def std(self) -> torch.Tensor:
        if self.logvar is None:
            return torch.zeros_like(self.mu)
        return torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mu

    def rsample(self, eps: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + std * eps; eps may carry leading sample dimensions, e.g. (k, B, D)."""
        if self.logvar is None:
            return self.mu if eps is None else self.mu.expand(eps.shape)
        if eps is None:
            eps = torch.randn(self.mu.shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype)
        return self.mu + self.std * eps

    sample = rsample

    def kl_per_dim(self) -> torch.Tensor:
        """Closed-form KL(q || N(0, I)) per latent element, shape of mu."""
        if self.logvar is None:
            return torch.zeros_like(self.mu)
        return 0.5 * (self.mu.pow(2) + self.logvar.exp() - 1.0 - self.logvar)

    def kl(self) -> torch.Tensor:
        """KL per image, shape (B,)."""
        return self.kl_per_dim().flatten(1).sum(1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over latent elements; z may have leading sample dims."""
        var = self.logvar.exp()
        lp = -0.5 * ((z - self.mu).pow(2) / var + self.logvar + LOG_2PI)
        return lp.flatten(-len(self.mu.shape) + 1).sum(-1)


def standard_normal_log_prob(z: torch.Tensor, event_dims: int) -> torch.Tensor:
    """log N(z; 0, I) summed over the last ``event_dims`` dimensions."""
    return (-0.5 * (z.pow(2) + LOG_2PI)).flatten(-event_dims).sum(-1)


@dataclasses.dataclass
class PosteriorDraw:
    """One reparameterised draw z ~ q(z|x), decoded: what the ELBO and the IWAE weights are made of.

    Shapes carry optional leading sample dimensions S, as in (k, B, ...) for IWAE.
    """

    z: torch.Tensor                    # (*S, B, *latent), in the coordinates ``decode`` takes
    out: torch.Tensor                  # the decoder's raw output for z: (*S, B, C, H, W)
    kl_per_dim: torch.Tensor           # closed-form KL per latent element: (B, *latent) or (*S, B, *latent)
    log_ratio: torch.Tensor | None     # log q(z|x) - log p(z): (*S, B); None for a point-mass posterior


# ---------------------------------------------------------------------------------------------
# Config validation: refuse bad values with a message, before anything is allocated.


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of every model config. Subclasses add fields; ``model_type`` names the family."""

    model_type: ClassVar[str] = ""
    # A family whose images come with their class (told it, like a CVAE, or inferring it, like an M2): its
    # num_classes defaults to the dataset's.
    conditional: ClassVar[bool] = False
    in_shape: tuple[int, ...] = (1, 28, 28)   # (C, H, W) of the images
    latent_dim: int = 20
    likelihood: Likelihood = "bernoulli"
    sigma: float = 0.1                          # fixed std of the Gaussian likelihood
    laplace_scale: float = 0.1                  # scale b of the Laplace likelihood
    num_classes: int = 0                        # > 0 only for conditional models

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Validate a plain dict (e.g. a config.json) into a config; never allocates tensors."""
        return from_dict(cls, d, ignore=("model_type", "vae_core_version"))

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, **to_dict(self)}

    def validate(self) -> None:
        name = type(self).__name__
        if len(self.in_shape) != 3 or any(s <= 0 for s in self.in_shape):
            raise VAEError(f"{name}.in_shape must be three positive integers (C, H, W), got {brief(list(self.in_shape))}.")
        c, h, w = self.in_shape
        if c not in (1, 3):
            raise VAEError(f"{name}.in_shape has {c} channels; only 1 (grey) or 3 (RGB) are supported.")
        if h * w > 1024 * 1024:
            raise VAEError(f"{name}.in_shape {h}x{w} is too large for this explorer (at most 1024x1024).")
        _positive(name, "latent_dim", self.latent_dim)
        if self.sigma <= 0 or self.laplace_scale <= 0:
            raise VAEError(f"{name}.sigma and laplace_scale must be positive.")
        if self.num_classes < 0 or self.num_classes > MAX_WIDTH:
            raise VAEError(f"{name}.num_classes must be between 0 and {MAX_WIDTH}, got {brief(self.num_classes)}.")

    def check_training(self, train: TrainConfig) -> None:
        """Refuse training settings this family cannot use, with a VAEError that says why. A family with an
        objective of its own extends this; the training loop asks it and knows no family."""
        if train.labels_per_class:
            raise VAEError(f"labels_per_class hides labels from a semi-supervised model (--model m2); a "
                           f"{self.model_type} model does not use it.")

    def check_targets(self, train: TrainConfig) -> None:
        """Refuse training targets this config's likelihood cannot score: binarized images are 0s and 1s,
        data only a Bernoulli likelihood models (a density on [0, 1] would be fitted to two values)."""
        if train.binarize != "none" and self.likelihood != "bernoulli":
            raise VAEError(f"--binarize {train.binarize} draws 0/1 images for a Bernoulli likelihood; this "
                           f"{self.model_type} model's likelihood is {self.likelihood!r}. Use --likelihood "
                           "bernoulli, or train without --binarize.")

    def trains_distributed(self) -> bool:
        """Whether a run may be split over processes (torchrun)."""
        return True

    def decode_values(self) -> int:
        """Values one decoded image holds at the decoder's widest layer (at least the image's C*H*W):
        what decoding one image costs in memory, so budgets can be checked before anything runs."""
        return math.prod(self.in_shape)


def _positive(cls_name: str, field: str, value: int, limit: int = MAX_WIDTH) -> None:
    if value <= 0 or value > limit:
        raise VAEError(f"{cls_name}.{field} must be between 1 and {limit}, got {brief(value)}.")


def parameter_count(build) -> int:
    """Exactly how many parameters the module ``build()`` makes has, counted on a build on the meta device:
    nothing is allocated, so a config's size is known before it costs anything (its ``validate`` has bounded
    every width and layer count first). A module that initialises its own weights skips that on the meta device."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def check_module_budget(cfg: ModelConfig, module: type[nn.Module]) -> int:
    """The parameter count of ``module(cfg)``, or a VAEError above MAX_PARAMS."""
    n = parameter_count(lambda: module(cfg))
    if n > MAX_PARAMS:
        raise VAEError(f"This {cfg.model_type} config would have {n:,} parameters "
                       f"(limit {MAX_PARAMS:,}); reduce its layer sizes.")
    return n


def check_decode_cost(config: ModelConfig, policy: LoadPolicy, source: str = "This model") -> None:
    """Refuse a model whose one decoded image is larger than the policy allows, before it is built."""
    c, h, w = config.in_shape
    pixels = c * h * w
    if policy.max_output_pixels and pixels > policy.max_output_pixels:
        raise VAEError(f"{source} makes {c}x{h}x{w} images ({pixels:,} values each); this server decodes images "
                       f"of at most {policy.max_output_pixels:,} values. Pick a model for smaller images.")
    widest = config.decode_values()
    if policy.max_decode_values and widest > policy.max_decode_values:
        raise VAEError(f"Decoding one image of {source} holds {widest:,} values at its widest layer; this server "
                       f"allows at most {policy.max_decode_values:,} per image. Pick a smaller model.")


# ---------------------------------------------------------------------------------------------


class VAEBase(nn.Module):
    """Shared behaviour. A subclass sets ``self.config`` and implements ``encode`` and ``decode_logits``."""

    config: ModelConfig

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.likelihood == "gaussian-learned":
            # One learned log-std per pixel: a cheap way to let the model find its own noise level.
            self.log_sigma = nn.Parameter(torch.full(tuple(config.in_shape), math.log(config.sigma)))

    # -- the interface --------------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw output: logits for Bernoulli, the mean for Gaussian and Laplace."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z), shape (B, C, H, W)."""
        out = self.decode_logits(z, y)
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        z = torch.randn((n, *self.latent_shape), generator=generator, device=_gen_device(generator, self.device))
        return z.to(self.device) * temperature

    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | int | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Decode n draws from the prior (scaled by temperature) into images."""
        z = self.prior_sample(n, generator, temperature)
        return self.decode(z, self.class_labels(y, n))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        post = self.encode(x, y)
        return self.decode(post.mode(), y)

    # -- optional capabilities: None here, the model itself where its family has one ---------------------
    # (Each family narrows the return type to its own class: VQVAE, HierarchicalVAE, M2VAE, CodeTransformer.
    # They import this module, so it names none of them.)
    def as_codebook(self) -> VAEBase | None:
        """This model if its latent is a grid of codes from a codebook (``codes``, ``lookup``, ``code_usage``,
        ``codebook_loss``, ``attach_prior``), else None."""
        return None

    def as_hierarchy(self) -> VAEBase | None:
        """This model if its latent is a stack of stochastic layers, top first (``layer_sizes``,
        ``layer_slices``), else None."""
        return None

    def as_classifier(self) -> VAEBase | None:
        """This model if it infers the class of an image itself (``predict``, ``class_probs``), rather than
        being told it, else None."""
        return None

    def learned_prior(self) -> nn.Module | None:
        """The prior learned over this model's codes after it was trained (train-prior), which sampling and
        likelihoods then use; None for a model without one."""
        return None

    # -- helpers ----------------------------------------------------------------------------------
    def class_labels(self, y, n: int) -> torch.Tensor | None:
        """Labels for n images: None for an unconditional model; an int is given to every image."""
        if self.num_classes == 0:
            return None
        if y is None:
            raise VAEError("This is a conditional model: choose a class.")
        if isinstance(y, int):
            return torch.full((n,), y, dtype=torch.long, device=self.device)
        return torch.as_tensor(y, device=self.device)

    def one_hot(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if self.num_classes == 0:
            return None
        if y is None:
            raise VAEError("This is a conditional model: it needs a class label for every image.")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise VAEError(f"Class labels must be in 0..{self.num_classes - 1}.")
        return F.one_hot(y.long(), self.num_classes).to(dtype=torch.float32)

    def draw(self, x: torch.Tensor, y: torch.Tensor | None, eps: torch.Tensor | None,
             post: Posterior | None = None) -> PosteriorDraw:
        """z = mu + std * eps from q(z|x) (eps: (*S, B, *latent) standard normal noise), decoded.

        Every objective and estimate goes through here, so a model whose KL depends on the draw
        itself (a hierarchical VAE: each layer's prior depends on the layers above) overrides it.
        """
        post = self.encode(x, y) if post is None else post
        z = post.rsample(eps)
        log_ratio = None
        if post.logvar is not None:
            log_ratio = post.log_prob(z) - standard_normal_log_prob(z, len(self.latent_shape))
        return PosteriorDraw(z, self.decode_logits(z, y), post.kl_per_dim(), log_ratio)

    def vae_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights that model.safetensors holds (a part trained and saved on its own, such as a
        VQ-VAE's code prior, is left out)."""
        return self.state_dict()


def _gen_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last); ``Dense`` lets training pick their kernel."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
