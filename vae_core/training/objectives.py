"""Likelihoods, the closed-form KL, and the training objectives, each reporting its loss by named parts.

Conventions: per-image quantities have shape (B,) (or (k, B) with k posterior samples);
``loss_parts`` returns scalar batch means, with "loss" the quantity that is minimised.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..models.base import LOG_2PI, Posterior, VAEBase, standard_normal_log_prob
from ..models.hvae import HierarchicalVAE
from ..latent.class_style import classifies

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


# ---------------------------------------------------------------------------------------------
# M2 (Kingma et al., 2014): labelled and unlabelled images in one objective


def m2_labelled_terms(model: VAEBase, x: torch.Tensor, y: torch.Tensor,
                      eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-log p(x | y, z) at z = mu + std * eps from q(z | x, y), and KL(q(z | x, y) || p(z)); each (B,)."""
    post = model.encode(x, y)
    recon = -log_likelihood(model, model.decode_logits(post.rsample(eps), y), x)
    return recon, post.kl()


def m2_labelled_elbo(model: VAEBase, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """-L(x, y), the bound on log p(x, y): log p(x | y, z) - KL(q(z | x, y) || p(z)) + log p(y), per image (B,)."""
    recon, kl = m2_labelled_terms(model, x, y, eps)
    return -recon - kl - math.log(model.num_classes)


def m2_unlabelled_elbo(model: VAEBase, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """-U(x), the bound on log p(x): sum over classes of q(y | x) (-L(x, y)), plus the entropy of q(y | x).

    Every class is summed over exactly, not sampled; eps (K, B, *latent) holds one draw of z per class.
    """
    return _m2_unlabelled(model, x, eps, kl_weight=1.0)[0]


def _m2_unlabelled(model: VAEBase, x: torch.Tensor, eps: torch.Tensor, kl_weight: float):
    """(-U(x), E_q(y|x)[recon], E_q(y|x)[KL]), each (B,); the KL weighted by kl_weight inside -U."""
    K, B = model.num_classes, x.shape[0]
    xs = x.unsqueeze(0).expand(K, *x.shape).reshape(K * B, *x.shape[1:])          # (K*B, C, H, W), class-major
    ys = torch.arange(K, device=x.device).repeat_interleave(B)                    # (K*B,)
    recon, kl = (t.view(K, B) for t in m2_labelled_terms(model, xs, ys, eps.reshape(K * B, *eps.shape[2:])))
    log_q = F.log_softmax(model.class_logits(x).float(), dim=-1).T                # (K, B)
    q = log_q.exp()
    elbo = -recon - kl_weight * kl - math.log(K)                                  # (K, B)
    return (q * elbo).sum(0) - (q * log_q).sum(0), (q * recon).sum(0), (q * kl).sum(0)


def m2_loss_parts(model: VAEBase, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *, step: int, total_steps: int,
                  randn: Randn, labelled_share: float = 1.0) -> dict[str, torch.Tensor]:
    """The M2 objective on a batch whose labels are -1 where hidden, by named parts (batch means).

    loss = mean over labelled images of L(x, y) + mean over unlabelled ones of U(x)
           + alpha / labelled_share * mean over labelled images of -log q(y | x),
    where labelled_share is the fraction of the training images that carry a label. Kingma et al.
    weight the classification term by alpha * N / N_labelled per labelled image (their alpha = 0.1 N
    on a sum over the data set): the same weight, written for batch means. beta and KL annealing
    weight the KL inside both bounds. 'total' is the negative ELBO per image (of log p(x, y) for a
    labelled image, of log p(x) for another), 'recon' and 'kl' its parts (expected under q(y | x)).
    """
    if y is None:
        raise ValueError("m2_loss_parts needs labels, -1 for the hidden ones")
    w = kl_weight(cfg, step, total_steps)
    lab = y >= 0
    n_l, n_u = int(lab.sum()), int((~lab).sum())
    parts: dict[str, torch.Tensor] = {}
    loss = x.new_zeros(()).float()
    neg_elbo, recon_sum, kl_sum = [], [], []
    if n_l:
        x_l, y_l = x[lab], y[lab]
        recon, kl = m2_labelled_terms(model, x_l, y_l, randn((n_l, *model.latent_shape)))
        neg_l = recon + w * kl + math.log(model.num_classes)
        ce = F.cross_entropy(model.class_logits(x_l).float(), y_l)
        parts.update(labelled=neg_l.mean(), classifier=ce)
        loss = loss + neg_l.mean() + cfg.alpha / labelled_share * ce
        neg_elbo.append(neg_l + (1 - w) * kl), recon_sum.append(recon), kl_sum.append(kl)
    if n_u:
        x_u = x[~lab]
        elbo_u, recon, kl = _m2_unlabelled(model, x_u, randn((model.num_classes, n_u, *model.latent_shape)), w)
        parts["unlabelled"] = -elbo_u.mean()
        loss = loss - elbo_u.mean()
        neg_elbo.append(-elbo_u + (1 - w) * kl), recon_sum.append(recon), kl_sum.append(kl)
    parts.update(recon=torch.cat(recon_sum).mean(), kl=torch.cat(kl_sum).mean(), loss=loss,
                 total=torch.cat(neg_elbo).mean(), kl_weight=torch.tensor(float(w)))
    return parts


def loss_parts(model: VAEBase, x: torch.Tensor, y: torch.Tensor | None, cfg: TrainConfig, *,
               step: int, total_steps: int, randn: Randn, dataset_size: int,
               labelled_share: float = 1.0) -> dict[str, torch.Tensor]:
    """One minibatch's objective, by named parts (batch means). 'loss' is what gets minimised;
    'total' is always the negative ELBO, so runs with different objectives stay comparable.
    An M2 takes labels with -1 where hidden, and the share of training images with a label."""
    if classifies(model):
        return m2_loss_parts(model, x, y, cfg, step=step, total_steps=total_steps, randn=randn,
                             labelled_share=labelled_share)
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
