"""Anomaly detection with a VAE: a score per image, a threshold from normal data, ROC and PR curves.

Scores are "higher is more anomalous": the negative ELBO, the negative IWAE estimate of log p(x),
or the reconstruction error (mean squared error of the decoded posterior mean). A model offers
only the scores it has (``score_kinds``); asking for another is an error, never a stand-in.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Callable, Literal

import numpy as np
import torch
from sklearn import metrics as skm

from ..data import ImageSet
from ..errors import VAEError
from ..models import VAEBase
from ..training.objectives import log_likelihood
from .metrics import iwae_log_likelihood, vq_kl

ScoreKind = Literal["elbo", "iwae", "recon"]
# What each score is called, and its unit (per image).
SCORE_NAMES = MappingProxyType({"elbo": "Negative ELBO", "iwae": "Negative IWAE log p(x)",
                                "recon": "Reconstruction error"})
SCORE_UNITS = MappingProxyType({"elbo": "nats", "iwae": "nats", "recon": "MSE"})


@torch.inference_mode()
def has_posterior_variance(model: VAEBase) -> bool:
    """Whether the encoder gives a distribution (a mean and a variance) rather than a point."""
    x = torch.zeros(1, *model.config.in_shape, device=model.device)
    return model.encode(x, model.class_labels(0, 1)).logvar is not None


def score_kinds(model: VAEBase) -> tuple[tuple[ScoreKind, ...], str]:
    """The scores this model has, and why the others are absent ("" when none is).

    The ELBO needs a KL against a prior (a VQ-VAE's is log K per position); the IWAE estimate
    needs a posterior to draw importance samples from, which a deterministic encoder does not give."""
    if has_posterior_variance(model):
        return ("elbo", "iwae", "recon"), ""
    if model.as_codebook() is not None:           # a deterministic encoder, a uniform prior over K codes
        return ("elbo", "recon"), ("There is no IWAE estimate of log p(x): a VQ-VAE's encoder is deterministic, "
                                   "so there is no posterior to draw importance samples from.")
    return ("recon",), ("There is no ELBO and no IWAE estimate of log p(x): this model's encoder is deterministic "
                        "and it has no prior of its own, so only its reconstruction error can be scored.")


@torch.inference_mode()
def anomaly_scores(model: VAEBase, data: ImageSet, kind: ScoreKind = "elbo", *, k: int = 50, seed: int = 0,
                   batch_size: int = 250, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """One score per image, batched; seeded, so the same model and data give the same scores.

    A score the model does not have (see ``score_kinds``) is a VAEError that says why."""
    kinds, why = score_kinds(model)
    if kind not in SCORE_NAMES:
        raise VAEError(f"Unknown anomaly score {kind!r}; choose one of {sorted(SCORE_NAMES)}.")
    if kind not in kinds:
        raise VAEError(f"{SCORE_NAMES[kind]} is not available for this model. {why}")
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    out, done = [], 0
    for x, y in data.batches(batch_size, dev, with_labels=bool(model.num_classes)):
        post = model.encode(x, y)
        if kind == "recon":
            s = (model.decode(post.mode(), y) - x).pow(2).flatten(1).mean(1)
        elif post.logvar is None:                  # a VQ-VAE's ELBO: its KL is -log p(codes) under its code
            prior = model.learned_prior()             # prior, or log K at every position without one
            kl = vq_kl(model) if prior is None else -prior.log_prob(model.as_codebook().codes(post.mu))
            s = -log_likelihood(model, model.decode_logits(post.mu, y), x) + kl
        elif kind == "iwae":
            s = -iwae_log_likelihood(model, x, y, post, k, gen)
        else:
            d = model.draw(x, y, torch.randn(post.mu.shape, generator=gen, device=dev), post)
            s = -log_likelihood(model, d.out, x) + d.kl_per_dim.flatten(1).sum(1)
        out.append(s.float().cpu())
        done += len(x)
        if progress:
            progress(done, len(data))
    return torch.cat(out).numpy()


def threshold_from_normal(normal_scores: np.ndarray, percentile: float = 95.0) -> float:
    """The score above which an image is flagged: a percentile of held-out normal data."""
    return float(np.percentile(normal_scores, percentile))


@dataclasses.dataclass
class Detection:
    roc_auc: float
    pr_auc: float                      # average precision, with the anomalies as the positive class
    fpr: np.ndarray
    tpr: np.ndarray
    threshold: float
    flagged_rate_normal: float         # false-positive rate at the threshold
    flagged_rate_anomalous: float      # recall at the threshold


def detection_report(scores: np.ndarray, is_anomaly: np.ndarray, threshold: float) -> Detection:
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError("ROC and PR need both normal and anomalous images among the labels.")
    fpr, tpr, _ = skm.roc_curve(is_anomaly, scores)
    flagged = scores > threshold
    return Detection(float(skm.roc_auc_score(is_anomaly, scores)), float(skm.average_precision_score(is_anomaly, scores)),
                     fpr, tpr, threshold, float(flagged[~is_anomaly].mean()), float(flagged[is_anomaly].mean()))


def holdout_class_experiment(digit: int = 9, *, dataset: str = "mnist-5k", epochs: int = 20, kind: ScoreKind = "elbo",
                             percentile: float = 95.0, seed: int = 0, latent_dim: int = 16,
                             progress: Callable[[str, float], None] | None = None):
    """Train on a dataset without one class, then detect that class in the test split.

    Returns (model, test scores, is_anomaly, Detection). The threshold is a percentile of a
    normal validation slice carved from the training split, so the test set plays no part
    in choosing it.
    """
    from ..config import TrainConfig
    from ..data import load_dataset
    from ..models import MLPConfig
    from ..training.loop import init_model, train
    from ..io.run_folder import RunConfig

    full = load_dataset(dataset, "train")
    normal_idx = np.flatnonzero(full.labels.numpy() != digit)
    rng = np.random.default_rng(seed)
    rng.shuffle(normal_idx)
    n_val = max(1, len(normal_idx) // 10)
    train_set, val_set = full.subset(np.sort(normal_idx[n_val:])), full.subset(np.sort(normal_idx[:n_val]))
    test = load_dataset(dataset, "test")
    cfg = RunConfig(MLPConfig(in_shape=full.shape, hidden_dims=(400,), latent_dim=latent_dim),
                    TrainConfig(dataset=dataset, epochs=epochs, seed=seed, sample_every=0, eval_every=epochs))
    model = init_model(cfg.model, seed)
    for ev in train(cfg, data=train_set, test_data=None, model=model):
        if progress and ev.kind in ("step", "epoch"):
            progress("training without the held-out class", ev.step / max(ev.total_steps, 1))
    model.eval()
    threshold = threshold_from_normal(anomaly_scores(model, val_set, kind, seed=seed), percentile)
    scores = anomaly_scores(model, test, kind, seed=seed)
    is_anomaly = test.labels.numpy() == digit
    return model, scores, is_anomaly, detection_report(scores, is_anomaly, threshold)
