"""Held-out evaluation: ELBO by parts, the IWAE log-likelihood estimate, KL per dimension, active units."""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Callable

import torch

from ..data import ImageSet
from ..models import VAEBase
from ..models.vq import codebook_perplexity
from ..training.objectives import iwae_bound, log_importance_weights, log_likelihood

AU_THRESHOLD = 0.01     # Burda et al. (2016): a unit is active if Cov_x(E_q[z_d|x]) > 0.01

# What each evaluation key means, in words and units: one home for the model card table, the app and the CLI.
METRIC_LABELS = MappingProxyType({
    "elbo": "ELBO (nats per image)",
    "recon": "reconstruction -log-likelihood (nats per image)",
    "kl": "KL to the prior (nats per image)",
    "mse": "reconstruction MSE (per pixel, images in [0, 1])",
    "active_units": "active units",
    "log_likelihood": "IWAE log p(x) (nats per image)",
    "log_likelihood_se": "IWAE log p(x): standard error over images (nats)",
    "bits_per_dim": "IWAE -log p(x) (bits/dim; discretised to 256 grey levels for a Gaussian or Laplace model)",
    "elbo_bits_per_dim": "ELBO (bits/dim)",
    "scored_as": "what the ELBO and log p(x) figures are (grey-level cross-entropy, binarized log p(x), density)",
    "prior_code_nll": "code prior -log p(codes) (nats per image)",
    "codebook_usage": "codebook usage (share of codes used)",
    "perplexity": "codebook perplexity (codes in effective use)",
    "accuracy": "classifier accuracy (share correct)",
})
# A Bernoulli likelihood scored on grey levels in [0, 1] (not on 0/1 images) is a cross-entropy against grey
# targets, with an entropy floor of its own: its ELBO and IWAE figures are named this wherever they are shown,
# so nobody sets them beside a binarized-MNIST log p(x) (evaluate --binarized gives that one).
GREY_LEVEL = "grey-level cross-entropy"
GREY_LEVELS = 256           # 8-bit data: the levels k/255 a continuous density is discretised to for bits/dim
Z95 = 1.96                  # a 95% normal interval: mean ± Z95 standard errors
MI_NEAR_CEILING = 0.95      # an I(x; z) estimate above this share of its ceiling log N cannot tell models apart


def metric_label(key: str) -> str:
    """A metric's name in words with its unit (the key itself when it is not one of ours)."""
    return METRIC_LABELS.get(key, key)


def scored_as(likelihood: str, binarization: int | None) -> str:
    """What a model's ELBO and IWAE figures are on these images, in a few words: one wording everywhere."""
    if likelihood != "bernoulli":
        return f"{likelihood} density"
    return GREY_LEVEL if binarization is None else "binarized log p(x)"


def binarisation_note(likelihood: str, binarization: int | None) -> str:
    """Which images the likelihood scored, and so what its figures can be set beside."""
    if likelihood != "bernoulli":
        return (f"none: a continuous {likelihood} density on [0, 1] pixel values (nats); bits/dim discretise it to "
                f"the {GREY_LEVELS} grey levels (-log p(x) + D log {GREY_LEVELS - 1}, over D ln 2)")
    if binarization is None:
        return (f"none: grey levels in [0, 1] are used as Bernoulli targets, so these figures are the {GREY_LEVEL} "
                "(not a binarized-MNIST log p(x); evaluate --binarized gives that)")
    return (f"one fixed stochastic binarization of these images (each pixel 1 with probability its grey level, "
            f"seed {binarization}): log p(x) of binary images, comparable in kind to binarized-MNIST figures")


def bits_per_dim(log_likelihood: float, likelihood: str, dims: int) -> float:
    """-log p(x) per dimension in bits. A Bernoulli's p(x) is already a probability; a continuous density on
    [0, 1] is discretised to the 8-bit levels k/255, each a bin of width 1/255 (the dequantisation offset
    log 255 per dimension), so its bits/dim are those of a probability too."""
    offset = 0.0 if likelihood == "bernoulli" else dims * math.log(GREY_LEVELS - 1)
    return (-log_likelihood + offset) / (dims * math.log(2))


