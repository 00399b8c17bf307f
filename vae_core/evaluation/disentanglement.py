"""Disentanglement metrics on data with ground-truth factors, computed the way disentanglement_lib does.

Each metric takes a ``GroundTruth`` (factor sizes, a factor sampler, and a renderer from factor
indices to observations), a ``representation`` (observations -> codes, (n, D) numpy; for a VAE
the encoder mean), and a seed; defaults are disentanglement_lib's (unsupervised_study_v1):

- beta-VAE metric (Higgins et al., 2017): batches of 64 pairs sharing one factor; logistic
  regression (scikit-learn's defaults, as disentanglement_lib: lbfgs stopped after 100
  iterations, converged or not) predicts the shared factor from mean |z1 - z2|; 10,000 train /
  5,000 eval points.
- FactorVAE metric (Kim & Mnih, 2018): codes scaled by their global std (10,000 samples);
  dimensions with std < 0.05 pruned; for a batch of 64 with one factor fixed, the dimension of
  least normalised variance votes for that factor; majority-vote classifier accuracy.
- MIG (Chen et al., 2018): 10,000 points, each code dimension histogram-discretised into 20
  bins, sklearn's mutual_info_score, top-two gap divided by the factor's entropy.
- SAP (Kumar et al., 2018): per (code, factor) a LinearSVC(C=0.01, balanced) on one code
  dimension (or R^2 for continuous factors); mean top-two gap over factors.
- DCI (Eastwood & Williams, 2018): gradient-boosted trees per factor; importance matrix to
  disentanglement and completeness (entropy-based), informativeness as accuracy.
- Modularity and explicitness (Ridgeway & Mozer, 2018); explicitness's logistic regressions also
  keep scikit-learn's defaults, as disentanglement_lib does.

Where a solver stops at its iteration limit before converging, the result says so
(``beta_vae_converged``, ``explicitness_converged``) rather than warning on the console.
"""
from __future__ import annotations

import warnings
from types import MappingProxyType
from typing import Callable, Protocol, Sequence

import numpy as np
import scipy.stats
from sklearn import ensemble, linear_model, metrics, preprocessing, svm
from sklearn.exceptions import ConvergenceWarning

from ..errors import VAEError

Representation = Callable[[object], np.ndarray]


class GroundTruth(Protocol):
    factor_sizes: Sequence[int]
    factor_names: Sequence[str]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, F) integer factor indices."""

    def observations(self, factors: np.ndarray) -> object:
        """What ``representation`` takes for these factor indices (images for a dataset)."""


class IdentityFactors:
    """The test oracle disentanglement_lib uses: ten factors of ten values, observed as themselves."""

    def __init__(self, num_factors: int = 10, values: int = 10):
        self.factor_sizes = [values] * num_factors
        self.factor_names = [f"factor {i}" for i in range(num_factors)]

    def sample_factors(self, n, rng):
        return rng.integers(0, self.factor_sizes[0], size=(n, len(self.factor_sizes)))

    def observations(self, factors):
        return np.asarray(factors, dtype=np.float64)


class DSpritesTruth:
    """dSprites' five factors (shape, scale, orientation, posX, posY), rendered exactly from the grid."""

    def __init__(self):
        from ..data import DSPRITES_FACTOR_NAMES, DSPRITES_SIZES
        self.factor_sizes = list(DSPRITES_SIZES)
        self.factor_names = list(DSPRITES_FACTOR_NAMES)

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1)

    def observations(self, factors):
        from ..data import dsprites_index, render_dsprites
        return render_dsprites(dsprites_index(factors))


def model_representation(model, batch_size: int = 256) -> Representation:
    """The encoder mean of a model, as disentanglement_lib scores a VAE: uint8 images in, (n, D) codes out."""
    import torch

    def rep(images):
        out = []
        with torch.inference_mode():
            for chunk in images.split(batch_size):
                x = chunk.to(model.device).float().div_(255)
                out.append(model.encode(x).mu.flatten(1).float().cpu())
        return torch.cat(out).numpy().astype(np.float64)

    return rep


