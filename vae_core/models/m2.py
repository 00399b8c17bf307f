"""M2 (Kingma et al., 2014): a VAE whose generative model has a discrete class y beside the continuous style z.

    p(y) = Cat(1/K)        p(z) = N(0, I)        p(x | y, z) = the MLP decoder on [z, one_hot(y)]
    q(y | x) = a classifier MLP                   q(z | x, y) = the MLP encoder on [x, one_hot(y)]

It is trained on labelled and unlabelled images together (``objectives.m2_loss_parts``). It speaks
the interface of every model: ``encode(x)`` gives the continuous code (the style), given the class
when it is known and the predicted class otherwise; ``decode(z, y)`` draws a class in a style;
``sample(n)`` draws the class from its prior too. ``class_logits(x)`` is the classifier q(y|x).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..errors import VAEError
from .base import Posterior, _positive, mlp
from .mlp import CVAEConfig, MLPVAE


@dataclasses.dataclass(frozen=True)
class M2Config(CVAEConfig):
    """Kingma et al. used 500 hidden units in each network and a 50-dimensional z for MNIST."""

    model_type: ClassVar[str] = "m2"
    classifier_dims: tuple[int, ...] = (500,)     # hidden layers of q(y | x)

    def validate(self) -> None:
        super().validate()
        if not 2 <= self.num_classes:
            raise VAEError(f"M2Config.num_classes must be at least 2 (a class to infer), got {self.num_classes}.")
        if len(self.classifier_dims) > 16:
            raise VAEError(f"M2Config.classifier_dims has {len(self.classifier_dims)} layers; at most 16.")
        for h in self.classifier_dims:
            _positive("M2Config", "classifier_dims", h)

    def check_training(self, train: TrainConfig) -> None:
        # labels_per_class is M2's own setting: the base class's refusal of it does not apply.
        if train.objective != "elbo" or train.free_bits > 0:
            raise VAEError("M2 trains with its own objective (labelled and unlabelled ELBOs and a classification "
                           "term); objective and free_bits do not apply to it.")

    def trains_distributed(self) -> bool:
        return False                # its labelled subset and classifier term are drawn in one process


class M2VAE(MLPVAE):
    def __init__(self, config: M2Config):
        super().__init__(config)
        self.classifier = mlp([math.prod(config.in_shape), *config.classifier_dims, config.num_classes])

    def as_classifier(self) -> M2VAE:
        return self

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x), shape (B, K)."""
        return self.classifier(x.flatten(1))

    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.class_logits(x).float(), dim=-1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y | x), shape (B,)."""
        return self.class_logits(x).argmax(-1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        """q(z | x, y): the style of x given its class, or given the predicted class when y is None."""
        return super().encode(x, self.predict(x) if y is None else y)

    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | int | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """n draws of (y, z) from the prior, decoded; a given y fixes the class and leaves the style random."""
        z = self.prior_sample(n, generator, temperature)
        if y is None:
            dev = generator.device if generator is not None else self.device
            y = torch.randint(self.num_classes, (n,), generator=generator, device=dev).to(self.device)
        return self.decode(z, self.class_labels(y, n))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        y = self.predict(x) if y is None else y
        return self.decode(self.encode(x, y).mode(), y)

