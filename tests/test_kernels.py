"""The training step's own machinery: the fused Adam without torch.optim, and the per-layer kernel routes."""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from vae_core import RunConfig, TrainConfig, train
from vae_core.models import kernels
from vae_core.device import resolve_precision
from vae_core.models.kernels import Conv, ConvT, Dense
from vae_core.training.optim import FusedAdam
from vae_core.training.loop import init_model


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 3, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g))]


def _steps(opt, params, n=5):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
        opt.zero_grad()


def test_fused_adam_is_torchs_fused_adam_bit_for_bit_and_shares_its_state_format():
    ours, theirs = _params(), _params()
    a = FusedAdam(ours, lr=1e-2, weight_decay=0.1)
    b = torch.optim.Adam(theirs, lr=1e-2, weight_decay=0.1, fused=True)
    _steps(a, ours)
    _steps(b, theirs)
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert {k: set(v) for k, v in sa["state"].items()} == {k: set(v) for k, v in sb["state"].items()}
    # torch's state loads into ours and the two go on identically (a run folder written by either resumes).
    c_params = [torch.nn.Parameter(p.detach().clone()) for p in theirs]
    c = FusedAdam(c_params, lr=1e-2, weight_decay=0.1)
    c.load_state_dict(sb)
    _steps(c, c_params, 3)
    _steps(b, theirs, 3)
    assert all(torch.equal(p, q) for p, q in zip(c_params, theirs))


def test_fused_adam_refuses_a_state_of_other_parameters():
    from vae_core import VAEError
    a = FusedAdam(_params())
    _steps(a, a.params, 1)
    other = FusedAdam([torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(7))])
    with pytest.raises(VAEError, match="shape"):
        other.load_state_dict(a.state_dict())


def test_training_never_imports_torchs_compiler():
    code = ("import sys, dataclasses\n"
            "from vae_core import RunConfig, TrainConfig, train\n"
            "from vae_core.models import MLPConfig\n"
            "cfg = RunConfig(MLPConfig(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dim=2),\n"
            "                TrainConfig(dataset='digits', epochs=1, batch_size=64))\n"
            "for _ in train(cfg): pass\n"
            "print('torch._dynamo' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.skipif(not kernels.alternative_available(torch.device("cpu")), reason="torch built without oneDNN")
@pytest.mark.parametrize("make, shape", [
    (lambda: Dense(30, 20), (16, 30)),
    (lambda: Conv(3, 8, 4, stride=2, padding=1), (16, 3, 16, 16)),
    (lambda: ConvT(8, 3, 4, stride=2, padding=1), (16, 8, 8, 8))])
def test_each_alternative_kernel_computes_what_torchs_does(make, shape):
    torch.manual_seed(0)
    a, b = make(), make()
    b.load_state_dict(a.state_dict())
    b.kernel = kernels.ALTERNATIVE[type(b)]
    x = torch.randn(shape, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    ya, yb = a(x), b(x2)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(yb, ya, rtol=1e-4, atol=1e-4)
    for p, q in ((a.weight.grad, b.weight.grad), (a.bias.grad, b.bias.grad), (x.grad, x2.grad)):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-4)
    b.eval()                                   # inference always takes torch's own path
    with torch.no_grad():
        assert torch.equal(b(x), a.eval()(x))


def _fp32(cfg: RunConfig, **kw) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="fp32", **kw))


def test_a_resumed_fp32_run_keeps_its_kernel_route_and_reaches_the_uninterrupted_weights(
        tiny_run_config, tmp_path, monkeypatch):
    cfg = _fp32(tiny_run_config, epochs=3, kernels="measured")      # a tiny run: "auto" would not measure
    everywhere = lambda model, forward: tuple(kernels.ALTERNATIVE[type(m)] for m in kernels.routable_layers(model))
    monkeypatch.setattr(kernels, "measure_route", everywhere)        # every layer on the alternative kernel
    full = init_model(cfg.model, 0)
    events = list(train(cfg, model=full, out_dir=tmp_path / "full"))
    assert "fp32, 4 of 4 dense layers on oneDNN" in events[0].message
    state = json.loads((tmp_path / "full" / "trainer_state.json").read_text())
    assert state["precision"] == "fp32" and state["kernels"] == ["onednn"] * 4

    gen = train(cfg, out_dir=tmp_path / "cut")
    for ev in gen:
        if ev.kind == "epoch" and ev.epoch == 2:
            break
    gen.close()

    def never(*_):
        raise AssertionError("a resumed run must take its recorded route, not measure a new one")
    monkeypatch.setattr(kernels, "measure_route", never)
    resumed = init_model(cfg.model, 123)
    list(train(cfg, model=resumed, out_dir=tmp_path / "cut", resume=True))
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))


def test_kernels_torch_keeps_every_layer_on_torchs_default(tiny_run_config, monkeypatch):
    monkeypatch.setattr(kernels, "measure_route", lambda *_: pytest.fail("kernels='torch' must not measure"))
    model = init_model(tiny_run_config.model, 0)
    events = list(train(_fp32(tiny_run_config, kernels="torch", epochs=1), model=model))
    assert all(m.kernel == "torch" for m in kernels.routable_layers(model))
    assert "oneDNN" not in events[0].message


def test_auto_kernels_measure_only_a_run_long_enough_to_repay_it(tiny_run_config, monkeypatch):
    measured = []
    monkeypatch.setattr(kernels, "measure_route", lambda model, forward: measured.append(1) or
                        tuple("torch" for _ in kernels.routable_layers(model)))
    list(train(_fp32(tiny_run_config, epochs=1), model=init_model(tiny_run_config.model, 0)))
    assert measured == []                                       # a few steps: torch's kernels, no measurement
    monkeypatch.setattr(kernels, "MEASURE_MIN_STEPS", 1)
    list(train(_fp32(tiny_run_config, epochs=1), model=init_model(tiny_run_config.model, 0)))
    assert measured == [1]


def test_auto_precision_is_bf16_only_with_native_bf16_and_the_card_says_which(tiny_run_config, tmp_path, monkeypatch):
    from vae_core import device as device_mod
    assert TrainConfig().precision == "fp32"                  # the default: bf16 is asked for, never assumed
    cfg = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, epochs=1,
                                                                          precision="auto"))
    monkeypatch.setattr(device_mod, "native_bf16", lambda d: True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    list(train(cfg, out_dir=tmp_path / "bf16"))
    assert json.loads((tmp_path / "bf16" / "trainer_state.json").read_text())["precision"] == "bf16"
    card = (tmp_path / "bf16" / "README.md").read_text()
    assert "bf16 autocast" in card and "precision_check" in card and "--precision fp32" in card

    monkeypatch.setattr(device_mod, "native_bf16", lambda d: False)
    list(train(cfg, out_dir=tmp_path / "fp32"))
    assert json.loads((tmp_path / "fp32" / "trainer_state.json").read_text())["precision"] == "fp32"
    assert "in fp32." in (tmp_path / "fp32" / "README.md").read_text()
