import pytest
import torch

from vae_core import VAEError, build_model
from vae_core.models import MODEL_TYPES, config_from_dict

FAMILIES = [
    {"model_type": "mlp", "hidden_dims": [32], "latent_dim": 3},
    {"model_type": "cvae", "hidden_dims": [32], "latent_dim": 3, "num_classes": 4},
    {"model_type": "conv", "channels": [4, 8], "latent_dim": 3, "fc_dim": 16},
    {"model_type": "vq", "channels": [4, 8], "latent_dim": 5, "codebook_size": 7},
    {"model_type": "m2", "hidden_dims": [32], "latent_dim": 3, "num_classes": 4, "classifier_dims": [16]},
]


@pytest.mark.parametrize("cfg", FAMILIES, ids=lambda c: c["model_type"])
def test_every_family_speaks_the_interface(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    x = torch.rand(5, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3, 0]) if model.num_classes else None
    post = model.encode(x, y)
    assert post.mu.shape == (5, *model.latent_shape)
    x_hat = model.decode(post.mode(), y)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = model.sample(4, generator=g1, y=1 if model.num_classes else None)
    s2 = model.sample(4, generator=g2, y=1 if model.num_classes else None)
    assert s1.shape == (4, 1, 28, 28) and torch.equal(s1, s2)       # a generator makes sampling reproducible
    assert model.config.to_dict()["model_type"] == cfg["model_type"]


def test_conv_supports_rgb_and_its_three_sizes():
    for size, chans in [(28, [8, 8]), (32, [8, 8]), (64, [8, 8, 8])]:
        model = build_model({"model_type": "conv", "in_shape": [3, size, size], "channels": chans, "latent_dim": 2})
        assert model.decode(model.encode(torch.rand(2, 3, size, size)).mu).shape == (2, 3, size, size)
    with pytest.raises(VAEError, match="square images"):
        config_from_dict({"model_type": "conv", "in_shape": [1, 30, 30]})


