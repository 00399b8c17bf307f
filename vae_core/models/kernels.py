"""Which kernels the training step runs on: torch's default or the alternative, per layer, by measurement.

On a CPU, torch multiplies fp32 matrices with MKL's sgemm, and runs fp32 convolutions with
oneDNN; it ships both libraries. Which one is faster depends on the CPU (MKL picks its AVX2 code
on AMD processors; oneDNN has AVX-512 kernels for them), on the shape and on the thread count,
and there is no rule that holds everywhere. So a run measures, on the machine it runs on: for
each dense and convolution layer of the model, at the run's own batch shapes, one forward and
backward pass through each candidate, and routes the layer through the faster one:

- dense layers (``Dense``): torch's ``F.linear`` (MKL on CPU) or oneDNN's matmul
  (``torch.ops.mkldnn._linear_pointwise``, forward and both backward products);
- convolutions (``Conv``, ``ConvT``): torch's default (oneDNN on CPU) or im2col + MKL
  (``thnn_conv2d``, ``slow_conv_transpose2d``).

The alternative must win by ``MARGIN`` to be taken, so near-ties keep torch's path. Only fp32
training on a CPU is routed: bf16 autocast already runs on oneDNN, and GPUs have one library.

Determinism: the two kernels round differently (both are exact fp32 products, summed in another
order), so a run's route is part of what makes it reproducible. The measurement is made once per
process for a shape and thread count (``_measured``), so every run in a process takes the same
route; a run records its route in trainer_state.json and ``--resume`` continues on it. Two
processes under different load may route differently and then agree to fp32 rounding, not bit
for bit; ``kernels="torch"`` (``--kernels torch``) turns the measurement off. The default,
``kernels="auto"``, measures a run of at least ``MEASURE_MIN_STEPS`` steps and keeps torch's kernels
on a shorter one; ``kernels="measured"`` always measures.
"""
from __future__ import annotations

import functools
import time
from types import MappingProxyType
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

MARGIN = 1.05               # the alternative must be 5% faster to replace torch's default
MEASURE_BUDGET_S = 0.03     # per layer and candidate, after the first warm-up pass
MIN_TRIALS, MAX_TRIALS = 3, 20
# kernels="auto" measures only a run of at least this many steps: the measurement takes 0.2-0.5 s, which a
# step 10% faster (0.4 ms of a 4 ms MLP step at batch 128) repays after about 500 steps; a shorter run keeps
# torch's kernels, so a one-epoch command-line run does not spend more measuring than it could gain.
MEASURE_MIN_STEPS = 500


# ---------------------------------------------------------------------------------------------
# The alternative kernels


