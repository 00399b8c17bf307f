"""Likelihoods, the closed-form KL, and the training objectives, each reporting its loss by named parts.

Conventions: per-image quantities have shape (B,) (or (k, B) with k posterior samples);
``loss_parts`` returns scalar batch means, with "loss" the quantity that is minimised.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .models.base import LOG_2PI, Posterior, VAEBase, standard_normal_log_prob
from .models.hvae import HierarchicalVAE

Randn = Callable[[tuple[int, ...]], torch.Tensor]   # draws standard normal noise of a local shape


def log_likelihood(model: VAEBase, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) summed over pixels; ``out`` is the decoder's raw output, maybe with a leading k dim."""
    cfg = model.config
    x = x.expand_as(out)
    if cfg.likelihood == "bernoulli":
        lp = -F.binary_cross_entropy_with_logits(out, x, reduction="none")
    elif cfg.likelihood == "laplace":
        b = cfg.laplace_scale
        lp = -(x - out).abs() / b - math.log(2 * b)
    else:
        log_sigma = model.log_sigma if cfg.likelihood == "gaussian-learned" else torch.tensor(math.log(cfg.sigma))
        lp = -0.5 * ((x - out) * torch.exp(-log_sigma)).pow(2) - log_sigma - 0.5 * LOG_2PI
    return lp.flatten(-3).sum(-1)


