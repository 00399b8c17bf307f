import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vae_core import build_model, load_dataset, load_model
from vae_core.evaluation.anomaly import anomaly_scores, detection_report, holdout_class_experiment, threshold_from_normal
from vae_core.evaluation.metrics import collapse_warnings, evaluate_model, mutual_information_estimate
from vae_core.evaluation.quality import frechet_distance, precision_recall, psnr, reconstruction_quality, ssim


def test_auc_on_a_synthetic_case_with_known_separation():
    """Normal scores N(0, 1), anomalous N(d, 1): the ROC-AUC is Phi(d / sqrt 2)."""
    rng = np.random.default_rng(0)
    d = 1.5
    scores = np.concatenate([rng.normal(0, 1, 20000), rng.normal(d, 1, 20000)])
    is_anomaly = np.r_[np.zeros(20000, bool), np.ones(20000, bool)]
    threshold = threshold_from_normal(scores[:20000], 95)
    rep = detection_report(scores, is_anomaly, threshold)
    assert rep.roc_auc == pytest.approx(norm.cdf(d / math.sqrt(2)), abs=0.01)
    assert rep.flagged_rate_normal == pytest.approx(0.05, abs=0.005)
    assert rep.flagged_rate_anomalous == pytest.approx(1 - norm.cdf(norm.ppf(0.95) - d), abs=0.02)
    assert 0.5 < rep.pr_auc < 1.0


def test_held_out_digit_is_detected_by_reconstruction_error():
    _, scores, is_anomaly, rep = holdout_class_experiment(0, epochs=8, kind="recon")
    assert rep.roc_auc > 0.8
    assert scores[is_anomaly].mean() > scores[~is_anomaly].mean()


def test_anomaly_scores_are_seeded_and_ordered():
    model = load_model("mnist-mlp")
    data = load_dataset("mnist-5k", "test").subset(range(0, 1000, 50))
    a, b = anomaly_scores(model, data, "elbo", seed=1), anomaly_scores(model, data, "elbo", seed=1)
    assert np.array_equal(a, b) and a.shape == (20,)
    iwae = anomaly_scores(model, data, "iwae", k=64, seed=1)
    assert np.mean(iwae) <= np.mean(a) + 1.0                 # -IWAE is a tighter (smaller) bound than -ELBO
    noise = data.subset(range(5))
    noise.images = torch.randint(0, 256, noise.images.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert anomaly_scores(model, noise, "recon").min() > anomaly_scores(model, data, "recon").max()


def test_reconstruction_metrics_have_their_known_values():
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(4))
    assert torch.allclose(psnr(x, (x + 0.1)), torch.full((4,), 20.0), atol=1e-3)   # MSE 0.01 -> 20 dB
    other = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    assert (ssim(x, other) < 0.5).all() and ssim(x, other).mean() < 0.2
    q = reconstruction_quality(load_model("mnist-conv"), load_dataset("mnist-5k", "test"), max_images=200)
    assert q["ssim"] > 0.6 and q["psnr"] > 15


def test_frechet_distance_and_precision_recall():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 5)), rng.normal(size=(800, 5))
    assert frechet_distance(a, b) < 0.1
    assert frechet_distance(a, b + 2.0) == pytest.approx(5 * 4.0, rel=0.1)     # ||mu1 - mu2||^2 = 20
    p, r = precision_recall(a, b)
    assert p > 0.8 and r > 0.8
    p, r = precision_recall(a, b + 10.0)
    assert p == 0.0 and r == 0.0
    collapsed = np.repeat(b[:1], 800, axis=0) + 1e-3 * rng.normal(size=(800, 5))
    p, r = precision_recall(a, collapsed)
    assert p > 0.9 and r < 0.1                               # mode collapse: precise, no recall


def test_mutual_information_estimate_bounds():
    data = load_dataset("digits", "test")
    model = build_model({"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [8], "latent_dim": 3})
    with torch.no_grad():                                     # an encoder that ignores x: q(z|x) = prior
        for p in model.encoder.parameters():
            p.zero_()
    assert abs(mutual_information_estimate(model, data, n=300)) < 0.05
    trained = load_model("mnist-mlp")
    mi = mutual_information_estimate(trained, load_dataset("mnist-5k", "test"), n=500)
    assert 3.0 < mi <= math.log(500) + 1e-6


def test_evaluation_sums_every_batch_whatever_the_batch_size():
    torch.manual_seed(0)
    model = build_model({"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [8], "latent_dim": 4})
    data = load_dataset("digits", "test")
    one, many = evaluate_model(model, data, batch_size=len(data)), evaluate_model(model, data, batch_size=7)
    assert one["n_images"] == many["n_images"] == len(data)
    for key in ("mse", "latent_variance", "kl_per_dim"):          # no sampling in these: the same sums
        assert np.allclose(one[key], many[key], rtol=1e-4, atol=1e-6), key


def test_collapse_warnings_say_what_to_try():
    model = build_model({"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [8], "latent_dim": 4})
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.zero_()
    res = evaluate_model(model, load_dataset("digits", "test"))
    warnings = collapse_warnings(res)
    assert warnings and "annealing" in warnings[0] and "free bits" in warnings[0]
    assert collapse_warnings(evaluate_model(load_model("mnist-mlp"), load_dataset("mnist-5k", "test"))) == []