def _dnn(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ w.T (+ bias) through oneDNN; a and w may be transposed views (no copies)."""
    return torch.ops.mkldnn._linear_pointwise(a, w, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with oneDNN's fp32 matmul for the forward product and both backward ones."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _dnn(x, weight, bias)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        dx = _dnn(g, weight.t()) if ctx.needs_input_grad[0] else None          # (B, out) @ (out, in)
        dw = _dnn(g.t(), x.t()) if ctx.needs_input_grad[1] else None           # (out, B) @ (B, in)
        db = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    lead = x.shape[:-1]
    y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return y.view(*lead, y.shape[-1])


def mkl_conv(x: torch.Tensor, weight: torch.Tensor, bias, stride, padding) -> torch.Tensor:
    return torch._C._nn.thnn_conv2d(x, weight, weight.shape[2:], bias, stride, padding)


def mkl_conv_transpose(x: torch.Tensor, weight: torch.Tensor, bias, stride, padding, output_padding) -> torch.Tensor:
    return torch._C._nn.slow_conv_transpose2d(x, weight, weight.shape[2:], bias, stride, padding, output_padding)


def alternative_available(device: torch.device) -> bool:
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


# ---------------------------------------------------------------------------------------------
# Layers that can be routed. Same parameters and state-dict keys as torch's own layers.


class Dense(nn.Linear):
    """nn.Linear whose training forward can run on oneDNN (``kernel = "onednn"``)."""

    kernel = "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != "torch" and self.training and x.dtype == torch.float32 and x.device.type == "cpu" \
                and not torch.is_autocast_enabled("cpu"):
            return onednn_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class Conv(nn.Conv2d):
    """nn.Conv2d (no dilation or groups) whose training forward can run on im2col + MKL (``kernel = "mkl"``)."""

    kernel = "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != "torch" and self.training and x.dtype == torch.float32 and x.device.type == "cpu" \
                and not torch.is_autocast_enabled("cpu"):
            return mkl_conv(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)


class ConvT(nn.ConvTranspose2d):
    """nn.ConvTranspose2d whose training forward can run on MKL (``kernel = "mkl"``)."""

    kernel = "torch"

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if self.kernel != "torch" and output_size is None and self.training and x.dtype == torch.float32 \
                and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu"):
            return mkl_conv_transpose(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)
        return super().forward(x, output_size)


ROUTABLE = (Dense, Conv, ConvT)
ALTERNATIVE = MappingProxyType({Dense: "onednn", Conv: "mkl", ConvT: "mkl"})


def routable_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, ROUTABLE)]


# ---------------------------------------------------------------------------------------------
# Measuring


def _timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _pass(layer: nn.Module, shape: tuple[int, ...], needs_input_grad: bool) -> Callable[[], None]:
    """One forward and backward pass of ``layer`` (a copy) on an input of ``shape``."""
    x = torch.randn(shape, device=layer.weight.device).requires_grad_(needs_input_grad)
    g = None

    def run():
        nonlocal g
        y = layer(x)
        if g is None:
            g = torch.randn_like(y)
        # A scalar's backward, not y.backward(g): autograd imports sympy (0.3 s) for an explicit gradient
        torch.vdot(y.reshape(-1), g.reshape(-1)).backward()
        for t in (layer.weight, layer.bias, x):
            if t is not None:
                t.grad = None
    return run


@functools.cache
def _measured(kind: str, config: tuple, shape: tuple[int, ...], needs_input_grad: bool, threads: int) -> str:
    """The faster kernel for one layer: torch's default, or the alternative by at least MARGIN."""
    cls = {c.__name__: c for c in ROUTABLE}[kind]
    layer = cls(*config[0], **dict(config[1])).train()
    best = {}
    runs = {}
    for name in ("torch", ALTERNATIVE[cls]):
        probe = cls(*config[0], **dict(config[1])).train()
        probe.load_state_dict(layer.state_dict())
        probe.kernel = name
        runs[name] = _pass(probe, shape, needs_input_grad)
        runs[name]()                                       # warm-up: the kernel's first call sets it up
        best[name] = float("inf")
    spent, trials = 0.0, 0
    while trials < MIN_TRIALS or (trials < MAX_TRIALS and spent < MEASURE_BUDGET_S * len(runs)):
        for name, run in runs.items():                     # interleaved, so drifting load hits both
            dt = _timed(run)
            best[name] = min(best[name], dt)
            spent += dt
        trials += 1
    alt = ALTERNATIVE[cls]
    return alt if best[alt] * MARGIN < best["torch"] else "torch"


def _config(layer: nn.Module) -> tuple:
    """The constructor arguments of a routable layer, hashable."""
    if isinstance(layer, Dense):
        return (layer.in_features, layer.out_features), (("bias", layer.bias is not None),)
    extra = (("stride", layer.stride), ("padding", layer.padding), ("bias", layer.bias is not None))
    if isinstance(layer, ConvT):
        extra += (("output_padding", layer.output_padding),)
    return (layer.in_channels, layer.out_channels, layer.kernel_size), extra


def measure_route(model: nn.Module, run_step: Callable[[], None]) -> tuple[str, ...]:
    """The kernel of each routable layer (model order), measured at the shapes ``run_step`` feeds them.

    ``run_step`` runs one forward pass of the model as training does; hooks note each layer's
    input shape and whether it needs an input gradient (the first layer's input does not).
    """
    layers = routable_layers(model)
    seen: dict[nn.Module, tuple[tuple[int, ...], bool]] = {}

    def hook(layer, args):
        seen.setdefault(layer, (tuple(args[0].shape), bool(args[0].requires_grad)))
    handles = [m.register_forward_pre_hook(hook) for m in layers]
    try:
        run_step()
    finally:
        for h in handles:
            h.remove()
    threads = torch.get_num_threads()
    return tuple(_measured(type(m).__name__, _config(m), *seen[m], threads) if m in seen else "torch"
                 for m in layers)


def apply_route(model: nn.Module, route: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Set each routable layer's kernel (None: torch's default everywhere); returns the route applied."""
    layers = routable_layers(model)
    if route is None or len(route) != len(layers):
        route = ("torch",) * len(layers)
    for m, k in zip(layers, route):
        m.kernel = k if k in ("torch", ALTERNATIVE[type(m)]) else "torch"
    return tuple(m.kernel for m in layers)


def describe(model: nn.Module) -> str:
    """'2 of 4 dense layers on oneDNN' and the like, for a log line; '' when all use torch's default."""
    parts = []
    for cls, what in ((Dense, "dense layers"), (Conv, "convolutions"), (ConvT, "transposed convolutions")):
        ms = [m for m in routable_layers(model) if type(m) is cls]
        alt = sum(m.kernel != "torch" for m in ms)
        if alt:
            lib = "oneDNN" if ALTERNATIVE[cls] == "onednn" else "MKL"
            parts.append(f"{alt} of {len(ms)} {what} on {lib}")
    return ", ".join(parts)


def choose_route(model: nn.Module, setting: str, device: torch.device, precision: str, saved: list | None,
                 steps_left: int, forward: Callable[[], object]) -> tuple[str, ...]:
    """The kernel of each routable layer for a training run: the saved route on resume, else measured.

    Only fp32 on a CPU is routed; with ``setting`` (TrainConfig.kernels) "torch" every layer keeps torch's
    default, and with "auto" a run of fewer than ``MEASURE_MIN_STEPS`` steps does too (measuring would cost
    it more than it could gain); ``forward`` runs one training step's forward pass, to measure with.
    """
    if precision != "fp32" or setting == "torch" or not alternative_available(device):
        return apply_route(model, None)
    if saved is not None:
        return apply_route(model, tuple(saved))
    if setting == "auto" and steps_left < MEASURE_MIN_STEPS:
        return apply_route(model, None)
    apply_route(model, None)
    return apply_route(model, measure_route(model, forward))


__all__ = ["ALTERNATIVE", "Conv", "ConvT", "Dense", "ROUTABLE", "alternative_available", "apply_route",
           "choose_route", "describe", "measure_route", "onednn_linear", "routable_layers"]
