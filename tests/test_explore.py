"""vae_core.latent.explore: interpolation, traversals, manifold grids, arithmetic, unit ordering."""
import math

import pytest
import torch

import vae_core
from vae_core.latent import explore
from vae_core.data import ImageSet
from vae_core.models import MLPConfig, VQConfig
from vae_core.training.loop import init_model


@pytest.fixture(scope="module")
def mlp():
    return init_model(MLPConfig(in_shape=(1, 8, 8), latent_dim=3, hidden_dims=(16,)), seed=0).eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (40, 1, 8, 8), generator=g, dtype=torch.uint8),
                    torch.arange(40) % 2, class_names=("a", "b"), name="toy")


def test_slerp_endpoints_and_norm():
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    path = explore.slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-6)
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0), atol=1e-5)   # stays on the sphere
    mid = explore.lerp(a, b, torch.tensor([0.5]))[0]
    assert torch.allclose(mid, torch.tensor([1.5, 1.5, 0.0]))


def test_slerp_of_parallel_codes_falls_back_to_lerp():
    a = torch.tensor([1.0, 2.0])
    path = explore.slerp(a, 2 * a, torch.linspace(0, 1, 3))
    assert torch.isfinite(path).all() and torch.allclose(path[1], 1.5 * a)


def test_interpolate_decodes_both_ends(mlp):
    z_a, z_b = torch.randn(1, 3), torch.randn(1, 3)
    for method in ("linear", "spherical"):
        strip = explore.interpolate(mlp, z_a, z_b, 6, method)
        assert strip.shape == (6, 1, 8, 8)
        assert torch.allclose(strip[0], explore.decode(mlp, z_a)[0], atol=1e-5)
        assert torch.allclose(strip[-1], explore.decode(mlp, z_b)[0], atol=1e-5)
    with pytest.raises(vae_core.VAEError):
        explore.interpolate(mlp, z_a, z_b, 1)


def test_manifold_codes_are_gaussian_quantiles():
    z = explore.manifold_codes(5, edge=0.05)
    assert z.shape == (25, 2)
    assert torch.allclose(z[:5, 0], -z[:5, 0].flip(0), atol=1e-6)              # symmetric around 0
    assert math.isclose(float(z[0, 0]), -1.6449, abs_tol=1e-3)                  # Phi^-1(0.05)
    assert float(z[0, 1]) > 0 > float(z[-1, 1])                                 # top row: high z2


def test_manifold_grid_needs_a_2d_latent(mlp):
    with pytest.raises(vae_core.VAEError, match="2-D latent"):
        explore.manifold_grid(mlp, 5)
    m2 = init_model(MLPConfig(in_shape=(1, 8, 8), latent_dim=2, hidden_dims=(8,)), 0).eval()
    assert explore.manifold_grid(m2, 4).shape == (16, 1, 8, 8)


def test_traversal_rows_vary_one_unit(mlp, data):
    stats = explore.unit_stats(mlp, data)
    base = torch.zeros(1, 3)
    z = explore.traversal_codes(mlp, base, [2, 0], stats, -3, 3, 7)
    assert z.shape == (14, 3)
    assert torch.allclose(z[:7, 2], torch.linspace(-3, 3, 7)) and (z[:7, :2] == 0).all()
    assert torch.allclose(z[7:, 0], torch.linspace(-3, 3, 7)) and (z[7:, 1:] == 0).all()
    assert explore.traversal_grid(mlp, base, [1], stats).shape == (7, 1, 8, 8)


def test_unit_stats_order_by_kl(mlp, data):
    stats = explore.unit_stats(mlp, data)
    assert sorted(stats.order) == [0, 1, 2]
    kl = [stats.kl[u] for u in stats.order]
    assert kl == sorted(kl, reverse=True)
    assert len(stats.active) == 3 and len(stats.spread) == 3


def test_spatial_units_shift_channels():
    vq = init_model(VQConfig(in_shape=(1, 28, 28), latent_dim=4, channels=(8, 8), codebook_size=8), 0).eval()
    stats = explore.UnitStats.uniform(4)
    base = torch.zeros(1, *vq.latent_shape)
    z = explore.set_units(vq, base, [0, 1.5, 0, 0], stats)
    assert (z[0, 1] == 1.5).all() and (z[0, [0, 2, 3]] == 0).all()
    assert explore.traversal_grid(vq, base, [0], stats, steps=3).shape == (3, 1, 28, 28)


def test_sample_grid_is_reproducible(mlp):
    a, b = explore.sample_grid(mlp, 4, seed=1), explore.sample_grid(mlp, 4, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, explore.sample_grid(mlp, 4, seed=2))
    state = torch.random.get_rng_state()
    explore.sample_grid(mlp, 4, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())                    # the global RNG is untouched
    with pytest.raises(vae_core.VAEError):
        explore.sample_grid(mlp, 0, seed=0)


def test_arithmetic_and_attribute_vector(mlp, data):
    a, b, c = torch.ones(1, 3), torch.full((1, 3), 2.0), torch.full((1, 3), 5.0)
    assert torch.equal(explore.arithmetic(a, b, c), torch.full((1, 3), 4.0))
    vec = explore.attribute_vector(mlp, data, 1, 0)
    codes = explore.encode_dataset(mlp, data)
    want = codes[data.labels == 1].mean(0) - codes[data.labels == 0].mean(0)
    assert torch.allclose(vec[0], want, atol=1e-5)
    with pytest.raises(vae_core.VAEError, match="no images of class"):
        explore.attribute_vector(mlp, data, 5, 0)


def test_encode_refuses_the_wrong_shape(mlp):
    with pytest.raises(vae_core.VAEError, match="expects images of shape"):
        explore.encode(mlp, torch.zeros(1, 1, 28, 28))


def test_shared_model_is_not_modified():
    model = vae_core.load_model("mnist-mlp", device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = vae_core.load_dataset("mnist-5k", "test")
    explore.unit_stats(model, data, n=100)
    explore.interpolate(model, torch.zeros(1, 20), torch.ones(1, 20), 4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
