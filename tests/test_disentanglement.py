"""Oracle tests, as disentanglement_lib tests its own metrics: known representations, known scores."""
import numpy as np
import torch
import pytest

from vae_core.evaluation import disentanglement as dl

GT = dl.IdentityFactors()
IDENTITY = lambda x: np.asarray(x, dtype=np.float64)
ZEROS = lambda x: np.zeros_like(x, dtype=np.float64)
DUPLICATED = lambda x: np.hstack([x, x]).astype(np.float64)


def permuted(seed=0):
    """Each point's factors in a random order: every code carries every factor alike."""
    rng = np.random.default_rng(seed)
    return lambda x: np.stack([rng.permutation(row) for row in np.asarray(x, dtype=np.float64)])


SMALL = {
    "beta_vae": dict(batch_size=5, num_train=500, num_eval=300),
    "factor_vae": dict(batch_size=5, num_train=1000, num_eval=500, num_variance_estimate=1000),
    "mig": dict(num_train=2000),
    "sap": dict(num_train=1000, num_test=500),
    "dci": dict(num_train=600, num_test=300),
    "modularity_explicitness": dict(num_train=1500, num_test=500),
}
HEADLINE = {"beta_vae": "beta_vae", "factor_vae": "factor_vae", "mig": "mig", "sap": "sap",
            "dci": "dci_disentanglement", "modularity_explicitness": "modularity"}


@pytest.mark.parametrize("name", list(dl.METRICS))
def test_identity_representation_scores_at_least_0_9(name):
    kw = dict(SMALL[name])
    if name == "sap":
        kw["continuous_factors"] = True       # as disentanglement_lib's own oracle test; see the next test
    scores = dl.METRICS[name](GT, IDENTITY, seed=0, **kw)
    assert scores[HEADLINE[name]] >= 0.9, scores
    if name == "dci":
        assert scores["dci_completeness"] >= 0.9 and scores["dci_informativeness"] >= 0.9
    if name == "modularity_explicitness":
        assert scores["explicitness"] >= 0.9


def test_sap_with_the_linear_svm_reaches_its_ceiling_on_a_binary_identity():
    """With a classifier, an uninformative code still scores chance accuracy (0.5 for a binary
    factor), so the best possible top-two gap is 0.5: the identity reaches it."""
    gt = dl.IdentityFactors(num_factors=5, values=2)
    scores = dl.sap(gt, IDENTITY, num_train=1000, num_test=500)
    assert scores["sap"] == pytest.approx(0.5, abs=0.05)
    assert np.allclose(np.diag(scores["sap_matrix"]), 1.0)


@pytest.mark.parametrize("name", ["mig", "sap", "factor_vae"])
def test_all_zeros_representation_scores_at_most_0_2(name):
    scores = dl.METRICS[name](GT, ZEROS, seed=0, **SMALL[name])
    assert scores[HEADLINE[name]] <= 0.2, scores


def test_permuted_codes_score_low_on_dci_disentanglement():
    assert dl.dci(GT, permuted(), seed=0, **SMALL["dci"])["dci_disentanglement"] <= 0.2


def test_a_duplicated_latent_brings_mig_down():
    assert dl.mig(GT, DUPLICATED, seed=0, **SMALL["mig"])["mig"] <= 0.1


def test_seeded_metrics_are_reproducible():
    a = dl.factor_vae_metric(GT, IDENTITY, seed=3, **SMALL["factor_vae"])
    b = dl.factor_vae_metric(GT, IDENTITY, seed=3, **SMALL["factor_vae"])
    assert a == b


