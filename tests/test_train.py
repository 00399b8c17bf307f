import dataclasses
import importlib
import json
import sys
import types

import pytest
import torch
import torch.multiprocessing as mp

from vae_core import RunConfig, TrainConfig, TrainingDiverged, VAEError, load_model, train
from vae_core.models import ConvConfig, VQConfig
from vae_core.training.loop import init_model


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _run(cfg, **kw):
    events = list(train(cfg, **kw))
    return events


def test_events_report_named_losses_eval_and_samples(tiny_run_config):
    model = init_model(tiny_run_config.model, 0)
    events = _run(tiny_run_config, model=model, log_every=5)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 2
    step = next(e for e in events if e.kind == "step")
    assert {"recon", "kl", "total", "loss"} <= set(step.losses) and step.images_per_s > 0
    epoch = next(e for e in events if e.kind == "epoch")
    assert len(epoch.eval["kl_per_dim"]) == 4 and 0 <= epoch.eval["active_units"] <= 4
    assert epoch.samples.shape == (64, 1, 8, 8)
    first, last = events[1].losses["total"], events[-1].losses["total"]
    assert last < first                                     # it learns


def test_training_is_deterministic_on_cpu(tiny_run_config):
    m1, m2 = init_model(tiny_run_config.model, 0), init_model(tiny_run_config.model, 0)
    _run(tiny_run_config, model=m1)
    _run(tiny_run_config, model=m2)
    w1, w2 = _weights(m1), _weights(m2)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tiny_run_config, tmp_path):
    cfg = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, epochs=3,
                                                                            kl_anneal="cyclical", anneal_cycles=2))
    full = init_model(cfg.model, 0)
    _run(cfg, model=full, out_dir=tmp_path / "full")

    gen = train(cfg, out_dir=tmp_path / "cut")
    for ev in gen:                          # stop after the second epoch, as a killed run would
        if ev.kind == "epoch" and ev.epoch == 2:
            break
    gen.close()
    assert json.loads((tmp_path / "cut" / "trainer_state.json").read_text())["epoch"] == 2
    resumed = init_model(cfg.model, 123)    # different init: everything must come from the checkpoint
    events = _run(cfg, model=resumed, out_dir=tmp_path / "cut", resume=True)
    assert events[0].step == 2 * (len(__import__("vae_core").load_dataset("digits")) // 64)
    w1, w2 = _weights(full), _weights(resumed)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert torch.equal(load_model(tmp_path / "cut").encoder[0].weight, load_model(tmp_path / "full").encoder[0].weight)


def test_resume_refuses_a_changed_config(tiny_run_config, tmp_path):
    _run(tiny_run_config, out_dir=tmp_path / "r")
    changed = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, lr=0.1, epochs=3))
    with pytest.raises(VAEError, match="differs"):
        _run(changed, out_dir=tmp_path / "r", resume=True)
    with pytest.raises(VAEError, match="already finished"):
        _run(tiny_run_config, out_dir=tmp_path / "r", resume=True)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_run_config, tmp_path, monkeypatch):
    tr = importlib.import_module("vae_core.training.loop")
    real = tr.training_step
    calls = {"n": 0}

    def poisoned(*a, **k):
        result = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 30:                    # the 30th step, in the second epoch (22 steps per epoch)
            result.parts["loss"] = result.parts["loss"] * float("nan")
            result.parts["total"] = result.parts["total"] * float("nan")
        return result

    monkeypatch.setattr(tr, "training_step", poisoned)
    out = tmp_path / "run"
    before = None
    steps_only = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, kernels="torch"))
    with pytest.raises(TrainingDiverged, match="step 30") as err:     # (no kernel measurement: each call a step)
        for ev in train(steps_only, out_dir=out):
            if ev.kind == "epoch":
                before = (out / "model.safetensors").read_bytes()
    assert err.value.step == 30 and "last good checkpoint" in str(err.value)
    assert "(loss, total)" in str(err.value)                       # it names the parts that went bad
    assert (out / "model.safetensors").read_bytes() == before
    assert json.loads((out / "trainer_state.json").read_text())["epoch"] == 1
    model = load_model(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# What each objective minimises, from the parts a step reports (t: the TrainConfig).
MINIMISED = {
    "tcvae": lambda p, t: p["recon"] + p["kl_weight"] / t.beta * (t.mi_weight * p["mi"] + t.beta * p["tc"]
                                                                  + t.dwkl_weight * p["dwkl"]),
    "iwae": lambda p, t: p["iwae"],
    "wae-mmd": lambda p, t: p["recon"] + t.mmd_weight * p["mmd"],
}


@pytest.mark.parametrize("objective", ["tcvae", "iwae", "wae-mmd"])
def test_other_objectives_train_on_what_they_minimise(tiny_run_config, objective):
    cfg = dataclasses.replace(tiny_run_config, train=dataclasses.replace(
        tiny_run_config.train, objective=objective, epochs=1, free_bits=0.1, kl_anneal="linear", anneal_steps=5,
        beta=2.0, mi_weight=0.5, mmd_weight=3.0))
    steps = [e.losses for e in _run(cfg, log_every=1) if e.kind == "step"]
    assert steps and all(torch.isfinite(torch.tensor(list(p.values()))).all() for p in steps)
    for parts in steps:                                  # each step minimised its objective, not the ELBO
        assert parts["loss"] == pytest.approx(MINIMISED[objective](parts, cfg.train), rel=1e-4, abs=1e-4)
    elbo_loss = [p["recon"] + p.get("kl_weight", 1.0) * p["kl"] for p in steps]
    assert any(abs(p["loss"] - e) > 1e-2 for p, e in zip(steps, elbo_loss))


def test_conv_and_vq_train_and_vq_learns_its_code_usage():
    from vae_core import load_dataset
    data = load_dataset("mnist-5k", "train").subset(range(0, 4000, 20))      # 200 images
    test = load_dataset("mnist-5k", "test").subset(range(0, 1000, 20))
    for mcfg in (ConvConfig(channels=(4, 8), latent_dim=2, fc_dim=16), VQConfig(channels=(4, 8), latent_dim=4, codebook_size=8)):
        cfg = RunConfig(mcfg, TrainConfig(epochs=1, batch_size=50))
        model = init_model(mcfg, 0)
        events = _run(cfg, data=data, test_data=test, model=model)
        assert events[-1].kind == "done"
    assert torch.isclose(model.code_usage.sum(), torch.tensor(1.0))
    assert "perplexity" in events[-2].eval and "perplexity" in events[-2].losses


def test_incompatible_data_and_config_are_explained(tiny_run_config):
    from vae_core import load_dataset
    with pytest.raises(VAEError, match="shape"):
        _run(tiny_run_config, data=load_dataset("mnist-5k"))
    bad = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, batch_size=5000))
    with pytest.raises(VAEError, match="batch_size"):
        _run(bad)
    with pytest.raises(VAEError, match="objective"):
        _run(RunConfig(VQConfig(), TrainConfig(objective="iwae")))


