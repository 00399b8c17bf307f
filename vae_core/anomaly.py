"""Anomaly detection with a VAE: a score per image, a threshold from normal data, ROC and PR curves.

Scores are "higher is more anomalous": the negative ELBO, the negative IWAE estimate of log p(x),
or the reconstruction error (mean squared error of the decoded posterior mean).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import numpy as np
import torch
from sklearn import metrics as skm

from .data import ImageSet
from .metrics import iwae_log_likelihood
from .models import VAEBase
from .objectives import log_likelihood

ScoreKind = Literal["elbo", "iwae", "recon"]


@torch.inference_mode()
def anomaly_scores(model: VAEBase, data: ImageSet, kind: ScoreKind = "elbo", *, k: int = 50, seed: int = 0,
                   batch_size: int = 250, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """One score per image, batched; seeded, so the same model and data give the same scores."""
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    out, done = [], 0
    for x, y in data.batches(batch_size, dev, with_labels=bool(model.num_classes)):
        post = model.encode(x, y)
        if kind == "recon" or post.logvar is None:
            s = (model.decode(post.mode(), y) - x).pow(2).flatten(1).mean(1)
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
    from .config import TrainConfig
    from .data import load_dataset
    from .models import MLPConfig
    from .train import RunConfig, init_model, train

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
