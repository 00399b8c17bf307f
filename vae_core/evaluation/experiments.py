"""Two experiments that ask what a VAE is good for beyond its samples, each run from the command line
(``python -m vae_core experiment semi-supervised | augmentation``) and reported as mean and spread over seeds.

Semi-supervised learning (Kingma et al., 2014), on the test split, with the same few labels for all three:
    plain   a small classifier trained on the labelled images alone
    M1      the same classifier on the posterior means of a VAE trained on every training image (no labels)
    M2      the classifier q(y | x) of an M2 trained on every training image, with only those labels
Data augmentation by the posterior: the same small classifier trained on a class-balanced handful of
labelled images, with and without ``per_image`` posterior draws of each (``vae_core.latent.augment``), and, as a
yardstick, with as many copies shifted by a few pixels.

A seed fixes the labelled subset (``class_balanced_indices``), every network's initial weights and
every random draw. Every classifier trains for the same number of steps on batches drawn with
replacement, so a larger (augmented) training set costs no extra steps. Nothing is tuned on the
test split: the settings are fixed beforehand and reported with the results.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TrainConfig
from ..data import ImageSet, load_dataset
from ..errors import VAEError
from ..io.loading import load_model
from ..io.run_folder import RunConfig
from ..latent import explore
from ..latent.augment import augment_dataset, with_originals
from ..models import M2Config, MLPConfig, VAEBase
from ..models.base import mlp
from ..training.loop import init_model, train

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class ClassifierSetup:
    """The small classifier every arm of both experiments trains: an MLP on flattened inputs."""

    hidden_dims: tuple[int, ...] = (500,)
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3


def fit_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, setup: ClassifierSetup = ClassifierSetup(),
                   seed: int = 0) -> nn.Module:
    """An MLP classifier on inputs x (N, ...) with labels y (N,), trained for ``setup.steps`` Adam steps on
    batches drawn with replacement; its weights and batches come from ``seed`` (the global RNG is untouched)."""
    if len(x) == 0:
        raise VAEError("There are no labelled examples to train the classifier on.")
    x = x.flatten(1).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = mlp([x.shape[1], *setup.hidden_dims, num_classes])
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=setup.lr)
    for _ in range(setup.steps):
        idx = torch.randint(len(x), (min(setup.batch_size, len(x)),), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.inference_mode()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((net(x.flatten(1).float()).argmax(1) == y).float().mean())


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: list[dict], keys: tuple[str, ...], baseline: Callable[[dict], tuple] | None = None) -> list[dict]:
    """Rows grouped by ``keys`` (in first-seen order) with the mean, sample standard deviation and count of accuracy.

    ``baseline(row)`` names the group each row is compared with (its ``keys`` values): the same seeds'
    differences from it, in accuracy, are summarised too ("diff", "diff_std"). The arms of one seed
    share their labelled images, so these paired differences vary less than the accuracies do.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    by_seed = {(tuple(r[k] for k in keys), r["seed"]): r["accuracy"] for r in rows}
    out = []
    for key, members in groups.items():
        mean, std = _mean_sd([r["accuracy"] for r in members])
        entry = {**dict(zip(keys, key)), "mean": mean, "std": std, "n": len(members)}
        if baseline is not None:
            diffs = [r["accuracy"] - by_seed[(baseline(r), r["seed"])] for r in members
                     if (baseline(r), r["seed"]) in by_seed]
            if diffs and baseline(members[0]) != key:
                entry["diff"], entry["diff_std"] = _mean_sd(diffs)
        out.append(entry)
    return out


def markdown_table(summary: list[dict], keys: tuple[str, ...], headers: tuple[str, ...],
                   baseline_name: str = "") -> str:
    """A markdown table: the grouping columns, test accuracy as mean ± standard deviation over seeds, the paired
    difference from the baseline (in percentage points) when ``baseline_name`` says what it is, and the seeds."""
    diff_head = f" vs {baseline_name}, same seeds (points) |" if baseline_name else ""
    lines = ["| " + " | ".join(headers) + " | test accuracy (mean ± sd) |" + diff_head + " seeds |",
             "|" + "---|" * len(headers) + "---:|" + ("---:|" if baseline_name else "") + "---:|"]
    for s in summary:
        cells = [str(s[k]) for k in keys]
        diff = ""
        if baseline_name:
            diff = f" {100 * s['diff']:+.1f} ± {100 * s['diff_std']:.1f} |" if "diff" in s else " |"
        lines.append("| " + " | ".join(cells) + f" | {100 * s['mean']:.1f}% ± {100 * s['std']:.1f} |" + diff +
                     f" {s['n']} |")
    return "\n".join(lines)