def interval95(values: torch.Tensor) -> dict:
    """Mean of per-image values, its standard error (sample sd / sqrt n) and the 95% interval mean ± 1.96 se."""
    v = values.double().cpu()
    mean = float(v.mean())
    se = float(v.std(unbiased=True)) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return {"mean": mean, "se": se, "ci95": [mean - Z95 * se, mean + Z95 * se]}


def mutual_information_note(mi: float, n_images: int) -> str:
    """Beside an I(x; z) estimate from ``n_images`` images: its ceiling log N, and whether it is near it."""
    ceiling = math.log(max(n_images, 1))
    note = f"at most log N = log {n_images:,} = {ceiling:.2f} nats with this estimator"
    if mi >= MI_NEAR_CEILING * ceiling:
        note += ("; this estimate is near that ceiling, so it says only that the codes tell these images apart, "
                 "not how much more one model's codes carry than another's (more images raise the ceiling)")
    return note


@torch.inference_mode()
def evaluate_model(model: VAEBase, data: ImageSet, *, batch_size: int = 500, iwae_k: int = 0,
                   seed: int = 0, max_images: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Evaluate on ``data`` with a seeded generator, so the same model gives the same numbers.

    iwae_k > 0 adds the IWAE estimate of log p(x) with k importance samples, batched over
    images and samples (a streaming logsumexp over chunks of samples). A model that classifies (an M2)
    adds its accuracy: how often q(y | x) puts the most probability on the image's label.
    """
    was_training = model.training
    model.eval()
    n = len(data) if max_images is None else min(len(data), max_images)
    x0, y0 = next(data.batches(1, model.device, with_labels=bool(model.num_classes), limit=1))
    tally = _Tally(model, torch.Generator(device=model.device).manual_seed(seed), iwae_k,
                   point_mass=model.encode(x0, y0).logvar is None,     # e.g. TAESD: no posterior variance, no ELBO
                   binarization=data.binarization)
    done = 0
    try:
        for x, y in data.batches(batch_size, model.device, with_labels=bool(model.num_classes), limit=n):
            tally.add(x, y)
            done += len(x)
            if progress:
                progress(done, n)
    finally:
        model.train(was_training)
    return tally.results(n)


class _Tally:
    """What ``evaluate_model`` adds up over the batches, image by image, and the metrics it makes of the sums."""

    def __init__(self, model: VAEBase, gen: torch.Generator, iwae_k: int, point_mass: bool, binarization: int | None):
        self.model, self.gen, self.iwae_k, self.point_mass = model, gen, iwae_k, point_mass
        self.binarization = binarization                     # the seed of the binarized images scored, or None
        self.vq = model.as_codebook()                        # a codebook: KL is log K per position
        self.classifier = model.as_classifier()              # an M2: its accuracy too
        self.code_prior = model.learned_prior()              # a VQ-VAE's learned prior over its code grids
        self.sums = {"recon": 0.0, "kl": 0.0, "mse": 0.0, "correct": 0.0}
        self.iwae_ll: list[torch.Tensor] = []                # each image's IWAE log p(x), for its standard error
        self.kl_dim = self.mu_sum = self.mu_sq = None
        self.counts = torch.zeros(self.vq.config.codebook_size if self.vq is not None else 1, device=model.device)

    def add(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """One batch: its reconstruction terms, KL (or code use), IWAE, accuracy and posterior-mean moments."""
        model, sums = self.model, self.sums
        post = model.encode(x, y)
        mu = post.mu.flatten(1)
        eps = None if self.point_mass else torch.randn(post.mu.shape, generator=self.gen, device=model.device)
        d = model.draw(x, y, eps, post)
        sums["recon"] += -log_likelihood(model, d.out, x).sum().item()
        sums["mse"] += (model.decode(post.mode(), y) - x).pow(2).flatten(1).mean(1).sum().item()
        if self.vq is not None:
            self._add_codes(self.vq.codes(post.mu))
        elif not self.point_mass:
            kl = d.kl_per_dim.flatten(1)
            sums["kl"] += kl.sum().item()
            self.kl_dim = kl.sum(0) if self.kl_dim is None else self.kl_dim + kl.sum(0)
            if self.iwae_k:
                self.iwae_ll.append(iwae_log_likelihood(model, x, y, post, self.iwae_k, self.gen).double().cpu())
        if self.classifier is not None:
            sums["correct"] += (self.classifier.predict(x) == y).sum().item()
        self.mu_sum = mu.sum(0) if self.mu_sum is None else self.mu_sum + mu.sum(0)
        self.mu_sq = mu.pow(2).sum(0) if self.mu_sq is None else self.mu_sq + mu.pow(2).sum(0)

    def _add_codes(self, codes: torch.Tensor) -> None:
        """A VQ-VAE's batch: how often each code is used, and -log p(codes) under its learned prior."""
        self.counts += torch.bincount(codes.flatten(), minlength=self.counts.numel()).float()
        if self.code_prior is not None:
            self.sums["kl"] -= self.code_prior.log_prob(codes).sum().item()

    def results(self, n: int) -> dict:
        """The metrics, per image, of the ``n`` images added."""
        sums, is_vq, point_mass = self.sums, self.vq is not None, self.point_mass
        if is_vq and self.code_prior is None:
            sums["kl"] = n * vq_kl(self.model)
        out = {"n_images": n, "recon": sums["recon"] / n, "mse": sums["mse"] / n}
        if is_vq or not point_mass:
            out.update(kl=sums["kl"] / n, elbo=-(sums["recon"] + sums["kl"]) / n)
        if not is_vq:
            var = (self.mu_sq / n - (self.mu_sum / n).pow(2)).clamp_min(0)
            out.update(active_units=int((var > AU_THRESHOLD).sum()), latent_units=int(var.numel()),
                       latent_variance=var.tolist())
        if self.classifier is not None:
            out["accuracy"] = sums["correct"] / n
        likelihood = self.model.config.likelihood
        out.update(binarisation=binarisation_note(likelihood, self.binarization),
                   scored_as=scored_as(likelihood, self.binarization), binarization_seed=self.binarization)
        if is_vq:
            out.update(self._code_results(out))
        elif not point_mass:
            out["kl_per_dim"] = (self.kl_dim / n).tolist()
        if self.iwae_k and not point_mass:
            ll = interval95(torch.cat(self.iwae_ll))
            out.update(iwae_k=self.iwae_k, log_likelihood=ll["mean"], log_likelihood_se=ll["se"],
                       log_likelihood_ci95=ll["ci95"], bits_per_dim=bits_per_dim(ll["mean"], likelihood, self._pixels),
                       estimator=f"IWAE (Burda et al., 2016), k={self.iwae_k:,} importance samples per image, drawn "
                                 f"in chunks; 95% interval: mean ± {Z95} sd/sqrt(n) over the {n:,} images")
        return out

    def _code_results(self, out: dict) -> dict:
        """A VQ-VAE's own metrics: its code prior's NLL and bits per dim (with a learned prior) and its code use."""
        res = {}
        if self.code_prior is not None:
            # The posterior is one code grid, so KL(q || p) = -log p(codes) under the learned prior, and
            # the ELBO log p(x | codes) + log p(codes) is a lower bound on log p(x).
            res.update(code_prior="autoregressive transformer", prior_code_nll=out["kl"],
                       elbo_bits_per_dim=bits_per_dim(out["elbo"], self.model.config.likelihood, self._pixels))
        res["codebook_usage"] = float((self.counts > 0).float().mean())
        res["perplexity"] = float(codebook_perplexity(self.counts))
        res["code_frequencies"] = (self.counts / self.counts.sum()).tolist()
        return res

    @property
    def _pixels(self) -> int:
        return math.prod(self.model.config.in_shape)


def vq_kl(model: VAEBase) -> float:
    """A VQ-VAE's KL per image: a one-hot posterior against a uniform prior over K codes is log K
    at every latent position."""
    return model.latent_shape[1] * model.latent_shape[2] * math.log(model.config.codebook_size)


def iwae_log_likelihood(model: VAEBase, x: torch.Tensor, y, post, k: int, generator: torch.Generator,
                        max_elements: int = 2 ** 24) -> torch.Tensor:
    """IWAE estimate of log p(x) per image with k samples, in chunks of samples so memory stays bounded (a
    streaming logsumexp). Each sample's noise is its own draw, so the chunk size never changes the estimate."""
    B = x.shape[0]
    per_sample = B * math.prod(model.config.in_shape)
    chunk = max(1, min(k, max_elements // max(per_sample, 1)))
    running = None
    for s in range(0, k, chunk):
        kk = min(chunk, k - s)
        eps = torch.stack([torch.randn(post.mu.shape, generator=generator, device=x.device) for _ in range(kk)])
        lse = torch.logsumexp(log_importance_weights(model, x, y, post, eps), 0)
        running = lse if running is None else torch.logaddexp(running, lse)
    return running - math.log(k)


__all__ = ["evaluate_model", "iwae_log_likelihood", "iwae_bound", "vq_kl", "AU_THRESHOLD", "GREY_LEVEL",
           "bits_per_dim", "binarisation_note", "interval95", "scored_as"]


@torch.inference_mode()
def mutual_information_estimate(model: VAEBase, data: ImageSet, n: int = 1000, seed: int = 0) -> float:
    """I(x; z) under the encoder, in nats (He et al., 2019): E[log q(z|x)] - E[log q(z)], with the
    aggregate posterior q(z) approximated by the mixture of the n encoded images. At most log n."""
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    sub, _ = data.seeded_subset(n, seed)
    x, y = next(sub.batches(len(sub), dev, with_labels=bool(model.num_classes)))
    post = model.encode(x, y)
    if post.logvar is None:
        raise ValueError("A VQ-VAE's encoder is deterministic; report its codebook usage instead.")
    mu, logvar = post.mu.flatten(1), post.logvar.flatten(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, device=dev)
    # log q(z|x) at the same samples as log q(z) below: the shared noise cancels in the difference.
    log_qzx = (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1)
    log_qz = []
    for start in range(0, len(z), 256):                       # (chunk, n) log q(z_i | x_j)
        zi = z[start:start + 256, None]
        lp = -0.5 * ((zi - mu[None]).pow(2) / logvar[None].exp() + logvar[None] + math.log(2 * math.pi)).sum(-1)
        log_qz.append(torch.logsumexp(lp, 1) - math.log(len(z)))
    return float((log_qzx - torch.cat(log_qz)).mean())


def collapse_warnings(eval_result: dict, kl_floor: float = 0.01) -> list[str]:
    """Plain-language warnings when the latent space carries little information."""
    if "kl_per_dim" not in eval_result:
        usage = eval_result.get("codebook_usage")
        if usage is not None and usage < 0.25:
            return [f"Only {usage:.0%} of the codebook is used. Try a smaller codebook, a lower commitment "
                    "weight, or re-initialising dead codes."]
        return []
    kl = eval_result["kl_per_dim"]
    used = sum(k > kl_floor for k in kl)
    active, total = eval_result.get("active_units", used), len(kl)
    out = []
    if used == 0 or eval_result.get("kl", 0.0) < 0.5:
        out.append(f"Posterior collapse: the KL is {eval_result.get('kl', 0.0):.2f} nats, so the decoder ignores "
                   "the latent code. Try KL annealing (--kl-anneal linear), free bits (--free-bits 0.1), "
                   "a lower beta, or a weaker decoder (fewer hidden units).")
    elif active < total / 2:
        out.append(f"Partial collapse: only {active} of {total} latent dimensions are active "
                   f"(Cov_x E[z|x] > {AU_THRESHOLD}). Fewer dimensions would do; if you need more, try "
                   "free bits or KL annealing.")
    return out
