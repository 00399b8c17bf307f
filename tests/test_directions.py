"""Directions in latent space (vae_core.latent.directions) on cases whose answer is known."""
import math

import pytest
import torch

from vae_core import VAEError
from vae_core.latent import directions, spectra
from vae_core.models import MLPConfig, build_model


def _gaussian(n: int, variances, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws from N(0, R diag(variances) R^T) for a random rotation R; returns (x, R)."""
    g = torch.Generator().manual_seed(seed)
    d = len(variances)
    rot = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.tensor(variances, dtype=torch.float64).sqrt()
    return (x @ rot.T).float(), rot


def _linear_model(latent: int, side: int, seed: int = 0):
    """A VAE whose decoder is one linear layer (Gaussian likelihood: decode(z) = W z + b), so J = W."""
    torch.manual_seed(seed)
    model = build_model(MLPConfig(in_shape=(1, side, side), latent_dim=latent, hidden_dims=(), likelihood="gaussian"))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    w = model.decoder[0].weight.detach().double()                       # (P, D)
    return model, w


def _abs_cos(a, b) -> float:
    a, b = torch.as_tensor(a).double().flatten(), torch.as_tensor(b).double().flatten()
    return abs(float(a @ b / (a.norm() * b.norm())))


def test_principal_directions_recover_a_known_covariance():
    x, rot = _gaussian(4000, [9.0, 4.0, 1.0, 0.25])
    found = directions.principal_directions(x, k=3, n_boot=20)
    for i, d in enumerate(found):
        assert d.kind == "principal" and d.name == f"PC{i + 1}"
        assert abs(float(d.vector.norm()) - 1) < 1e-5
        assert _abs_cos(d.vector, rot[:, i]) > 0.99, (i, _abs_cos(d.vector, rot[:, i]))
    assert [round(d.spread ** 2) for d in found] == [9, 4, 1]                 # the variance along each axis
    assert found[0].detail == f"{9 / 14.25:.0%} of the variance"


def test_principal_stability_is_near_one_on_clean_data_and_low_on_noise():
    clean, _ = _gaussian(2000, [16.0, 4.0, 1.0])
    noise, _ = _gaussian(2000, [1.0, 1.0, 1.0])                             # no preferred axis at all
    stable = directions.principal_directions(clean, k=2, n_boot=30)
    unstable = directions.principal_directions(noise, k=2, n_boot=30)
    assert all(d.stability > 0.99 for d in stable), [d.stability for d in stable]
    assert all(d.stability < 0.85 for d in unstable), [d.stability for d in unstable]


def test_a_class_contrast_points_from_one_class_to_the_other():
    g = torch.Generator().manual_seed(1)
    u = torch.nn.functional.normalize(torch.randn(6, generator=g), dim=0)
    labels = torch.arange(600) % 2                                          # class 1 at +2u, class 0 at -2u
    x = torch.randn(600, 6, generator=g) + torch.where(labels[:, None] == 1, 2.0, -2.0) * u
    d = directions.class_contrast(x, labels, 1, 0, ["zero", "one"], n_boot=30)
    assert d.name == "one - zero" and d.kind == "attribute"
    assert float(d.vector.double() @ u.double()) > 0.98                     # the sign points towards class A
    assert d.stability > 0.98
    flipped = directions.class_contrast(x, labels, 0, 1, n_boot=5)
    assert float(flipped.vector @ d.vector) < -0.999


def test_a_class_contrast_of_indistinguishable_classes_is_unstable():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, 8, generator=g)                                    # both classes from one Gaussian
    labels = torch.arange(400) % 2
    d = directions.class_contrast(x, labels, 1, 0, n_boot=30)
    assert d.stability < 0.8, d.stability
    with pytest.raises(VAEError, match="two different classes"):
        directions.class_contrast(x, labels, 1, 1)
    with pytest.raises(VAEError, match="at least 2"):
        directions.class_contrast(x, labels, 1, 5)


def test_a_factor_regression_direction_recovers_the_true_weights():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1000, 5, generator=g)
    w = torch.tensor([0.0, 3.0, -1.0, 0.0, 0.5])
    f = torch.stack([x @ w + 0.05 * torch.randn(1000, generator=g), torch.full((1000,), 2.0),
                     torch.randn(1000, generator=g)], 1)                   # a clean factor, a constant, pure noise
    found = directions.factor_directions(x, f, ["clean", "constant", "noise"], n_boot=30)
    assert [d.name for d in found] == ["clean", "noise"]                   # a constant factor has no direction
    clean, noise = found
    assert float(clean.vector.double() @ (w / w.norm()).double()) > 0.999  # towards larger values
    assert float(clean.detail.split()[1]) > 0.99                           # R2
    assert clean.stability > 0.99 and noise.stability < 0.8
    assert float(noise.detail.split()[1]) < 0.05


def test_the_jacobians_top_direction_of_a_linear_decoder_is_its_top_right_singular_vector():
    model, w = _linear_model(latent=6, side=5)
    _, s, vh = torch.linalg.svd(w, full_matrices=False)
    z = torch.randn(1, 6, generator=torch.Generator().manual_seed(0))
    res = directions.local_directions(model, z, k=3)
    assert "whole Jacobian" in res.method and res.passes == 6
    for i, d in enumerate(res.directions):
        assert _abs_cos(d.vector, vh[i]) > 0.9999, i
        assert d.detail == f"gain {float(s[i]):.3g}"                          # the gain is sigma_i
    assert res.directions[0].stability is None                           # not asked for


def test_subspace_iteration_finds_the_same_directions(monkeypatch):
    monkeypatch.setattr(spectra, "DENSE_MAX_DIMS", 2)                  # force the iterative path
    model, w = _linear_model(latent=12, side=6, seed=1)
    _, _, vh = torch.linalg.svd(w, full_matrices=False)
    res = directions.local_directions(model, torch.zeros(1, 12), k=2)
    assert "subspace iteration" in res.method and "forward mode" in res.method
    assert all(_abs_cos(d.vector, vh[i]) > 0.999 for i, d in enumerate(res.directions))
    assert res.passes < 12 * 2 * 4 + 4 + 1


def test_finite_differences_stand_in_where_forward_mode_is_missing(monkeypatch):
    model, w = _linear_model(latent=5, side=4, seed=2)
    _, _, vh = torch.linalg.svd(w, full_matrices=False)

    def no_forward_mode(*args, **kwargs):
        raise NotImplementedError("Trying to use forward AD with an op that does not support it")

    monkeypatch.setattr(torch.func, "jvp", no_forward_mode)
    res = directions.local_directions(model, torch.zeros(1, 5), k=1)
    assert "finite-difference" in res.method
    assert _abs_cos(res.directions[0].vector, vh[0]) > 0.999


def test_local_stability_is_one_for_a_linear_decoder_and_spread_comes_from_codes():
    model, _ = _linear_model(latent=4, side=4, seed=3)
    codes = torch.randn(200, 4, generator=torch.Generator().manual_seed(4)) * torch.tensor([3.0, 1.0, 1.0, 1.0])
    res = directions.local_directions(model, codes[:1], k=2, codes=codes, nudges=3)
    assert all(d.stability == pytest.approx(1.0, abs=1e-4) for d in res.directions)   # J is the same everywhere
    for d in res.directions:
        assert d.spread == pytest.approx(float((codes.double() @ d.vector.double()).std()), rel=1e-4)


def test_local_directions_are_reproducible_and_their_cost_is_checked_before_any_pass(monkeypatch):
    model, _ = _linear_model(latent=8, side=8, seed=5)
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(5))
    a = directions.local_directions(model, z, k=3, nudges=2, seed=7)
    b = directions.local_directions(model, z, k=3, nudges=2, seed=7)
    assert all(torch.equal(x.vector, y.vector) and x.stability == y.stability
               for x, y in zip(a.directions, b.directions))
    calls = []
    monkeypatch.setattr(model, "decode", lambda *a, **k: calls.append(1))
    with pytest.raises(VAEError, match="budget"):
        directions.local_directions(model, z, k=3, max_values=5 * 64)
    assert not calls


def test_chance_cosine_and_canonical_signs():
    assert directions.chance_cosine(2) == pytest.approx(2 / math.pi)
    assert directions.chance_cosine(400) == pytest.approx(math.sqrt(2 / (math.pi * 400)), rel=0.01)
    v = torch.tensor([[0.1, -0.9, 0.3], [0.5, 0.2, -0.1]])
    assert torch.allclose(directions.canonical_sign(v), torch.tensor([[-0.1, 0.9, -0.3], [0.5, 0.2, -0.1]]))


def test_factor_alignment_reports_every_kind_against_the_factors():
    # Codes are the factors themselves (scaled), decoded linearly: the first principal direction is
    # the factor with the most variance, and every direction is compared with every factor.
    g = torch.Generator().manual_seed(6)
    factors = torch.randn(300, 3, generator=g)
    codes = factors * torch.tensor([4.0, 2.0, 1.0])
    labels = (factors[:, 0] > 0).long()
    model, _ = _linear_model(latent=3, side=4, seed=6)
    res = directions.factor_alignment(model, codes, factors, ["a", "b", "c"], labels, ["low", "high"], k=2,
                                      local_codes=3, n_boot=10)
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["PC1"]["best_factor"] == "a" and rows["PC1"]["cosine"] > 0.99
    assert rows["PC2"]["best_factor"] == "b" and rows["PC2"]["cosine"] > 0.95
    assert rows["high - low"]["best_factor"] == "a" and rows["high - low"]["cosine"] > 0.95
    assert {"local 1", "local 2"} <= set(rows) and 0 <= rows["local 1"]["cosine"] <= 1
    assert [r["name"] for r in res["references"]] == ["a", "b", "c"]
    assert res["chance"] == pytest.approx(directions.chance_cosine(3))


def test_move_and_direction_codes_step_in_the_datas_spread():
    d = directions.Direction("principal", "PC1", torch.tensor([0.6, 0.8]), spread=2.0)
    e = directions.Direction("principal", "PC2", torch.tensor([-0.8, 0.6]), spread=0.5)
    z = torch.tensor([[1.0, 1.0]])
    moved = directions.move(z, [d, e], [1.5, -2.0])
    assert torch.allclose(moved, z + 1.5 * 2.0 * d.vector + (-2.0) * 0.5 * e.vector)
    with pytest.raises(VAEError, match="amounts"):
        directions.move(z, [d, e], [1.0])
    rows = directions.direction_codes(z, [d, e], -3, 3, 7)
    assert rows.shape == (14, 2)
    assert torch.allclose(rows[3], z[0]) and torch.allclose(rows[10], z[0])      # the middle column is z
    assert torch.allclose(rows[6] - rows[0], 6 * 2.0 * d.vector)


def test_dataset_directions_on_a_labelled_factored_set():
    from vae_core import ImageSet

    g = torch.Generator().manual_seed(8)
    factors = torch.rand(400, 2, generator=g)
    codes = torch.cat([factors * torch.tensor([3.0, 1.0]), 0.01 * torch.randn(400, 2, generator=g)], 1)
    labels = (factors[:, 0] > 0.5).long()
    data = ImageSet(torch.zeros(400, 1, 2, 2, dtype=torch.uint8), labels, factors, class_names=("low", "high"),
                    factor_names=("big", "small"))
    pcs = directions.dataset_directions(codes, data, "principal", k=2)
    assert _abs_cos(pcs[0].vector, [1, 0, 0, 0]) > 0.99
    big, small = directions.dataset_directions(codes, data, "factors")
    assert big.name == "big" and _abs_cos(big.vector, [1, 0, 0, 0]) > 0.99 and big.stability > 0.95
    (contrast,) = directions.dataset_directions(codes, data, "classes", a=1, b=0)
    assert contrast.name == "high - low" and float(contrast.vector[0]) > 0.99
    bare = ImageSet(torch.zeros(400, 1, 2, 2, dtype=torch.uint8))
    with pytest.raises(VAEError, match="no ground-truth factors"):
        directions.dataset_directions(codes, bare, "factors")
    with pytest.raises(VAEError, match="no class labels"):
        directions.dataset_directions(codes, bare, "classes")


def test_large_codes_get_a_randomized_svd_and_fewer_resamples(monkeypatch):
    monkeypatch.setattr(spectra, "EXACT_SVD_MAX", 4)
    x, rot = _gaussian(300, [25.0, 16.0, 9.0] + [0.05] * 9, seed=9)
    axes, var = directions.principal_axes(x.double(), 3)
    exact = directions.canonical_sign(torch.linalg.svd(x.double() - x.double().mean(0), full_matrices=False)[2][:3])
    assert torch.allclose(axes, exact, atol=1e-6)
    assert directions.boot_count(1000, 20) == directions.N_BOOT
    assert directions.boot_count(1000, 4096) == 12 and directions.boot_count(10**6, 10**6) == 5


def test_a_factor_direction_is_where_the_codes_move_not_where_the_factor_is_best_read():
    # Both units carry the factor; the first with little noise. A readout (factor ~ codes) leans on
    # the quiet unit; the factor's images lie along (1, 1): that is the direction to move along.
    g = torch.Generator().manual_seed(10)
    f = torch.randn(2000, 1, generator=g)
    x = torch.cat([f + 0.1 * torch.randn(2000, 1, generator=g), f + 1.0 * torch.randn(2000, 1, generator=g)], 1)
    (d,) = directions.factor_directions(x, f, ["f"], n_boot=10)
    assert float(d.vector.double() @ torch.tensor([1.0, 1.0], dtype=torch.float64)) / math.sqrt(2) > 0.99
    w, _ = directions.regression_direction(x.double(), f[:, 0])
    assert _abs_cos(w, [1.0, 1.0]) < 0.8                                    # the readout differs