def test_dci_and_modularity_closed_forms():
    """The importance-matrix cases disentanglement_lib checks."""
    diag = np.diag(5.0 * np.ones(5))
    assert dl.dci_disentanglement(diag) == pytest.approx(1.0)
    assert dl.dci_disentanglement(np.zeros((10, 10))) == pytest.approx(0.0)
    assert dl.dci_disentanglement(np.vstack([diag, diag])) == pytest.approx(1.0)
    assert dl.dci_disentanglement(np.hstack([diag, diag])) == pytest.approx(1 - np.log(2) / np.log(10))
    assert dl.dci_completeness(np.vstack([diag, diag])) == pytest.approx(1 - np.log(2) / np.log(10))
    assert dl.modularity(diag) == pytest.approx(1.0)
    assert dl.modularity(np.array([[1.0, 0], [0, 1.0], [0, 0]])) == pytest.approx(2 / 3)
    assert dl.modularity(np.hstack([diag, diag])) == pytest.approx(1 - 1 / 9)


def test_dsprites_truth_renders_what_the_factors_say():
    gt = dl.DSpritesTruth()
    f = gt.sample_factors(6, np.random.default_rng(0))
    assert f.shape == (6, 5) and (f < np.array(gt.factor_sizes)).all()
    imgs = gt.observations(f)
    assert imgs.shape == (6, 1, 64, 64)
    moved = f.copy()
    moved[:, 3] = (moved[:, 3] + 8) % 32                     # posX moves the sprite's centre of mass right/left
    cx = lambda im: (im[:, 0].float() * torch.arange(64.0)).sum((1, 2)) / im[:, 0].float().sum((1, 2))
    assert not torch.allclose(cx(imgs), cx(gt.observations(moved)))


def test_a_model_on_dsprites_gets_every_metric_quickly():
    from vae_core import build_model
    model = build_model({"model_type": "conv", "in_shape": [1, 64, 64], "channels": [4, 4, 4], "latent_dim": 3,
                         "fc_dim": 16})
    res = dl.evaluate_disentanglement(model, ["mig", "factor_vae", "sap"], scale=0.02, seed=0)
    assert {"mig", "factor_vae", "sap"} <= set(res) and all(0.0 <= res[k] <= 1.0 for k in ("mig", "factor_vae", "sap"))
    assert dl.evaluate_disentanglement(model, ["mig"], scale=0.02, seed=0)["mig"] == res["mig"]


def _ill_conditioned(x):
    """Noisy mixed factors on wildly different scales: lbfgs needs far more than 100 iterations."""
    x = np.asarray(x, dtype=np.float64)
    mix = np.random.default_rng(123).normal(size=(x.shape[1], 6))
    noise = np.random.default_rng(int(x.sum()) % 2**32).normal(size=(len(x), 6))
    return (x @ mix + 3 * noise) * np.array([1e-2, 1, 30, 1, 0.1, 5])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_beta_vae_classifier_is_disentanglement_libs_even_where_its_solver_stops_early():
    """disentanglement_lib fits ``LogisticRegression(random_state=...)`` with scikit-learn's defaults:
    on this representation lbfgs stops at 100 iterations, unconverged, and the score is what it
    reached then (a solver run to convergence scores differently)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    gt, seed = dl.IdentityFactors(num_factors=5, values=10), 1
    rng = np.random.default_rng(seed)
    x_tr, y_tr = dl.beta_vae_points(gt, _ill_conditioned, 300, rng)
    x_ev, y_ev = dl.beta_vae_points(gt, _ill_conditioned, 200, rng)
    with pytest.warns(ConvergenceWarning):                       # the definition's solver stops early here
        reference = LogisticRegression(random_state=seed).fit(x_tr, y_tr)
    longer = LogisticRegression(random_state=seed, max_iter=1000).fit(x_tr, y_tr)    # the old setting
    assert longer.score(x_ev, y_ev) != reference.score(x_ev, y_ev)        # so the case tells them apart
    res = dl.beta_vae_metric(gt, _ill_conditioned, seed=seed, num_train=300, num_eval=200)
    assert res["beta_vae"] == reference.score(x_ev, y_ev)
    assert res["beta_vae_train"] == reference.score(x_tr, y_tr)
    assert res["beta_vae_converged"] is False

