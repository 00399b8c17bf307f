"""Tracking: runs read back with TensorBoard's own reader and MLflow's client over SQLite, value for value.

CI installs the trackers (requirements-extras.txt), so these tests run there; importorskip only spares a
checkout that has not installed the optional extras.
"""
import json

import pytest

from vae_core import load_dataset, load_model
from vae_core.cli import main
from vae_core.training.loop import train
from vae_core.training.trackers import Tracking, TrackSpec

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TINY = ["--model", "mlp", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2",
        "--batch-size", "64", "--quiet"]


def _tensorboard(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _mlflow_run(uri: str, experiment: str, name: str | None = None):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return client, [r for r in runs if name is None or r.info.run_name == name]


def test_every_logged_value_equals_the_runs_own_events(tmp_path, tiny_run_config, digits_train):
    """Step losses, throughput, held-out metrics, KL per unit and the card's metrics: both readers give
    back exactly what the run's events held."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = Tracking([TrackSpec("tensorboard", str(tmp_path / "tb")), TrackSpec("mlflow", uri)],
                        experiment="exact", run_name="tiny", say=pytest.fail)
    test = load_dataset("digits", "test")      # held out: evaluated every epoch
    events = list(tracking.follow(train(tiny_run_config, digits_train, test), tiny_run_config))
    assert events[-1].kind == "done" and not tracking.problems

    expected: dict[str, list[tuple[int, float]]] = {}      # written out from the events, not from the tracker's code

    def put(key, step, value):
        expected.setdefault(key, []).append((step, float(value)))

    last_eval = None
    for ev in events:
        if ev.kind == "step":
            for k, v in ev.losses.items():
                put(f"train/{k}", ev.step, v)
            put("train/images_per_s", ev.step, ev.images_per_s)
        elif ev.kind == "epoch":
            put("train/lr", ev.step, tiny_run_config.train.lr)
            if not ev.eval:
                continue
            for k in ("elbo", "recon", "kl", "mse", "active_units"):
                put(f"test/{k}", ev.step, ev.eval[k])
            for i, v in enumerate(ev.eval["kl_per_dim"]):
                put(f"kl_per_unit/z{i}", ev.step, v)
            last_eval = ev.eval
    for k in ("elbo", "recon", "kl", "mse", "active_units"):
        put(f"card/{k}", events[-1].step, round(last_eval[k], 4))
    assert {"train/loss", "train/recon", "train/kl", "kl_per_unit/z3"} <= set(expected)
    assert len(expected["test/elbo"]) == tiny_run_config.train.epochs

    tb = _tensorboard(tmp_path / "tb" / "tiny")
    assert set(expected) <= set(tb.Tags()["scalars"])
    for k, pairs in expected.items():
        got = [(s.step, s.value) for s in tb.Scalars(k)]
        assert got == [(step, pytest.approx(v, rel=1e-6, abs=1e-6)) for step, v in pairs], k   # float32 there

    client, [run] = _mlflow_run(uri, "exact", "tiny")
    assert run.info.status == "FINISHED"
    for k, pairs in expected.items():
        got = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
        assert sorted(got) == sorted(pairs), k                                                      # exact
    assert run.data.params["model.latent_dim"] == "4" and run.data.params["train.beta"] == "1.0"


def test_a_command_line_run_in_both_trackers_matches_its_card_and_ships_its_folder(tmp_path, capsys):
    out, tb, db = tmp_path / "run", tmp_path / "tb", tmp_path / "m" / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out), "--track", f"tensorboard:{tb}",
                 "--track", f"mlflow:{uri}", "--experiment", "cli"]) == 0
    assert "could not" not in capsys.readouterr().err
    state = json.loads((out / "trainer_state.json").read_text())
    card = state["metrics"]

    acc = _tensorboard(tb / "run")
    for k, v in card.items():
        assert acc.Scalars(f"card/{k}")[-1].value == pytest.approx(v, rel=1e-6)
    kept = [r for r in state["history"] if "test_elbo" in r]   # the epochs evaluated (at most every 5 s: the last)
    assert kept and kept[-1]["epoch"] == 2
    for row in state["history"]:                      # the per-epoch history the run folder keeps (rounded)
        assert [s.value for s in acc.Scalars("test/elbo") if s.step == row["step"]] == \
            ([pytest.approx(row["test_elbo"], abs=1e-4)] if row in kept else [])
    assert [i.step for i in acc.Images("samples")] == [r["step"] for r in kept]
    assert [i.step for i in acc.Images("reconstructions")] == [r["step"] for r in kept]
    assert acc.Tags()["tensors"], "the config as hyperparameters (HParams tab)"

    client, [run] = _mlflow_run(uri, "cli", "run")
    assert {k: run.data.metrics[f"card/{k}"] for k in card} == {k: float(v) for k, v in card.items()}
    assert run.data.params["train.epochs"] == "2"
    images = [f.path for f in client.list_artifacts(run.info.run_id, "samples")]
    assert len(images) == len(kept)
    folder = client.download_artifacts(run.info.run_id, "run", str(tmp_path / "download"))
    assert load_model(folder).config == load_model(out).config


def test_a_failing_tracker_stops_nothing_and_is_told_once(tmp_path, capsys, monkeypatch):
    """A bad URI and a directory that cannot be made fail at the start; a disk that fills mid-run fails later.
    The run finishes and saves its checkpoint; each failure is one line; the healthy tracker logs on."""
    from vae_core.training import trackers

    calls = []
    real = trackers.TensorBoardSink.metrics

    def fills_up(self, values, step):
        calls.append(step)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        real(self, values, step)

    monkeypatch.setattr(trackers.TensorBoardSink, "metrics", fills_up)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out), "--track", "mlflow:bogus://nowhere",
                 "--track", "mlflow:http://127.0.0.1:8679",                      # no server listens there
                 "--track", f"tensorboard:{blocker / 'tb'}", "--track", f"tensorboard:{tmp_path / 'tb'}",
                 "--track", f"mlflow:{uri}"]) == 0
    err = capsys.readouterr().err.splitlines()
    told = [line for line in err if line.startswith("tracking: could not")]
    assert len(told) == 4, err
    assert any("mlflow:bogus://nowhere" in line for line in told)
    assert any("http://127.0.0.1:8679 does not answer" in line for line in told)
    assert any(f"tensorboard:{blocker / 'tb'}" in line for line in told)
    assert any("No space left on device" in line for line in told)
    assert len(calls) == 3                            # dropped at its failure, never called again
    assert load_model(out).latent_shape == (2,)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["epoch"] == 2
    client, [run] = _mlflow_run(uri, "vae_core")
    assert run.info.status == "FINISHED"
    assert client.get_metric_history(run.info.run_id, "test/elbo")[-1].step == state["step"]


def test_a_tracker_that_is_not_installed_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    assert main(["train", *TINY, "--epochs", "1", "--track", "mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the mlflow package" in err[0] and "pip install mlflow-skinny" in err[0]


@pytest.mark.parametrize("text, problem", [("wandb:x", "give tensorboard:DIR or mlflow:URI"),
                                           ("tensorboard", "needs a directory")])
def test_a_bad_track_value_is_one_line(text, problem, capsys):
    assert main(["train", *TINY, "--track", text]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0]


def test_mlflow_defaults_to_the_embedded_sqlite_store():
    assert TrackSpec.parse("mlflow") == TrackSpec("mlflow", "sqlite:///runs/mlflow.db")
    assert TrackSpec.parse("mlflow:http://localhost:5000").target == "http://localhost:5000"


def test_the_install_hints_name_the_pinned_tracking_extra():
    """What `--track` tells a user to install is what requirements-extras.txt pins and pyproject's extra lists."""
    import tomllib
    from pathlib import Path

    from vae_core.training.trackers import PACKAGES

    root = Path(__file__).resolve().parent.parent
    pinned = {line.split("==")[0].lower() for line in (root / "requirements-extras.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    extra = {p.lower() for p in tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tracking"]}
    for _, hint in PACKAGES.values():
        for package in hint.removeprefix("pip install ").split():
            assert package.lower() in pinned and package.lower() in extra, package


def test_a_sweep_puts_each_setting_in_one_tensorboard_dir_and_one_experiment(tmp_path, capsys):
    tb, uri = tmp_path / "tb", f"sqlite:///{tmp_path / 'sweep.db'}"
    assert main(["sweep", "--beta", "0.5,2", "--latent", "3", *TINY[:6], "--batch-size", "64", "--epochs", "1",
                 "--out", str(tmp_path / "runs"), "--track", f"tensorboard:{tb}", "--track", f"mlflow:{uri}",
                 "--experiment", "grid"]) == 0
    names = ["beta=0.5,latent=3", "beta=2,latent=3"]
    assert sorted(p.name for p in tb.iterdir()) == names
    for name, beta in zip(names, (0.5, 2.0)):
        acc = _tensorboard(tb / name)
        assert acc.Scalars("test/elbo") and acc.Tags()["tensors"]          # its curves and its hyperparameters
        state = json.loads((tmp_path / "runs" / name / "trainer_state.json").read_text())
        assert acc.Scalars("card/elbo")[-1].value == pytest.approx(state["metrics"]["elbo"], rel=1e-6)
        assert load_model(tmp_path / "runs" / name).latent_shape == (3,)
    client, runs = _mlflow_run(uri, "grid")
    assert sorted(r.info.run_name for r in runs) == names
    assert {r.info.run_name: (r.data.params["train.beta"], r.data.params["model.latent_dim"]) for r in runs} == \
        {names[0]: ("0.5", "3"), names[1]: ("2.0", "3")}


@pytest.mark.parametrize("extra, problem", [(["--beta", "1,1"], "each once"),
                                            (["--beta", ",".join(map(str, range(1, 66)))], "above the 64"),
                                            (["--beta", "1", "--no-track"], "needs somewhere to compare")])
def test_a_bad_sweep_is_one_line(extra, problem, capsys, tmp_path):
    track = [] if "--no-track" in extra else ["--track", f"tensorboard:{tmp_path}"]
    assert main(["sweep", "--latent", "2", *[e for e in extra if e != "--no-track"], *track]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0]


def test_a_sink_that_fails_on_its_images_is_told_once(tmp_path, tiny_run_config, digits_train, monkeypatch):
    """Samples and reconstructions are two images an epoch: a sink whose first image fails is dropped there,
    and neither the second image nor the later epochs tell it again."""
    from vae_core.training import trackers

    def broken(self, tag, image, step):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trackers.TensorBoardSink, "image", broken)
    told = []
    tracking = Tracking([TrackSpec("tensorboard", str(tmp_path / "tb"))], run_name="r", say=told.append)
    from vae_core.training.loop import init_model

    model = init_model(tiny_run_config.model, tiny_run_config.train.seed)
    events = list(tracking.follow(train(tiny_run_config, digits_train, model=model), tiny_run_config, model=model,
                                  images=digits_train.images[:4]))
    assert events[-1].kind == "done"
    assert len(told) == 1 and "could not log samples to tensorboard:" in told[0], told
