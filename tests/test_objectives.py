import math

import pytest
import torch
from torch.distributions import Laplace, Normal, kl_divergence

from vae_core import TrainConfig
from vae_core.models import MLPConfig, build_model
from vae_core.models.base import Posterior
from vae_core.training.objectives import (free_bits_kl, iwae_bound, kl_weight, log_importance_weights,
                                 log_likelihood, loss_parts, mmd_imq, tc_decomposition)
from vae_core.evaluation.metrics import iwae_log_likelihood


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(64, 10, generator=g) * 2, torch.randn(64, 10, generator=g)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(Posterior(mu, logvar).kl_per_dim(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(Posterior(mu, logvar).kl(), expected.sum(1), rtol=1e-5, atol=1e-5)


def test_kl_of_prior_with_itself_is_zero():
    z = torch.zeros(5, 7)
    assert torch.equal(Posterior(z, z).kl_per_dim(), torch.zeros(5, 7))


def test_likelihoods_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 4, 4, generator=g)
    out = torch.randn(3, 1, 4, 4, generator=g)
    for lik, dist in [("gaussian", lambda m, c: Normal(out, c.sigma)),
                      ("laplace", lambda m, c: Laplace(out, c.laplace_scale))]:
        model = build_model(MLPConfig(in_shape=(1, 4, 4), hidden_dims=(8,), latent_dim=2, likelihood=lik))
        expected = dist(model, model.config).log_prob(x).flatten(1).sum(1)
        torch.testing.assert_close(log_likelihood(model, out, x), expected, rtol=1e-5, atol=1e-4)
    model = build_model(MLPConfig(in_shape=(1, 4, 4), hidden_dims=(8,), latent_dim=2, likelihood="bernoulli"))
    xb = (x > 0.5).float()
    expected = torch.distributions.Bernoulli(logits=out).log_prob(xb).flatten(1).sum(1)
    torch.testing.assert_close(log_likelihood(model, out, xb), expected, rtol=1e-5, atol=1e-4)


def _trained_ish_model(seed=0):
    torch.manual_seed(seed)
    return build_model(MLPConfig(in_shape=(1, 6, 6), hidden_dims=(16,), latent_dim=3))


def test_iwae_bound_is_at_least_elbo_and_tightens_with_k():
    model = _trained_ish_model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 6, 6, generator=g)
    with torch.no_grad():
        post = model.encode(x)
        means = {}
        for k in (1, 5, 50):
            reps = [iwae_bound(log_importance_weights(model, x, None, post, torch.randn((k, *post.mu.shape), generator=g)))
                    for _ in range(40)]
            means[k] = torch.stack(reps).mean().item()
        # k = 1 is the ELBO itself; the mean bound rises with k.
        elbo = -(-log_likelihood(model, model.decode_logits(post.rsample(generator=g), None), x) + post.kl()).mean()
    assert means[1] == pytest.approx(elbo.item(), abs=1.0)
    assert means[5] >= means[1]
    assert means[50] >= means[5]


def _ppca_model(W, b, sigma, exact_posterior: bool):
    """An MLP with no hidden layer is linear: decoder x = Wz + b with Gaussian noise sigma."""
    d, D = W.shape
    model = build_model(MLPConfig(in_shape=(1, 1, d), hidden_dims=(), latent_dim=D, likelihood="gaussian",
                                  sigma=sigma))
    M = W.T @ W + sigma ** 2 * torch.eye(D)
    Minv = torch.linalg.inv(M)
    enc, dec = model.encoder[0], model.decoder[0]
    with torch.no_grad():
        dec.weight.copy_(W)
        dec.bias.copy_(b)
        A = Minv @ W.T                               # posterior mean: A (x - b)
        var = sigma ** 2 * torch.diagonal(Minv)      # diagonal of the posterior covariance
        if not exact_posterior:
            A = A * 0.9
            var = var * 1.5
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[:D] = A
        enc.bias[:D] = -A @ b
        enc.bias[D:] = torch.log(var)
    return model


