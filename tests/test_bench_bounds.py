"""The bounds bench.train_throughput sets beside the loops mean what its table says they mean."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.train_throughput import HandStep, step_gemms
from vae_core.models import MLPConfig


class _Products(TorchDispatchMode):
    """(M, K, N) of every matrix product run under it."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.mm.default, torch.ops.aten.mm.out, torch.ops.aten.addmm.default):
            a, b = (args[1], args[2]) if func is torch.ops.aten.addmm.default else (args[0], args[1])
            self.shapes.append((a.shape[0], a.shape[1], b.shape[1]))
        return func(*args, **(kwargs or {}))


def _same_product(shapes):
    """(M, K, N) with M and N in order: A B and its transpose B^T A^T are one product, (N, K, M)."""
    return sorted((K, min(M, N), max(M, N)) for M, K, N in shapes)


def _limits_products(batch):
    return _same_product((M, K, N) for _, M, K, N in step_gemms(MLPConfig(hidden_dims=(400,), latent_dim=20), batch))


def _batch(n=16):
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 784, generator=gen).round(), torch.randn(n, 20, generator=gen)


def test_the_step_by_hand_has_autograds_loss_and_gradients():
    hand = HandStep(torch.device("cpu"))
    hand.check(*_batch())


@pytest.mark.parametrize("run", ["forward_backward", "products"])
def test_the_step_by_hand_and_the_chained_products_run_exactly_the_limits_products(run):
    hand = HandStep(torch.device("cpu"))
    x, eps = _batch()
    with _Products() as seen:
        getattr(hand, run)(x, eps)
    assert _same_product(seen.shapes) == _limits_products(len(x))


def test_a_wrong_gradient_by_hand_is_caught_before_timing():
    hand = HandStep(torch.device("cpu"))
    x, eps = _batch()
    real = hand.forward_backward

    def off(x, eps):
        loss = real(x, eps)
        hand.grads[3].mul_(1.01)                          # one bias gradient 1% off
        return loss
    hand.forward_backward = off
    with pytest.raises(AssertionError):
        hand.check(x, eps)
