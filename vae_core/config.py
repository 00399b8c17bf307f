"""Validated dataclass configs: a plain dict (from JSON, YAML or CLI flags) in, a frozen config out.

Bad values are refused with a message that names the field, never silently fixed.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal, get_args, get_origin

from .errors import VAEError

MAX_SNAPSHOT_IMAGES = 5000     # vae_core.training.snapshots: the most images whose codes a run keeps every epoch


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:                 # an integer too large for a float
        return False


def brief(value: Any, limit: int = 60) -> str:
    """A value for a message: a hostile config's 5,000-digit number or deep list is cut, never echoed whole."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "..."


def check_value(where: str, value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise VAEError(f"{where} must be one of {list(get_args(hint))}, got {brief(value)}.")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise VAEError(f"{where} must be true or false, got {brief(value)}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VAEError(f"{where} must be an integer, got {brief(value)}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise VAEError(f"{where} must be a finite number, got {brief(value)}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise VAEError(f"{where} must be a string, got {brief(value)}.")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise VAEError(f"{where} must be a list of integers, got {brief(value)}.")
        return tuple(value)
    raise TypeError(f"unsupported config type {hint!r} for {where}")


def from_dict(cls, d: dict, ignore: tuple[str, ...] = ()):
    """Build dataclass ``cls`` from ``d``, refusing unknown fields and ill-typed values."""
    if not isinstance(d, dict):
        raise VAEError(f"{cls.__name__} must be a mapping of field names to values, got {type(d).__name__}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    d = {k: v for k, v in d.items() if k not in ignore}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise VAEError(f"Unknown field(s) {brief(unknown[:5], 120)} in {cls.__name__}; "
                       f"known fields are {sorted(fields)}.")
    hints = typing.get_type_hints(cls)
    obj = cls(**{k: check_value(f"{cls.__name__}.{k}", v, hints[k]) for k, v in d.items()})
    obj.validate()
    return obj


def to_dict(obj) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}


def field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything about a run except the model's architecture."""

    dataset: str = "mnist-5k"
    image_size: int = 0                 # resize the dataset to this square size (0: keep its own)
    epochs: int = 10
    batch_size: int = 128
    # 3e-3: on mnist-5k the 784-400-20 MLP reaches a test ELBO of -150 nats in 16k training images at 3e-3 against
    # 28k at 1e-3 (-120: 63k against 107k) and ends better (-114.4 against -118.2 after 120k); the 32-64 conv
    # net: 28k against 36k to -150 (one seed, steps counted, not seconds: README "Time to a good model").
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    objective: Literal["elbo", "tcvae", "iwae", "wae-mmd"] = "elbo"
    beta: float = 1.0                   # KL weight (beta-VAE); the TC weight for tcvae
    kl_anneal: Literal["none", "linear", "cyclical"] = "none"
    anneal_steps: int = 1000            # linear: warm-up length in steps
    anneal_cycles: int = 4              # cyclical: cycles over the whole run (Fu et al., 2019)
    free_bits: float = 0.0              # minimum KL per latent dimension, in nats (0: off)
    mi_weight: float = 1.0              # tcvae: weight of the index-code mutual information
    dwkl_weight: float = 1.0            # tcvae: weight of the dimension-wise KL
    iwae_k: int = 5                     # importance samples for the iwae objective
    mmd_weight: float = 10.0            # wae-mmd: weight of the MMD between q(z) and p(z)
    labels_per_class: int = 0           # m2: labels it may see, per class (a seeded, class-balanced subset; 0: all)
    alpha: float = 0.1                  # m2: weight of the classification term (Kingma et al.'s alpha, see objectives)
    grad_clip: float = 0.0              # clip the gradient norm to this (0: off)
    restart_dead_codes: bool = True     # VQ-VAE: after each epoch, codes it never used restart at encoder outputs
    # fp32 by default: bf16's held-out ELBO was not shown to stay within 0.5 nats of fp32's on every shipped
    # config (bench/precision_check.py; README "Speed"). auto: bf16 autocast where the device has native bf16.
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    # measured: each layer on the kernel measured fastest at the start (kernels.py); auto: measured when the run
    # is long enough to repay the measurement (kernels.MEASURE_MIN_STEPS), else torch's; torch: never measured
    kernels: Literal["auto", "measured", "torch"] = "auto"
    eval_every: int = 1                 # epochs between held-out evaluations
    # An epoch's end evaluates, draws the sample grid and saves the run folder at most once every this many
    # seconds of training (0: at every epoch due); the last epoch and a stop at the time limit always do. A
    # mnist-5k epoch takes ~0.15 s on 2 cores, and saving and evaluating it cost as much again.
    checkpoint_seconds: float = 5.0
    sample_every: int = 1               # epochs between sample grids (0: never)
    max_seconds: float = 0.0            # stop after this much training time (0: no limit)
    device: str = "auto"                # auto: cuda, then mps, then cpu
    threads: int = 0                    # torch intra-op threads on CPU (0: torch's default)
    snapshots: int = 0                  # keep the codes of this many training images every epoch (0: off)
    # dynamic: each batch's grey levels p become Bernoulli(p) draws, redrawn every step from the run's seeded
    # generator (binarized-MNIST training); only a Bernoulli likelihood may use it (ModelConfig.check_targets)
    binarize: Literal["none", "dynamic"] = "none"

    def validate(self) -> None:
        def bad(msg):
            raise VAEError(f"TrainConfig: {msg}")
        if self.epochs < 1 or self.epochs > 100_000:
            bad(f"epochs must be between 1 and 100000, got {brief(self.epochs)}.")
        if self.batch_size < 1 or self.batch_size > 65_536:
            bad(f"batch_size must be between 1 and 65536, got {brief(self.batch_size)}.")
        if not 0 < self.lr < 10:
            bad(f"lr must be positive and below 10, got {brief(self.lr)}.")
        if self.beta < 0 or self.free_bits < 0 or self.mmd_weight < 0 or self.grad_clip < 0 or self.alpha < 0:
            bad("beta, free_bits, mmd_weight, grad_clip and alpha must be non-negative.")
        if not 0 <= self.labels_per_class <= 1_000_000:
            bad(f"labels_per_class must be between 0 (all labels) and 1000000, got {brief(self.labels_per_class)}.")
        if self.iwae_k < 1 or self.iwae_k > 10_000:
            bad(f"iwae_k must be between 1 and 10000, got {brief(self.iwae_k)}.")
        if self.anneal_steps < 1 or self.anneal_cycles < 1:
            bad("anneal_steps and anneal_cycles must be at least 1.")
        if self.image_size < 0 or self.image_size > 512:
            bad(f"image_size must be between 0 and 512, got {brief(self.image_size)}.")
        if (self.eval_every < 1 or self.sample_every < 0 or self.max_seconds < 0 or self.threads < 0
                or not 0 <= self.checkpoint_seconds <= 86_400):
            bad("eval_every must be at least 1; sample_every, max_seconds and threads non-negative; "
                "checkpoint_seconds from 0 to 86400.")
        if not 0 <= self.snapshots <= MAX_SNAPSHOT_IMAGES:
            bad(f"snapshots must be between 0 (off) and {MAX_SNAPSHOT_IMAGES}, got {self.snapshots}.")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            bad(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}.")