def test_iwae_matches_exact_log_likelihood_of_probabilistic_pca():
    g = torch.Generator().manual_seed(3)
    d, D, sigma = 6, 2, 0.5
    W = torch.randn(d, D, generator=g)
    b = torch.randn(d, generator=g) * 0.1
    model = _ppca_model(W, b, sigma, exact_posterior=False).double()
    x = (b + torch.randn(20, D, generator=g, dtype=torch.float64) @ W.T.double()
         + sigma * torch.randn(20, d, generator=g, dtype=torch.float64)).view(20, 1, 1, d).float().double()
    cov = W.double() @ W.double().T + sigma ** 2 * torch.eye(d, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(b.double(), cov).log_prob(x.view(20, d))
    with torch.no_grad():
        post = model.encode(x)
        gen = torch.Generator().manual_seed(0)
        est_small = iwae_log_likelihood(model, x, None, _as_double(post), 1, gen)
        est = iwae_log_likelihood(model, x, None, _as_double(post), 5000, gen)
    assert (est - exact).abs().max().item() < 0.02
    assert (est_small - exact).abs().mean() > (est - exact).abs().mean()   # the approximate posterior matters at k=1


def _as_double(post):
    return Posterior(post.mu.double(), post.logvar.double())


def test_kl_annealing_schedules():
    lin = TrainConfig(kl_anneal="linear", anneal_steps=100, beta=4.0)
    assert kl_weight(lin, 0, 1000) == 0.0
    assert kl_weight(lin, 50, 1000) == pytest.approx(2.0)
    assert kl_weight(lin, 500, 1000) == 4.0
    cyc = TrainConfig(kl_anneal="cyclical", anneal_cycles=4, beta=1.0)
    weights = [kl_weight(cyc, s, 400) for s in range(400)]
    assert weights[0] == 0.0 and weights[100] == 0.0 and weights[200] == 0.0     # every cycle restarts
    assert weights[60] == 1.0 and weights[25] == pytest.approx(0.5)
    assert kl_weight(TrainConfig(beta=3.0), 7, 10) == 3.0


def test_free_bits_floor_every_dimension():
    kl = torch.zeros(8, 5)
    kl[:, 0] = 3.0
    assert free_bits_kl(kl, 0.5).item() == pytest.approx(3.0 + 4 * 0.5)


def test_tc_decomposition_sums_to_the_sampled_kl_and_ranks_correlation():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(256, 3, generator=g) * 2                       # independent coordinates
    post = Posterior(mu, torch.full((256, 3), -1.0))
    z = post.rsample(generator=g)
    parts = tc_decomposition(z, post, dataset_size=256)
    total = parts["mi"] + parts["tc"] + parts["dwkl"]
    torch.testing.assert_close(total, post.log_prob(z) - Normal(0, 1).log_prob(z).sum(1), rtol=1e-4, atol=1e-4)
    # The same marginals with all three coordinates equal: a larger total correlation.
    mu2 = mu[:, :1].expand(256, 3).contiguous()
    post2 = Posterior(mu2, torch.full((256, 3), -1.0))
    tc_corr = tc_decomposition(post2.rsample(generator=g), post2, 256)["tc"].mean().item()
    assert tc_corr > parts["tc"].mean().item() + 1.0


def test_minibatch_weighted_sampling_follows_its_definition():
    """Chen et al. (2018): log q(z_i) ~ log sum_j q(z_i | x_j) - log(N M), per dimension for the marginals."""
    g = torch.Generator().manual_seed(5)
    M, D, N = 6, 2, 1000
    post = Posterior(torch.randn(M, D, generator=g), torch.randn(M, D, generator=g) * 0.3)
    z = post.rsample(generator=g)
    tc = tc_decomposition(z, post, dataset_size=N)["tc"]
    for i in range(M):
        q = [[Normal(post.mu[j, d], post.std[j, d]).log_prob(z[i, d]).item() for d in range(D)] for j in range(M)]
        log_qz = math.log(sum(math.exp(sum(q[j])) for j in range(M))) - math.log(N * M)
        log_prod = sum(math.log(sum(math.exp(q[j][d]) for j in range(M))) - math.log(N * M) for d in range(D))
        assert tc[i].item() == pytest.approx(log_qz - log_prod, abs=1e-4)


def test_mmd_separates_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    assert abs(mmd_imq(a, b).item()) < 0.02
    assert mmd_imq(a + 2.0, b).item() > 0.2


@pytest.mark.parametrize("objective", ["elbo", "tcvae", "iwae", "wae-mmd"])
def test_every_objective_reports_named_parts(objective):
    model = _trained_ish_model()
    x = torch.rand(16, 1, 6, 6)
    parts = loss_parts(model, x, None, TrainConfig(objective=objective), step=0, total_steps=10,
                       randn=lambda s, batch_axis=0: torch.randn(s), dataset_size=100)
    expected = {"elbo": set(), "tcvae": {"mi", "tc", "dwkl"}, "iwae": {"iwae"}, "wae-mmd": {"mmd"}}[objective]
    assert {"recon", "kl", "total", "loss"} | expected <= set(parts)
    assert parts["total"].item() == pytest.approx(parts["recon"].item() + parts["kl"].item(), rel=1e-5)
    parts["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_a_codebook_model_hands_its_code_use_to_the_loop_beside_its_losses():
    from vae_core.training.objectives import training_step

    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    cfg = TrainConfig()
    noise = dict(step=0, total_steps=10, randn=lambda s, batch_axis=0: torch.randn(s), dataset_size=100)
    vq = build_model({"model_type": "vq", "channels": [4, 8], "latent_dim": 5, "codebook_size": 7})
    result = training_step(vq, x, None, cfg, **noise)
    assert result.code_counts.shape == (7,) and result.code_counts.sum() == 4 * 7 * 7
    assert result.encodings.shape == (4, 5, 7, 7) and not result.encodings.requires_grad
    assert {"codebook", "commitment", "perplexity", "codebook_usage", "loss", "total"} <= set(result.parts)
    assert all(not k.startswith("_") for k in result.parts)             # losses only: no private keys
    plain = training_step(build_model(MLPConfig(in_shape=(1, 28, 28), hidden_dims=(16,), latent_dim=2)), x, None,
                          cfg, **noise)
    assert plain.code_counts is None and plain.encodings is None
