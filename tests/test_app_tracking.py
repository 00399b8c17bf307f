"""Train page: in local mode a run can be tracked in TensorBoard and MLflow; in public mode it cannot."""
import pytest

from tests.app_conftest_helpers import assert_clean, errors, open_app

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def _train_page(monkeypatch, tmp_path, public: bool):
    monkeypatch.setenv("VAE_EXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("VAE_EXPLORER_MAX_EPOCHS", "5")
    if public:
        monkeypatch.setenv("VAE_EXPLORER_PUBLIC", "1")
    else:
        monkeypatch.delenv("VAE_EXPLORER_PUBLIC", raising=False)
    at = open_app("train")
    at.selectbox(key="train_dataset").set_value("digits")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_latent").set_value(2)
    return at


def test_local_mode_tracks_a_run_in_tensorboard_and_mlflow(monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    at = _train_page(monkeypatch, tmp_path, public=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    at.text_input(key="train_track").set_value(f"tensorboard:{tmp_path / 'tb'}, mlflow:{uri}")
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    job.join(120)
    assert not job.is_alive()
    at.run()
    assert_clean(at)
    elbo = job.snapshot().evals[-1]["elbo"]

    [run_dir] = (tmp_path / "tb").iterdir()
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    assert acc.Scalars("test/elbo")[-1].value == pytest.approx(elbo, rel=1e-6)
    assert acc.Images("reconstructions")
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("vae_core").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["test/elbo"] == elbo


def test_a_bad_sink_is_refused_before_the_run_starts(monkeypatch, tmp_path):
    at = _train_page(monkeypatch, tmp_path, public=False)
    at.text_input(key="train_track").set_value("wandb:project")
    at.button(key="train_start").click().run()
    assert "train_job" not in at.session_state
    assert any("tensorboard:DIR or mlflow:URI" in e for e in errors(at))


def test_public_mode_offers_no_sink(monkeypatch, tmp_path):
    at = _train_page(monkeypatch, tmp_path, public=True).run()
    assert_clean(at)
    assert "train_track" not in [t.key for t in at.text_input]
    assert at.button(key="train_start")                       # the rest of the page is there