def kl_weight(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """beta times the annealing factor at this step."""
    if cfg.kl_anneal == "linear":
        return cfg.beta * min(1.0, step / cfg.anneal_steps)
    if cfg.kl_anneal == "cyclical":
        # Fu et al. (2019): each cycle ramps up over its first half, then holds at 1.
        period = max(1, total_steps // cfg.anneal_cycles)
        return cfg.beta * min(1.0, (step % period) / (0.5 * period))
    return cfg.beta


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float, groups: tuple[int, ...] | None = None) -> torch.Tensor:
    """Sum over dimensions of max(batch-mean KL, free_bits) (Kingma et al., 2016).

    With ``groups`` (the sizes of consecutive groups of units: a hierarchical model's layers),
    the floor holds per group instead, as in Kingma et al.'s grouped form: each group's KL is
    max(its batch-mean KL, free_bits x its size), so a layer may spend its allowance on few units.
    """
    per_dim = kl_per_dim.flatten(1).mean(0)
    if groups is None:
        return per_dim.clamp(min=free_bits).sum()
    return sum(part.sum().clamp(min=free_bits * part.numel()) for part in per_dim.split(list(groups)))


def tc_decomposition(z: torch.Tensor, post: Posterior, dataset_size: int) -> dict[str, torch.Tensor]:
    """beta-TCVAE's split of the KL by minibatch-weighted sampling (Chen et al., 2018).

    Returns per-image estimates of the index-code mutual information, the total correlation
    and the dimension-wise KL. z: (B, D).
    """
    B = z.shape[0]
    mu, logvar = post.mu, post.logvar
    # log q(z_i,d | x_j) for every pair (i, j): (B, B, D)
    mat = -0.5 * ((z[:, None] - mu[None]).pow(2) * torch.exp(-logvar[None]) + logvar[None] + LOG_2PI)
    log_nm = math.log(dataset_size * B)
    log_qz = torch.logsumexp(mat.sum(2), dim=1) - log_nm                 # (B,)
    log_prod_qzd = (torch.logsumexp(mat, dim=1) - log_nm).sum(1)          # (B,)
    log_qzx = post.log_prob(z)
    log_pz = standard_normal_log_prob(z, 1)
    return {"mi": log_qzx - log_qz, "tc": log_qz - log_prod_qzd, "dwkl": log_prod_qzd - log_pz}


def log_importance_weights(model: VAEBase, x: torch.Tensor, y, post: Posterior, eps: torch.Tensor) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for k posterior samples; eps: (k, B, *latent). Returns (k, B)."""
    d = model.draw(x, y, eps, post)
    return log_likelihood(model, d.out, x) - d.log_ratio


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_k w_k per image, from (k, B) log weights."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def mmd_imq(z: torch.Tensor, z_prior: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 with inverse multiquadratic kernels at several scales (Tolstikhin et al., 2018)."""
    n, d = z.shape
    if n < 2:
        return z.new_zeros(())
    xx, yy, xy = torch.cdist(z, z).pow(2), torch.cdist(z_prior, z_prior).pow(2), torch.cdist(z, z_prior).pow(2)
    off = 1.0 - torch.eye(n, device=z.device, dtype=z.dtype)
    total = z.new_zeros(())
    for scale in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2.0 * d * scale
        total = total + ((c / (c + xx)) * off).sum() / (n * (n - 1)) \
            + ((c / (c + yy)) * off).sum() / (n * (n - 1)) - 2 * (c / (c + xy)).mean()
    return total


def loss_parts(model: VAEBase, x: torch.Tensor, y: torch.Tensor | None, cfg: TrainConfig, *,
               step: int, total_steps: int, randn: Randn, dataset_size: int) -> dict[str, torch.Tensor]:
    """One minibatch's objective, by named parts (batch means). 'loss' is what gets minimised;
    'total' is always the negative ELBO, so runs with different objectives stay comparable."""
    post = model.encode(x, y)
    is_vq = post.logvar is None
    parts: dict[str, torch.Tensor] = {}
    if cfg.objective == "iwae" and not is_vq:
        log_w = log_importance_weights(model, x, y, post, randn((cfg.iwae_k, *post.mu.shape)))
        with torch.no_grad():
            d = model.draw(x, y, randn(post.mu.shape), post)
        recon = -log_likelihood(model, d.out, x)
        kl_per_dim = d.kl_per_dim
        kl = kl_per_dim.flatten(1).sum(1)
        iwae = -iwae_bound(log_w)
        parts.update(recon=recon.mean(), kl=kl.mean(), iwae=iwae.mean(), loss=iwae.mean())
    else:
        d = model.draw(x, y, None if is_vq else randn(post.mu.shape), post)
        z, kl_per_dim = d.z, d.kl_per_dim
        recon = -log_likelihood(model, d.out, x)                          # (B,)
        kl = kl_per_dim.flatten(1).sum(1)                                  # (B,)
        parts.update(recon=recon.mean(), kl=kl.mean())
        w = kl_weight(cfg, step, total_steps)
        if is_vq:
            extra = model.extra_loss(post)
            private = {k: extra.pop(k) for k in ("_counts", "_z_e")}     # for codebook health, not losses
            parts.update({k: v.mean() for k, v in extra.items()})
            parts["loss"] = recon.mean() + parts["codebook"] + parts["commitment"]
            parts.update(private)
        elif cfg.objective == "tcvae":
            tc = tc_decomposition(z, post, dataset_size)
            parts.update({k: v.mean() for k, v in tc.items()})
            anneal = w / cfg.beta if cfg.beta > 0 else 1.0
            parts["loss"] = recon.mean() + anneal * (cfg.mi_weight * parts["mi"] + cfg.beta * parts["tc"]
                                                     + cfg.dwkl_weight * parts["dwkl"])
        elif cfg.objective == "wae-mmd":
            mmd = mmd_imq(z.flatten(1), randn(z.flatten(1).shape))
            parts["mmd"] = mmd
            parts["loss"] = recon.mean() + cfg.mmd_weight * mmd
        else:
            groups = model.layer_sizes if isinstance(model, HierarchicalVAE) else None
            kl_term = free_bits_kl(kl_per_dim, cfg.free_bits, groups) if cfg.free_bits > 0 else kl.mean()
            parts["loss"] = recon.mean() + w * kl_term
        parts["kl_weight"] = torch.tensor(float(w))
    if isinstance(model, HierarchicalVAE):
        # The KL of every layer, top first: the first sign of an upper layer collapsing.
        for i, part in enumerate(kl_per_dim.detach().flatten(1).split(list(model.layer_sizes), dim=1)):
            parts[f"kl_layer{i + 1}"] = part.sum(1).mean()
    parts["total"] = parts["recon"] + parts["kl"]
    return parts