def test_time_limit_stops_the_run(tiny_run_config):
    cfg = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, epochs=1000,
                                                                            max_seconds=0.3))
    events = _run(cfg)
    assert events[-1].kind == "done" and "time limit" in events[-1].message


def test_short_epochs_are_evaluated_and_saved_at_most_every_checkpoint_seconds(tiny_run_config, tmp_path,
                                                                                monkeypatch):
    """Saving and evaluating a ~0.15 s epoch cost as much again as training it: an epoch's end keeps the run only
    once checkpoint_seconds of training have passed since the last time (and always at the last epoch)."""
    from vae_core.io import run_folder

    saved = []
    real = run_folder.save_run
    monkeypatch.setattr("vae_core.training.loop.save_run", lambda *a, **kw: (saved.append(kw["epoch"]), real(*a, **kw)))
    rare = dataclasses.replace(tiny_run_config.train, epochs=4, checkpoint_seconds=3600)
    events = _run(dataclasses.replace(tiny_run_config, train=rare), out_dir=tmp_path / "rare")
    assert [e.eval is not None for e in events if e.kind == "epoch"] == [False, False, False, True]
    assert saved == [4]
    saved.clear()
    every = dataclasses.replace(rare, checkpoint_seconds=0)
    events = _run(dataclasses.replace(tiny_run_config, train=every), out_dir=tmp_path / "every")
    assert all(e.eval is not None for e in events if e.kind == "epoch") and saved == [1, 2, 3, 4]


def test_a_run_stopped_by_its_time_limit_saves_the_weights_after_its_last_step(tiny_run_config, tmp_path):
    """The issue: a run stopped mid-epoch kept the last epoch's checkpoint and dropped the steps after it."""
    import json

    from vae_core import load_model

    from vae_core import load_dataset

    train_cfg = dataclasses.replace(tiny_run_config.train, epochs=100_000, batch_size=8, max_seconds=0.5)
    model = init_model(tiny_run_config.model, 0)
    data = load_dataset("digits", "train").subset(range(64))                 # 8 steps an epoch, a log every 3
    events = _run(dataclasses.replace(tiny_run_config, train=train_cfg), data=data, model=model,
                  out_dir=tmp_path / "run", log_every=3)
    done = events[-1]
    assert done.kind == "done" and f"the weights after step {done.step} are saved" in done.message
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["step"] == done.step
    saved = load_model(tmp_path / "run").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())    # the weights it had, not older


def _ddp_worker(rank, world, init_file, cfg, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = init_model(cfg.model, 0)
        from vae_core import load_dataset
        data = load_dataset("digits", "train").subset(range(64))
        for _ in train(cfg, data=data, test_data=data, model=model):
            pass
        if rank == 0:
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
        dist.barrier()          # rank 1 must not tear down the group while rank 0 still evaluates
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_matches_one_process_on_the_same_global_batch(tiny_run_config, tmp_path, monkeypatch):
    # Spawned workers re-run the parent's __main__ first; after an AppTest page script ran in this process,
    # __main__ may be that script (Streamlit runs a page as __main__), which fails outside its runner.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    # The contract holds to fp32 rounding in fp32. In bf16 each process rounds its own gradients to bf16
    # before they are averaged, so there the two agree to bf16 precision only (train.py says so).
    cfg = dataclasses.replace(tiny_run_config, train=dataclasses.replace(
        tiny_run_config.train, epochs=1, batch_size=32, sample_every=0, precision="fp32"))
    out = str(tmp_path / "ddp.safetensors")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), cfg, out), nprocs=2, join=True)
    from safetensors.torch import load_file
    ddp = load_file(out)
    from vae_core import load_dataset
    data = load_dataset("digits", "train").subset(range(64))
    single = init_model(cfg.model, 0)
    _run(cfg, data=data, test_data=data, model=single)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ddp["encoder.0.weight"], init_model(cfg.model, 0).state_dict()["encoder.0.weight"])


def test_bf16_autocast_trains(tiny_run_config):
    cfg = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, precision="bf16", epochs=1))
    model = init_model(cfg.model, 0)
    events = _run(cfg, model=model)
    assert events[-1].kind == "done" and all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(torch.tensor(events[-1].losses["total"]))
