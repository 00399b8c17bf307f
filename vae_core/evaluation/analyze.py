"""What the Analyze page computes, one function per figure, with no streamlit in sight.

Each takes a model and an ImageSet, is seeded, and returns plain numbers and arrays for
plotting, so the same results can be cached, tested and shown.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from sklearn import metrics as skm

from ..data import ImageSet
from ..latent import explore
from ..models import VAEBase
from .anomaly import ScoreKind, anomaly_scores
from .disentanglement import factor_entropy, mutual_information_matrix
from .metrics import collapse_warnings, evaluate_model, mutual_information_estimate
from .quality import psnr, ssim

Progress = Callable[[float, str], None]


def latent_units(model: VAEBase, data: ImageSet, n: int = 1000, iwae_k: int = 0, seed: int = 0,
                 progress: Progress | None = None) -> dict:
    """KL per unit, active units, ELBO (and IWAE log p(x)), I(x; z), and collapse warnings."""
    sub, _ = data.seeded_subset(n, seed)
    res = evaluate_model(model, sub, iwae_k=iwae_k, seed=seed,
                         progress=(lambda d, t: progress(0.8 * d / t, "evaluating")) if progress else None)
    if "kl_per_dim" in res:
        if progress:
            progress(0.9, "estimating I(x; z)")
        res["mutual_information"] = mutual_information_estimate(model, sub, n=min(n, 1000), seed=seed)
        res["mutual_information_images"] = min(len(sub), n, 1000)
    res["warnings"] = collapse_warnings(res)
    return res


def factor_information(model: VAEBase, data: ImageSet, n: int = 5000, num_bins: int = 20, seed: int = 0) -> dict:
    """Mutual information between every latent unit and every ground-truth factor, normalised by the
    factor's entropy (so 1 means the unit determines the factor), and the best unit per factor."""
    if data.factors is None:
        raise ValueError("This dataset has no ground-truth factors.")
    sub, _ = data.seeded_subset(n, seed)
    codes = explore.encode_dataset(model, sub).flatten(1).numpy().astype(np.float64)
    factors = np.stack([np.unique(col, return_inverse=True)[1] for col in sub.factors.numpy().T], axis=1)
    mi = mutual_information_matrix(codes, factors, num_bins)                 # (D, F) nats
    normalised = mi / np.maximum(factor_entropy(factors), 1e-12)[None]
    return {"mi": normalised, "factor_names": list(data.factor_names), "best_unit": normalised.argmax(0).tolist()}


def anomaly_analysis(model: VAEBase, data: ImageSet, kind: ScoreKind = "elbo", anomalous_class: int | None = None,
                     n: int = 1000, k: int = 50, seed: int = 0, progress: Progress | None = None) -> dict:
    """Scores for n images (higher is more anomalous), the most anomalous first, and ROC/PR curves when a
    class is named as the anomaly."""
    sub, idx = data.seeded_subset(n, seed)
    scores = anomaly_scores(model, sub, kind, k=k, seed=seed,
                            progress=(lambda d, t: progress(d / t, "scoring")) if progress else None)
    out = {"scores": scores, "indices": idx.numpy(), "order": np.argsort(-scores)}
    if anomalous_class is not None and sub.labels is not None:
        is_anomaly = sub.labels.numpy() == anomalous_class
        if is_anomaly.any() and not is_anomaly.all():
            fpr, tpr, _ = skm.roc_curve(is_anomaly, scores)
            out.update(is_anomaly=is_anomaly, fpr=fpr, tpr=tpr, roc_auc=float(skm.roc_auc_score(is_anomaly, scores)),
                       pr_auc=float(skm.average_precision_score(is_anomaly, scores)))
    return out


@torch.inference_mode()
def reconstructions(model: VAEBase, data: ImageSet, idx) -> dict:
    """Originals, reconstructions from the posterior mean, and their per-image MSE, PSNR and SSIM."""
    x = data.subset(idx).float_images(model.device)
    x_hat = explore.reconstruct(model, data, idx).to(x.device).clamp(0, 1)
    return {"x": x.cpu(), "x_hat": x_hat.cpu(), "mse": (x - x_hat).pow(2).flatten(1).mean(1).cpu().numpy(),
            "psnr": psnr(x, x_hat).cpu().numpy(), "ssim": ssim(x, x_hat).cpu().numpy()}
