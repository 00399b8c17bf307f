"""The hierarchical VAE: known answers for its KL, its IWAE weights, and its one-layer reduction."""
import dataclasses
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vae_core import RunConfig, TrainConfig, VAEError, train
from vae_core.evaluation.metrics import evaluate_model, iwae_log_likelihood
from vae_core.models import MLPConfig, build_model, config_from_dict
from vae_core.models.hvae import HVAEConfig, HVAEConvConfig
from vae_core.training.objectives import free_bits_kl, log_importance_weights, log_likelihood, loss_parts
from vae_core.training.loop import init_model

MLP = {"model_type": "hvae", "in_shape": [1, 8, 8], "latent_dims": [2, 3, 4], "hidden_dims": [8, 12, 16]}
CONV = {"model_type": "hvae-conv", "in_shape": [1, 28, 28], "latent_dims": [2, 3], "channels": [6, 4],
        "head_channels": 2}


def _random_model(cfg, seed=0, dtype=torch.float32, scale=0.3):
    """Random weights everywhere, the zero-initialised prior heads too, so every layer's prior is non-trivial."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.to(dtype).eval()


@pytest.mark.parametrize("cfg", [MLP, CONV], ids=["mlp", "conv"])
def test_kl_per_layer_matches_torch_distributions(cfg):
    model = _random_model(cfg, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, *model.config.in_shape, generator=g, dtype=torch.float64)
    eps = torch.randn(5, model.config.latent_dim, generator=g, dtype=torch.float64)
    with torch.no_grad():
        d = model.draw(x, None, eps)
        _, layers = model._posterior_pass(x, eps)
    got = d.kl_per_dim.split(list(model.layer_sizes), dim=-1)
    assert len(layers) == model.num_layers
    for j, layer in enumerate(layers):
        q_mu, q_logvar = layer.posterior_z
        q = Normal(q_mu, torch.exp(0.5 * q_logvar))
        p = Normal(layer.prior_mu, torch.exp(0.5 * layer.prior_logvar))
        expected = kl_divergence(q, p)                                   # (B, D_j), in z coordinates
        assert expected.sum() > 0.1                                      # a real, non-trivial KL
        if j:
            assert layer.prior_logvar.abs().sum() > 0                    # the prior depends on the layers above
        torch.testing.assert_close(got[j], expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cfg", [MLP, CONV], ids=["mlp", "conv"])
def test_importance_weights_use_every_layers_prior_and_posterior(cfg):
    """log q(z|x) - log p(z) from the draw equals the sum over layers of the z-space densities."""
    model = _random_model(cfg, seed=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, *model.config.in_shape, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 4, model.config.latent_dim, generator=g, dtype=torch.float64)      # (k, B, D)
    with torch.no_grad():
        d = model.draw(x, None, eps)
        _, layers = model._posterior_pass(x, eps)
        torch.testing.assert_close(d.out, model.decode_logits(d.z), rtol=1e-6, atol=1e-6)   # decode(e) is the same pass
    expected = 0
    for layer in layers:
        q_mu, q_logvar = layer.posterior_z
        z = layer.z
        expected = expected + (Normal(q_mu, torch.exp(0.5 * q_logvar)).log_prob(z)
                               - Normal(layer.prior_mu, torch.exp(0.5 * layer.prior_logvar)).log_prob(z)).sum(-1)
    torch.testing.assert_close(d.log_ratio, expected.view(3, 4), rtol=1e-6, atol=1e-6)


def test_iwae_bound_is_at_least_the_elbo_and_rises_with_k():
    model = _random_model(MLP, seed=4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    with torch.no_grad():
        post = model.encode(x)
        means = {}
        for k, reps in ((1, 1000), (10, 100), (100, 10)):
            log_w = log_importance_weights(model, x, None, post, torch.randn((reps, k, 16, 9), generator=g))
            means[k] = torch.logsumexp(log_w, 1).sub(math.log(k)).mean().item()    # the k-sample bound, averaged
        d = model.draw(x, None, torch.randn(1000, 16, 9, generator=g))
        elbo = (log_likelihood(model, d.out, x) - d.kl_per_dim.sum(-1)).mean().item()   # closed-form KL per layer
    assert means[1] == pytest.approx(elbo, abs=0.5)                       # k = 1 is the ELBO
    assert means[10] > means[1] + 0.5 and means[100] > means[10] + 0.1    # and it tightens with k
    ll = iwae_log_likelihood(model, x, None, post, 300, torch.Generator().manual_seed(1))
    assert ll.mean().item() >= elbo


def _flat_and_one_layer():
    torch.manual_seed(0)
    flat = build_model(MLPConfig(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dim=5))
    hier = build_model(HVAEConfig(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dims=(5,)))
    f, h = flat.state_dict(), {}
    h["up.0.0.weight"], h["up.0.0.bias"] = f["encoder.0.weight"], f["encoder.0.bias"]
    h["posterior.0.weight"], h["posterior.0.bias"] = f["encoder.2.weight"], f["encoder.2.bias"]
    h["down.0.0.weight"], h["down.0.0.bias"] = f["decoder.0.weight"], f["decoder.0.bias"]
    h["out.weight"], h["out.bias"] = f["decoder.2.weight"], f["decoder.2.bias"]
    hier.load_state_dict(h, strict=True)                 # the same networks, weight for weight
    return flat, hier


def test_one_layer_reduces_exactly_to_the_flat_vae():
    flat, hier = _flat_and_one_layer()
    assert sum(p.numel() for p in flat.parameters()) == sum(p.numel() for p in hier.parameters())
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    cfg = TrainConfig(dataset="digits")

    def parts(model, objective="elbo"):
        g = torch.Generator().manual_seed(7)
        return loss_parts(model, x, None, dataclasses.replace(cfg, objective=objective), step=0, total_steps=10,
                          randn=lambda shape: torch.randn(shape, generator=g), dataset_size=100)

    for objective in ("elbo", "iwae"):
        a, b = parts(flat, objective), parts(hier, objective)
        for key in ("recon", "kl", "total", "loss"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(flat.encode(x).mu, hier.encode(x).mu)
        z = torch.randn(3, 5)
        torch.testing.assert_close(flat.decode(z), hier.decode(z))


def test_free_bits_hold_per_layer():
    kl = torch.zeros(4, 5)
    kl[:, 0] = 3.0                                    # layer 1 (units 0-1): 3 nats; layer 2 (units 2-4): none
    assert free_bits_kl(kl, 0.5, groups=(2, 3)).item() == pytest.approx(3.0 + 3 * 0.5)
    assert free_bits_kl(kl, 2.0, groups=(2, 3)).item() == pytest.approx(4.0 + 6.0)   # 2 units x 2 nats, 3 x 2


def test_the_loss_reports_kl_per_layer_and_training_lowers_it(tmp_path):
    cfg = RunConfig(config_from_dict(MLP), TrainConfig(dataset="digits", epochs=3, batch_size=64, kl_anneal="linear",
                                                       anneal_steps=20, free_bits=0.05, sample_every=0))
    model = init_model(cfg.model, 0)
    events = list(train(cfg, model=model, log_every=5))
    steps = [e for e in events if e.kind == "step"]
    layer_keys = [k for k in steps[0].losses if k.startswith("kl_layer")]
    assert layer_keys == ["kl_layer1", "kl_layer2", "kl_layer3"]
    assert sum(steps[0].losses[k] for k in layer_keys) == pytest.approx(steps[0].losses["kl"], rel=1e-4)
    assert steps[-1].losses["total"] < steps[0].losses["total"]
    epoch = [e for e in events if e.kind == "epoch"][-1]
    assert len(epoch.eval["kl_per_dim"]) == 9


def test_evaluate_reports_an_iwae_log_likelihood_for_both_variants():
    from vae_core.data import ImageSet

    for cfg in (MLP, CONV):
        model = _random_model(cfg)
        side = model.config.in_shape[1]
        data = ImageSet(torch.randint(0, 256, (6, 1, side, side), generator=torch.Generator().manual_seed(0),
                                      dtype=torch.uint8))
        res = evaluate_model(model, data, iwae_k=20)
        assert res["log_likelihood"] >= res["elbo"] - 1.0 and len(res["kl_per_dim"]) == model.config.latent_dim


def test_config_checks():
    cfg = HVAEConfig(latent_dims=(4, 6), hidden_dims=(10, 20))
    assert cfg.latent_dim == 10
    assert config_from_dict(cfg.to_dict()) == cfg                  # the derived total round-trips
    with pytest.raises(VAEError, match="total over the layers"):
        config_from_dict({**MLP, "latent_dim": 3})
    with pytest.raises(VAEError, match="one width per stochastic layer"):
        config_from_dict({**MLP, "hidden_dims": [8]})
    with pytest.raises(VAEError, match="1 to 8 layer sizes"):
        config_from_dict({**MLP, "latent_dims": []})
    with pytest.raises(VAEError, match="one entry per stochastic layer"):
        config_from_dict({**CONV, "channels": [4]})
    assert HVAEConvConfig(latent_dims=(2, 2, 2), channels=(4, 4, 4)).sides == (7, 7, 14)
    with pytest.raises(VAEError, match="elbo or iwae"):
        list(train(RunConfig(config_from_dict(MLP), TrainConfig(dataset="digits", objective="tcvae"))))