def factor_codes(gt: GroundTruth, rep: Representation, n: int, rng: np.random.Generator,
                 batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """n random points: codes (n, D) and their factor indices (n, F)."""
    codes, factors = [], []
    for start in range(0, n, batch_size):
        f = gt.sample_factors(min(batch_size, n - start), rng)
        factors.append(f)
        codes.append(np.asarray(rep(gt.observations(f)), dtype=np.float64))
    return np.concatenate(codes), np.concatenate(factors)


# ---------------------------------------------------------------------------------------------
# Discrete mutual information (shared by MIG, modularity and the app's heatmap)


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each column into ``num_bins`` equal-width bins, as disentanglement_lib's histogram discretizer."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """I(code_i; factor_j) in nats, (D, F), codes discretised into histogram bins."""
    d = histogram_discretize(codes, num_bins)
    return np.array([[metrics.mutual_info_score(factors[:, j], d[:, i]) for j in range(factors.shape[1])]
                     for i in range(codes.shape[1])])


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    return np.array([metrics.mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


# ---------------------------------------------------------------------------------------------
# The metrics


def mig(gt: GroundTruth, rep: Representation, seed: int = 0, num_train: int = 10_000, num_bins: int = 20) -> dict:
    codes, factors = factor_codes(gt, rep, num_train, np.random.default_rng(seed))
    return mig_from_codes(codes, factors, num_bins)


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict:
    m = mutual_information_matrix(codes, factors, num_bins)
    top = np.sort(m, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    gaps = (top[0] - second) / factor_entropy(factors)
    return {"mig": float(np.mean(gaps)), "mig_per_factor": gaps.tolist(), "mutual_information": m.tolist()}


def sap(gt: GroundTruth, rep: Representation, seed: int = 0, num_train: int = 10_000, num_test: int = 5_000,
        continuous_factors: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    codes, factors = factor_codes(gt, rep, num_train, rng)
    codes_t, factors_t = factor_codes(gt, rep, num_test, rng)
    D, F = codes.shape[1], factors.shape[1]
    score = np.zeros((D, F))
    for i in range(D):
        for j in range(F):
            if continuous_factors:
                cov = np.cov(codes[:, i], factors[:, j], ddof=1)
                score[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
            else:
                clf = svm.LinearSVC(C=0.01, class_weight="balanced")
                clf.fit(codes[:, i:i + 1], factors[:, j])
                score[i, j] = np.mean(clf.predict(codes_t[:, i:i + 1]) == factors_t[:, j])
    s = np.sort(score, axis=0)
    return {"sap": float(np.mean(s[-1] - s[-2])) if D > 1 else float(np.mean(s[-1])), "sap_matrix": score.tolist()}


def _codes_of(gt: GroundTruth, rep: Representation, factors: np.ndarray) -> np.ndarray:
    """Codes for factors of shape (points, batch, F): one render and encode call, (points, batch, D) out."""
    c, b, f = factors.shape
    z = np.asarray(rep(gt.observations(factors.reshape(c * b, f))), dtype=np.float64)
    return z.reshape(c, b, -1)


def _chunks(n: int, batch_size: int, images_per_call: int = 8192):
    per = max(1, images_per_call // batch_size)
    for start in range(0, n, per):
        yield min(per, n - start)


def beta_vae_points(gt: GroundTruth, rep: Representation, n: int, rng: np.random.Generator,
                    batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The beta-VAE metric's n training points: for a random factor k, the mean |z1 - z2| over a
    batch of pairs that share factor k (features (n, D)), labelled k."""
    F = len(gt.factor_sizes)
    feats, labels = [], []
    for c in _chunks(n, batch_size):                  # many points per render call, not one
        k = rng.integers(F, size=c)
        f1 = gt.sample_factors(c * batch_size, rng).reshape(c, batch_size, F)
        f2 = gt.sample_factors(c * batch_size, rng).reshape(c, batch_size, F)
        rows = np.arange(c)
        f2[rows, :, k] = f1[rows, :, k]               # each pair shares factor k
        feats.append(np.mean(np.abs(_codes_of(gt, rep, f1) - _codes_of(gt, rep, f2)), axis=1))
        labels.append(k)
    return np.concatenate(feats), np.concatenate(labels)


def _fit_quietly(clf, x, y):
    """Fit a scikit-learn classifier; returns it and whether its solver converged (it warns otherwise)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, y)
    return clf, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def beta_vae_metric(gt: GroundTruth, rep: Representation, seed: int = 0, batch_size: int = 64,
                    num_train: int = 10_000, num_eval: int = 5_000) -> dict:
    """The classifier is disentanglement_lib's: scikit-learn's LogisticRegression with its defaults
    (lbfgs, 100 iterations), seeded. Where the solver stops before it converges, so does
    disentanglement_lib's; ``beta_vae_converged`` says which happened."""
    rng = np.random.default_rng(seed)
    x_tr, y_tr = beta_vae_points(gt, rep, num_train, rng, batch_size)
    x_ev, y_ev = beta_vae_points(gt, rep, num_eval, rng, batch_size)
    model, converged = _fit_quietly(linear_model.LogisticRegression(random_state=seed), x_tr, y_tr)
    return {"beta_vae_train": float(model.score(x_tr, y_tr)), "beta_vae": float(model.score(x_ev, y_ev)),
            "beta_vae_converged": converged}


def factor_vae_metric(gt: GroundTruth, rep: Representation, seed: int = 0, batch_size: int = 64,
                      num_train: int = 10_000, num_eval: int = 5_000, num_variance_estimate: int = 10_000,
                      prune_threshold: float = 0.05) -> dict:
    rng = np.random.default_rng(seed)
    codes, _ = factor_codes(gt, rep, num_variance_estimate, rng)
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not active.any():
        return {"factor_vae_train": 0.0, "factor_vae": 0.0, "factor_vae_active_dims": 0}
    F, D = len(gt.factor_sizes), codes.shape[1]
    active_idx = np.flatnonzero(active)

    def votes(n):
        v = np.zeros((F, D), dtype=np.int64)
        for c in _chunks(n, batch_size):
            k = rng.integers(F, size=c)
            f = gt.sample_factors(c * batch_size, rng).reshape(c, batch_size, F)
            rows = np.arange(c)
            f[rows, :, k] = f[rows, 0, k][:, None]        # factor k fixed within each batch
            local = np.var(_codes_of(gt, rep, f), axis=1, ddof=1)              # (c, D)
            winners = active_idx[np.argmin(local[:, active] / global_var[active], axis=1)]
            np.add.at(v, (k, winners), 1)
        return v

    train_votes = votes(num_train)
    classifier = np.argmax(train_votes, axis=0)           # each dimension predicts its majority factor
    eval_votes = votes(num_eval)
    cols = np.arange(D)
    return {"factor_vae_train": float(train_votes[classifier, cols].sum() / train_votes.sum()),
            "factor_vae": float(eval_votes[classifier, cols].sum() / eval_votes.sum()),
            "factor_vae_active_dims": int(active.sum())}


def dci(gt: GroundTruth, rep: Representation, seed: int = 0, num_train: int = 10_000, num_test: int = 5_000) -> dict:
    rng = np.random.default_rng(seed)
    codes, factors = factor_codes(gt, rep, num_train, rng)
    codes_t, factors_t = factor_codes(gt, rep, num_test, rng)
    D, F = codes.shape[1], factors.shape[1]
    importance = np.zeros((D, F))
    acc_train, acc_test = [], []
    for j in range(F):
        model = ensemble.GradientBoostingClassifier(random_state=seed).fit(codes, factors[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        acc_train.append(np.mean(model.predict(codes) == factors[:, j]))
        acc_test.append(np.mean(model.predict(codes_t) == factors_t[:, j]))
    return {"dci_disentanglement": dci_disentanglement(importance), "dci_completeness": dci_completeness(importance),
            "dci_informativeness_train": float(np.mean(acc_train)),
            "dci_informativeness": float(np.mean(acc_test)), "importance_matrix": importance.tolist()}


def dci_disentanglement(importance: np.ndarray) -> float:
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    if importance.sum() == 0:
        importance = np.ones_like(importance)
    weight = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_code * weight))


def dci_completeness(importance: np.ndarray) -> float:
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])
    if importance.sum() == 0:
        importance = np.ones_like(importance)
    weight = importance.sum(axis=0) / importance.sum()
    return float(np.sum(per_factor * weight))


def modularity(mi: np.ndarray) -> float:
    sq = np.square(mi)
    top = np.max(sq, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (np.sum(sq, axis=1) - top) / (top * (sq.shape[1] - 1.0))
    score = 1.0 - delta
    score[top == 0] = 0.0
    return float(np.mean(score))


def _macro_auc(y_bin: np.ndarray, proba: np.ndarray) -> float:
    """Macro ROC-AUC over the classes that the sample holds both in and out of (small samples miss some)."""
    cols = (y_bin.min(0) == 0) & (y_bin.max(0) == 1)
    return float(metrics.roc_auc_score(y_bin[:, cols], proba[:, cols])) if cols.any() else float("nan")


def modularity_explicitness(gt: GroundTruth, rep: Representation, seed: int = 0, num_train: int = 10_000,
                            num_test: int = 5_000, num_bins: int = 20) -> dict:
    rng = np.random.default_rng(seed)
    codes, factors = factor_codes(gt, rep, num_train, rng)
    codes_t, factors_t = factor_codes(gt, rep, num_test, rng)
    mod = modularity(mutual_information_matrix(codes, factors, num_bins))
    mean, std = codes.mean(0), codes.std(0)
    std = np.where(std > 0, std, 1.0)
    x_tr, x_te = (codes - mean) / std, (codes_t - mean) / std
    exp_tr, exp_te, converged = [], [], True
    for j in range(factors.shape[1]):
        clf, ok = _fit_quietly(linear_model.LogisticRegression(), x_tr, factors[:, j])   # disentanglement_lib's defaults
        converged &= ok
        mlb = preprocessing.MultiLabelBinarizer(classes=clf.classes_)
        exp_tr.append(_macro_auc(mlb.fit_transform(factors[:, j:j + 1]), clf.predict_proba(x_tr)))
        known = np.isin(factors_t[:, j], clf.classes_)
        exp_te.append(_macro_auc(mlb.fit_transform(factors_t[known, j:j + 1]), clf.predict_proba(x_te[known])))
    return {"modularity": mod, "explicitness_train": float(np.mean(exp_tr)), "explicitness": float(np.mean(exp_te)),
            "explicitness_converged": converged}


def _scaled_counts(name: str, scale: float) -> dict[str, int]:
    return {k: max(10, int(v * scale)) for k, v in _COUNTS[name].items()}


def images_needed(names=None, scale: float = 1.0, batch_size: int = 64) -> int:
    """How many images the named metrics (default: all) render and encode at ``scale``: the beta-VAE
    and FactorVAE metrics use a batch of ``batch_size`` images per point, the others one."""
    total = 0
    for name in names or METRICS:
        kw = _scaled_counts(name, scale)
        if name == "beta_vae":
            total += 2 * batch_size * (kw["num_train"] + kw["num_eval"])
        elif name == "factor_vae":
            total += kw["num_variance_estimate"] + batch_size * (kw["num_train"] + kw["num_eval"])
        else:
            total += sum(kw.values())
    return total


def evaluate_disentanglement(model, names=None, *, seed: int = 0, scale: float = 1.0, gt: GroundTruth | None = None,
                             progress: Callable[[str, int, int], None] | None = None,
                             max_images: int | None = None) -> dict:
    """Run the named metrics (default: all) on a model's encoder mean over dSprites.

    ``scale`` shrinks every sample count (0.1 for a quick look in the app); 1.0 uses
    disentanglement_lib's defaults. Each metric is seeded, so the same model gives the same score.
    ``max_images`` refuses, before anything runs, a scale that would encode more images than that.
    """
    names = list(names or METRICS)
    needed = images_needed(names, scale)
    if max_images is not None and needed > max_images:
        raise VAEError(f"The disentanglement metrics at {scale:g} of the default sample counts encode {needed:,} "
                       f"images; the limit is {max_images:,}. Choose a smaller share.")
    gt = gt or DSpritesTruth()
    rep = model_representation(model)
    results = {}
    for i, name in enumerate(names):
        if progress:
            progress(name, i, len(names))
        results.update(METRICS[name](gt, rep, seed=seed, **_scaled_counts(name, scale)))
    if progress:
        progress("done", len(names), len(names))
    return results


# disentanglement_lib's sample counts (unsupervised_study_v1), per metric
_COUNTS = MappingProxyType({
    "beta_vae": MappingProxyType(dict(num_train=10_000, num_eval=5_000)),
    "factor_vae": MappingProxyType(dict(num_train=10_000, num_eval=5_000, num_variance_estimate=10_000)),
    "mig": MappingProxyType(dict(num_train=10_000)),
    "sap": MappingProxyType(dict(num_train=10_000, num_test=5_000)),
    "dci": MappingProxyType(dict(num_train=10_000, num_test=5_000)),
    "modularity_explicitness": MappingProxyType(dict(num_train=10_000, num_test=5_000)),
})


METRICS = MappingProxyType({
    "beta_vae": beta_vae_metric,
    "factor_vae": factor_vae_metric,
    "mig": mig,
    "sap": sap,
    "dci": dci,
    "modularity_explicitness": modularity_explicitness,
})