def test_classic_mlp_is_a_config_not_code():
    model = build_model({"model_type": "mlp", "hidden_dims": [400], "latent_dim": 20})
    sizes = [m.weight.shape for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [(400, 784), (40, 400), (400, 20), (784, 400)]


def test_conditional_label_changes_the_output():
    torch.manual_seed(0)
    model = build_model(FAMILIES[1] | {"in_shape": [1, 28, 28]})
    z = torch.randn(1, 3)
    assert not torch.allclose(model.decode(z, torch.tensor([0])), model.decode(z, torch.tensor([1])))
    with pytest.raises(VAEError, match="class"):
        model.sample(2)


def test_vq_straight_through_and_codebook_statistics():
    torch.manual_seed(0)
    model = build_model(FAMILIES[3])
    x = torch.rand(4, 1, 28, 28)
    post = model.encode(x)
    model.decode_logits(post.mu).sum().backward()
    assert model.encoder[0][0].weight.grad.abs().sum() > 0          # gradients pass the quantiser
    own = model.codebook_loss(model.encode(x).mu)
    assert 1.0 <= own.perplexity().item() <= 7.0
    assert 0.0 < own.usage().item() <= 1.0
    assert own.counts.sum() == 4 * 7 * 7 and own.codebook.shape == own.commitment.shape == (4,)
    model.code_usage.copy_(torch.tensor([0, 0, 1.0, 0, 0, 0, 0]))
    idx = model.codes(model.prior_sample(3, torch.Generator().manual_seed(0)))
    assert (idx == 2).all()                                          # codes come from the usage frequencies


@pytest.mark.parametrize("bad, match", [
    ({"model_type": "mlp", "hidden_dims": [1_000_000_000]}, "hidden_dims"),
    ({"model_type": "mlp", "latent_dim": -3}, "latent_dim"),
    ({"model_type": "mlp", "latent_dim": 2.5}, "integer"),
    ({"model_type": "mlp", "latent_dim": "20"}, "integer"),
    ({"model_type": "mlp", "bogus": 1}, "Unknown field"),
    ({"model_type": "transformer"}, "Unknown model type"),
    ({"latent_dim": 2}, "model_type"),
    ({"model_type": "mlp", "in_shape": [1, 28]}, "in_shape"),
    ({"model_type": "mlp", "hidden_dims": [16000, 16000, 16000], "in_shape": [3, 1000, 1000]}, "parameters"),
    ({"model_type": "mlp", "likelihood": "poisson"}, "likelihood"),
])
def test_bad_configs_are_refused_before_allocation(bad, match, monkeypatch):
    def guarded(real):
        def init(self, *a, **k):                 # built on the meta device to be counted: nothing is allocated
            if torch.get_default_device().type != "meta":
                pytest.fail("allocated a model for a bad config")
            real(self, *a, **k)
        return init

    for _, cls in MODEL_TYPES.values():
        monkeypatch.setattr(cls, "__init__", guarded(cls.__init__))
    with pytest.raises(VAEError, match=match):
        build_model(bad)


CAPABLE = FAMILIES + [{"model_type": "hvae", "hidden_dims": [16, 16], "latent_dims": [2, 3]},
                      {"model_type": "hvae-conv", "channels": [4, 4], "latent_dims": [2, 3]}]


@pytest.mark.parametrize("cfg", CAPABLE, ids=lambda c: c["model_type"])
def test_a_model_says_what_it_can_do(cfg):
    model = build_model(cfg)
    kind = cfg["model_type"]
    assert (model.as_codebook() is model) == (kind == "vq")
    assert (model.as_hierarchy() is model) == kind.startswith("hvae")
    assert (model.as_classifier() is model) == (kind == "m2")
    assert model.learned_prior() is None                                 # none until one is attached
    assert type(model.config).conditional == (kind in ("cvae", "m2"))
    assert (model.as_codebook() is None) == (model.encode(torch.rand(2, 1, 28, 28), model.class_labels(0, 2))
                                            .logvar is not None)


def test_a_vq_vae_with_a_code_prior_says_so():
    from vae_core.models.vq_prior import CodePriorConfig, CodeTransformer

    model = build_model(FAMILIES[3])
    prior = CodeTransformer(CodePriorConfig(codebook_size=7, grid=7, width=8, layers=1, heads=1))
    model.attach_prior(prior)
    assert model.learned_prior() is prior


@pytest.mark.parametrize("kind, train, message", [
    ("vq", {"objective": "tcvae"}, "VQ-VAE trains with its own objective"),
    ("m2", {"free_bits": 0.5}, "M2 trains with its own objective"),
    ("hvae", {"objective": "wae-mmd"}, "hierarchical VAE trains with objective elbo or iwae"),
    ("mlp", {"labels_per_class": 10}, "labels_per_class hides labels"),
])
def test_a_family_refuses_training_settings_it_cannot_use(kind, train, message):
    from vae_core import TrainConfig

    cfg = next(c for c in CAPABLE if c["model_type"] == kind)
    config = config_from_dict(cfg)
    with pytest.raises(VAEError, match=message):
        config.check_training(TrainConfig(**train))
    config.check_training(TrainConfig())                                 # the defaults suit every family
    if kind == "m2":
        config.check_training(TrainConfig(labels_per_class=10))         # M2's own setting


@pytest.mark.parametrize("kind", sorted(MODEL_TYPES))
def test_the_parameter_count_is_exact_for_every_family(kind):
    from vae_core.models import check_param_budget, parameter_count

    for cfg in [{"model_type": kind}, *[c for c in CAPABLE if c["model_type"] == kind]]:
        config = config_from_dict(cfg)
        real = sum(p.numel() for p in build_model(config).parameters())
        assert parameter_count(lambda: build_model(config)) == real == check_param_budget(config)


def test_the_parameter_budget_is_an_upper_bound(monkeypatch):
    from vae_core.models import base, check_param_budget

    config = config_from_dict({"model_type": "conv"})
    real = sum(p.numel() for p in build_model(config).parameters())
    monkeypatch.setattr(base, "MAX_PARAMS", real)
    assert check_param_budget(config) == real                              # exactly at the limit: allowed
    monkeypatch.setattr(base, "MAX_PARAMS", real - 1)
    with pytest.raises(VAEError, match=f"{real:,} parameters"):
        check_param_budget(config)


def test_the_code_prior_counts_its_parameters_exactly():
    from vae_core.models.base import parameter_count
    from vae_core.models.vq_prior import CodePriorConfig, CodeTransformer

    config = CodePriorConfig(codebook_size=7, grid=7, width=16, layers=2, heads=2)
    real = sum(p.numel() for p in CodeTransformer(config).parameters())
    assert parameter_count(lambda: CodeTransformer(config, validated=True)) == real
