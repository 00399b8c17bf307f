"""vae_core.latent.inverse: from a spot on a 2-D map back to a code, on cases with a known answer."""
import math

import numpy as np
import pytest
import torch

from vae_core import VAEError
from vae_core.latent import inverse, projections as project


def codes(n=400, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.tensor([3.0, 2.0, 1.0, 0.5, 0.3, 0.1])[:d] + 1.5


def test_pca_round_trip_is_the_projection_onto_the_kept_components():
    x = codes()
    inv = inverse.PCAInverse(x)
    back = inv(project.pca(x))
    mean, axes = x.double().mean(0), inv.axes.double()
    expected = mean + (x.double() - mean) @ axes @ axes.T            # orthogonal projection on the kept plane
    assert torch.allclose(back.double(), expected, atol=1e-4)
    assert not torch.allclose(back, x, atol=1e-2)                    # the dropped components are lost...
    dropped = (back.double() - mean) @ torch.linalg.eigh(torch.cov(x.double().T))[1][:, :-2]
    assert dropped.abs().max() < 1e-4                                 # ...set to the mean


def test_pca_inverse_is_exact_for_codes_in_a_plane():
    g = torch.Generator().manual_seed(1)
    plane = torch.linalg.qr(torch.randn(5, 2, generator=g))[0]       # (5, 2) orthonormal
    x = torch.randn(300, 2, generator=g) * torch.tensor([2.0, 1.0]) @ plane.T + 0.7
    assert torch.allclose(inverse.PCAInverse(x)(project.pca(x)), x, atol=1e-4)


def test_a_spot_on_a_point_decodes_to_that_points_code():
    x = codes()
    points = project.pca(x)
    got = inverse.NeighbourInverse(points, x, k=10)(points[[3, 70]])
    assert torch.allclose(got, x[[3, 70]], atol=1e-3)


def test_the_barycentre_between_two_points_is_their_mean():
    points = np.array([[0.0, 0.0], [2.0, 0.0], [50.0, 50.0]], np.float32)
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]])
    got = inverse.NeighbourInverse(points, x, k=2)([[1.0, 0.0]])
    assert torch.allclose(got, torch.tensor([[2.0, 2.0]]))


def test_the_net_inverse_learns_a_smooth_map():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(600, 2, generator=g) * 4 - 2
    x = torch.stack([p[:, 0] + p[:, 1], torch.sin(p[:, 0]), p[:, 1] ** 2], 1)
    net = inverse.NetInverse(p[:500], x[:500], steps=600)
    assert inverse.held_out_error(x[500:], net(p[500:])) < 0.05


def test_held_out_error_is_one_for_the_mean_and_zero_for_the_truth():
    x = codes()
    assert inverse.held_out_error(x, x) == 0
    assert inverse.held_out_error(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)


def test_prior_log_density_is_the_standard_normal():
    z = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, -2.0]])
    want = [-1.5 * math.log(2 * math.pi), -1.5 * math.log(2 * math.pi) - 4.5]
    assert inverse.prior_log_density(z).tolist() == pytest.approx(want)


def test_a_grid_covers_the_map_with_a_margin_and_is_bounded():
    points = np.array([[0, 0], [10, 20]], np.float32)
    xs, ys, nodes = inverse.grid(points, 5, margin=0.1)
    assert (xs[0], xs[-1], ys[0], ys[-1]) == pytest.approx((-1, 11, -2, 22))
    assert nodes.shape == (25, 2) and tuple(nodes[1]) == pytest.approx((xs[1], ys[0]))
    with pytest.raises(VAEError, match="between 2 and"):
        inverse.grid(points, inverse.GRID_LIMIT + 1)


def test_for_map_picks_the_inverse_of_each_projection():
    x = codes()
    pts = project.pca(x)
    assert isinstance(inverse.for_map("pca", pts, x), inverse.PCAInverse)
    assert isinstance(inverse.for_map("umap", pts, x), inverse.NeighbourInverse)
    assert torch.equal(inverse.for_map("codes", x[:, :2], x[:, :2])([[0.5, -1.0]]), torch.tensor([[0.5, -1.0]]))
    with pytest.raises(VAEError, match="No inverse"):
        inverse.for_map("mds", pts, x)
    with pytest.raises(VAEError, match="NaN"):
        inverse.for_map("pca", pts, x)([[float("nan"), 0.0]])