def report(which: str, rows: list[dict]) -> str:
    """The markdown table of an experiment's rows (as ``semi_supervised_experiment`` or
    ``augmentation_experiment`` return them, or as their JSON file holds them)."""
    if which == "semi-supervised":
        keys = SEMI_SUPERVISED_KEYS
        summary = summarize(rows, keys, baseline=lambda r: ("plain classifier", r["labels_per_class"]))
        return markdown_table(summary, keys, ("method", "labels per class"), "the plain classifier")
    first = rows[0]["training set"]
    summary = summarize(rows, AUGMENTATION_KEYS, baseline=lambda r: (first,))
    return markdown_table(summary, AUGMENTATION_KEYS, ("training set",), "labelled images only")


def _train_to_end(config: RunConfig, data: ImageSet, test: ImageSet) -> tuple[VAEBase, dict]:
    """Train through ``vae_core.training.loop`` (the code path of ``python -m vae_core train``); the model and its final
    held-out metrics."""
    model = init_model(config.model, config.train.seed)
    final = {}
    for ev in train(config, data, test, model=model):
        if ev.kind == "epoch" and ev.eval:
            final = ev.eval
    return model.eval(), final


# ---------------------------------------------------------------------------------------------
# Semi-supervised learning: plain classifier, M1, M2


@dataclasses.dataclass(frozen=True)
class SemiSupervisedSetup:
    dataset: str = "mnist-5k"
    labels_per_class: tuple[int, ...] = (10, 100)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 50                          # of the M1 VAE and of M2
    hidden_dims: tuple[int, ...] = (500,)     # of the VAEs' encoders and decoders (Kingma et al.: 500)
    latent_dim: int = 50                      # (Kingma et al.: 50)
    alpha: float = 0.1                        # M2's classification weight (Kingma et al.: 0.1)
    batch_size: int = 128
    lr: float = 1e-3
    classifier: ClassifierSetup = ClassifierSetup()
    threads: int = 0                          # torch threads (0: torch's choice; 1 is faster on a busy machine)
    device: str = "auto"

    def train_config(self, seed: int, **changes) -> TrainConfig:
        return TrainConfig(dataset=self.dataset, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           seed=seed, eval_every=self.epochs, sample_every=0, threads=self.threads,
                           device=self.device, **changes)


SEMI_SUPERVISED_KEYS = ("method", "labels_per_class")


def semi_supervised_experiment(setup: SemiSupervisedSetup = SemiSupervisedSetup(), log: Log = print) -> list[dict]:
    """Test accuracy of a plain classifier, M1 and M2 with the same labelled subset, for every labels-per-class
    and seed: one row each (method, labels_per_class, seed, accuracy, seconds)."""
    train_set, test_set = load_dataset(setup.dataset, "train"), load_dataset(setup.dataset, "test")
    if train_set.labels is None or test_set.labels is None:
        raise VAEError(f"{setup.dataset} has no labels; the experiment needs a labelled dataset.")
    k = train_set.num_classes
    x_train, x_test = train_set.float_images(), test_set.float_images()
    rows = []
    for seed in setup.seeds:
        t0 = time.perf_counter()
        m1_config = RunConfig(MLPConfig(in_shape=train_set.shape, hidden_dims=setup.hidden_dims,
                                        latent_dim=setup.latent_dim), setup.train_config(seed))
        vae, _ = _train_to_end(m1_config, train_set, test_set)
        codes_train, codes_test = explore.encode_dataset(vae, train_set), explore.encode_dataset(vae, test_set)
        m1_seconds = time.perf_counter() - t0
        log(f"seed {seed}: the M1 VAE trained on {len(train_set)} unlabelled images in {m1_seconds:.0f} s")
        for per_class in setup.labels_per_class:
            _, idx = train_set.labelled_subset(per_class, seed)
            y = train_set.labels[idx]
            t1 = time.perf_counter()
            plain = fit_classifier(x_train[idx], y, k, setup.classifier, seed)
            rows.append({"method": "plain classifier", "labels_per_class": per_class, "seed": seed,
                         "accuracy": accuracy(plain, x_test, test_set.labels), "seconds": time.perf_counter() - t1})
            t1 = time.perf_counter()
            m1 = fit_classifier(codes_train[idx], y, k, setup.classifier, seed)
            rows.append({"method": "M1 (classifier on VAE codes)", "labels_per_class": per_class, "seed": seed,
                         "accuracy": accuracy(m1, codes_test, test_set.labels),
                         "seconds": time.perf_counter() - t1 + m1_seconds})
            t1 = time.perf_counter()
            m2_config = RunConfig(M2Config(in_shape=train_set.shape, hidden_dims=setup.hidden_dims,
                                           latent_dim=setup.latent_dim, num_classes=k,
                                           classifier_dims=setup.classifier.hidden_dims),
                                  setup.train_config(seed, labels_per_class=per_class, alpha=setup.alpha))
            _, metrics = _train_to_end(m2_config, train_set, test_set)
            rows.append({"method": "M2", "labels_per_class": per_class, "seed": seed,
                         "accuracy": metrics["accuracy"], "seconds": time.perf_counter() - t1})
            log(f"seed {seed}, {per_class} labels per class: " + ", ".join(
                f"{r['method']} {100 * r['accuracy']:.1f}%" for r in rows[-3:]) +
                f" (M2 trained in {rows[-1]['seconds']:.0f} s)")
    return rows


