"""vae_core.training.live: background training jobs, their limits and slots, save and push; the app's settings."""
from pathlib import Path

import pytest

import vae_core
from explorer.limits import Settings
from tests.waiting import wait_for
from vae_core.config import TrainConfig
from vae_core.io.push import push_to_hub
from vae_core.training.live import TrainingJob, TrainingLimits, TrainingSlots
from vae_core.models import MLPConfig
from vae_core.io.run_folder import RunConfig


def tiny(epochs=1, **train):
    return RunConfig(MLPConfig(in_shape=(1, 8, 8), latent_dim=2, hidden_dims=(16,)),
                     TrainConfig(dataset="digits", epochs=epochs, batch_size=64, **train))


def finish(job, limit=60):
    job.join(limit)
    assert not job.is_alive()
    return job.snapshot()


def test_settings_from_env():
    lim = Settings.from_env({"VAE_EXPLORER_MAX_EPOCHS": "3", "VAE_EXPLORER_MAX_SECONDS": "0.5",
                             "VAE_EXPLORER_MAX_JOBS": "1", "VAE_EXPLORER_RUNS_DIR": "/tmp/x",
                             "VAE_EXPLORER_TORCH_THREADS": "0"})
    assert (lim.max_epochs, lim.max_seconds, lim.max_jobs, str(lim.runs_dir), lim.torch_threads) == \
        (3, 0.5, 1, "/tmp/x", 0)
    assert lim.training == TrainingLimits(3, 0.5, 120.0)
    assert Settings.from_env({}) == Settings()
    with pytest.raises(vae_core.VAEError, match="VAE_EXPLORER_MAX_EPOCHS"):
        Settings.from_env({"VAE_EXPLORER_MAX_EPOCHS": "many"})
    with pytest.raises(vae_core.VAEError, match="above zero"):
        Settings.from_env({"VAE_EXPLORER_MAX_SECONDS": "-1"})


@pytest.mark.parametrize("name, value", [("VAE_EXPLORER_MAX_SECONDS", "nan"), ("VAE_EXPLORER_MAX_SECONDS", "inf"),
                                         ("VAE_EXPLORER_SESSION_TIMEOUT", "nan"), ("VAE_EXPLORER_MAX_JOBS", "0"),
                                         ("VAE_EXPLORER_TORCH_THREADS", "-1")])
def test_settings_that_would_switch_a_limit_off_are_refused(name, value):
    with pytest.raises(vae_core.VAEError, match=name):
        Settings.from_env({name: value})


def test_saved_runs_stay_inside_the_runs_folder():
    settings = Settings(runs_dir=Path("/srv/runs"))
    assert settings.run_folder("my-run.2") == Path("/srv/runs/my-run.2")
    for bad in ("../escape", "/etc", "", "a/b", ".hidden", "x" * 65):
        with pytest.raises(vae_core.VAEError, match="folder name"):
            settings.run_folder(bad)


def test_limits_refuse_epochs_and_cap_time():
    lim = TrainingLimits(max_epochs=2, max_seconds=10)
    with pytest.raises(vae_core.VAEError, match="limit of 2"):
        lim.apply(tiny(epochs=3))
    assert lim.apply(tiny()).train.max_seconds == 10
    assert lim.apply(tiny(max_seconds=4.0)).train.max_seconds == 4.0


def test_job_trains_in_the_background(tmp_path):
    job = TrainingJob(tiny(epochs=2, checkpoint_seconds=0), log_every=5).start()      # evaluated every epoch
    snap = finish(job)
    assert snap.status == "finished" and snap.error == ""
    assert snap.step == snap.total_steps > 0 and snap.progress == 1.0 and snap.epoch == 2
    assert snap.history and {"step", "epoch", "loss", "recon", "kl"} <= set(snap.history[-1])
    assert len(snap.evals) == 2 and snap.samples is not None and snap.samples.shape[1:] == (1, 8, 8)
    assert not job.model.training
    folder = job.save(tmp_path / "toy")
    model = vae_core.load_model(folder, device="cpu")
    assert model.config == job.config.model
    assert (folder / "samples.png").is_file() and (folder / "training_config.json").is_file()
    assert "elbo" in vae_core.io.card.read_card_metrics(folder)


def test_stop_and_time_limit():
    job = TrainingJob(tiny(epochs=40), log_every=1).start()
    wait_for(lambda: job.snapshot().step >= 3 or not job.is_alive(), 30, "three steps")
    job.stop()
    snap = finish(job)
    assert snap.status == "stopped" and snap.step < snap.total_steps
    timed = finish(TrainingJob(tiny(epochs=40), limits=TrainingLimits(max_epochs=50, max_seconds=0.2),
                               log_every=1).start())
    assert timed.status == "finished" and "time limit" in timed.message and timed.step < timed.total_steps


def test_failures_are_reported_not_raised():
    cfg = RunConfig(MLPConfig(in_shape=(1, 28, 28), latent_dim=2), TrainConfig(dataset="digits", epochs=1))
    snap = finish(TrainingJob(cfg).start())
    assert snap.status == "failed" and "expects images of shape" in snap.error


def test_too_many_jobs_at_once_on_the_server_and_for_one_session():
    slots = TrainingSlots(max_jobs=2, max_per_owner=1)
    first = TrainingJob(tiny(epochs=40), slots=slots, owner="a").start()
    second = third = None
    try:
        with pytest.raises(vae_core.VAEError, match="You already have 1 run training"):
            TrainingJob(tiny(), slots=slots, owner="a").start()
        second = TrainingJob(tiny(epochs=40), slots=slots, owner="b").start()
        with pytest.raises(vae_core.VAEError, match="2 runs are already training"):
            TrainingJob(tiny(), slots=slots, owner="c").start()
    finally:
        for job in (first, second):
            if job is not None:
                job.stop()
                finish(job)
    assert slots.running() == 0
    third = TrainingJob(tiny(), slots=slots, owner="a").start()       # a finished run frees its slot
    assert finish(third).status == "finished"


def test_save_and_push_refuse_bad_input(tmp_path, monkeypatch):
    job = TrainingJob(tiny())
    with pytest.raises(vae_core.VAEError, match="not finished"):
        job.save(tmp_path / "x")
    finish(job.start())
    folder = job.save(tmp_path / "ok")
    with pytest.raises(vae_core.VAEError, match="token"):
        push_to_hub(folder, "me/my-vae", None)
    with pytest.raises(vae_core.VAEError, match="not a Hub repo id"):
        push_to_hub(folder, "no slash", "a-token")