# ---------------------------------------------------------------------------------------------
# Data augmentation by the posterior


@dataclasses.dataclass(frozen=True)
class AugmentationSetup:
    dataset: str = "mnist-5k"
    model: str = "mnist-mlp"                  # trained on the training split without labels: nothing leaks
    labels_per_class: int = 10                # 100 labelled images on a 10-class set
    per_image: int = 10
    scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    mode: str = "posterior"
    shift: int = 2                            # the yardstick: copies shifted by up to this many pixels
    seeds: tuple[int, ...] = (0, 1, 2)
    classifier: ClassifierSetup = ClassifierSetup()
    device: str = "cpu"


AUGMENTATION_KEYS = ("training set",)


def random_shifts(data: ImageSet, per_image: int, max_shift: int, seed: int) -> ImageSet:
    """``per_image`` copies of every image moved by up to ``max_shift`` pixels each way (zeros shifted in)."""
    if max_shift < 0 or per_image < 1:
        raise VAEError("The shift must be non-negative and per_image at least 1.")
    gen = torch.Generator().manual_seed(seed)
    n, (_, h, w), s = len(data), data.shape, max_shift
    padded = F.pad(data.images, (s, s, s, s))                                 # (N, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * s + 1, (n, per_image, 2), generator=gen)
    out = torch.stack([padded[i, :, oy:oy + h, ox:ox + w] for i in range(n) for oy, ox in offsets[i].tolist()])
    labels = data.labels.repeat_interleave(per_image) if data.labels is not None else None
    return dataclasses.replace(data, images=out, labels=labels, name=f"{data.name} shifted")


def augmentation_experiment(setup: AugmentationSetup = AugmentationSetup(), log: Log = print) -> list[dict]:
    """Test accuracy of the small classifier on a labelled handful, alone and with each kind of augmentation:
    one row per (training set, seed)."""
    model = load_model(setup.model, device=setup.device)
    c, h, _ = model.config.in_shape
    train_set = load_dataset(setup.dataset, "train", image_size=h, channels=c)
    test_set = load_dataset(setup.dataset, "test", image_size=h, channels=c)
    if train_set.labels is None or test_set.labels is None:
        raise VAEError(f"{setup.dataset} has no labels; the experiment needs a labelled dataset.")
    k = train_set.num_classes
    x_test = test_set.float_images()
    rows = []
    for seed in setup.seeds:
        labelled, _ = train_set.labelled_subset(setup.labels_per_class, seed)
        n, m = len(labelled), setup.per_image
        arms = [(f"{n} labelled images only", labelled)]
        for scale in setup.scales:
            what = "reconstructions" if scale == 0 else f"posterior draws, scale {scale:g}"
            if setup.mode == "prior":
                what = f"prior draws of each class, scale {scale:g}"
            aug = augment_dataset(model, labelled, m, scale, setup.mode, seed=seed)
            arms.append((f"+ {n * m} {what}", with_originals(labelled, aug)))
        arms.append((f"+ {n * m} copies shifted up to {setup.shift} px",
                     with_originals(labelled, random_shifts(labelled, m, setup.shift, seed))))
        for name, data in arms:
            net = fit_classifier(data.float_images(), data.labels, k, setup.classifier, seed)
            rows.append({"training set": name, "seed": seed, "accuracy": accuracy(net, x_test, test_set.labels)})
        log(f"seed {seed}: " + ", ".join(f"{r['training set']}: {100 * r['accuracy']:.1f}%"
                                         for r in rows[-len(arms):]))
    return rows


__all__ = ["AUGMENTATION_KEYS", "AugmentationSetup", "ClassifierSetup", "SEMI_SUPERVISED_KEYS", "SemiSupervisedSetup",
           "accuracy", "augmentation_experiment", "fit_classifier", "markdown_table", "random_shifts", "report",
           "semi_supervised_experiment", "summarize"]
