"""Train page: a background run, polled; stop; explore, save, push; bad settings."""
import time

import pytest

from tests.app_conftest_helpers import assert_clean, errors, image_urls, open_app


def wait_done(at, limit=120):
    deadline = time.time() + limit
    job = at.session_state["train_job"]
    while job.is_alive() and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    at.run()
    return job


@pytest.fixture
def train_page(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_EXPLORER_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("VAE_EXPLORER_MAX_EPOCHS", "5")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    at = open_app("train")
    at.selectbox(key="train_dataset").set_value("digits")
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_latent").set_value(2)
    return at


def test_widgets_and_limits(train_page):
    at = train_page.run()
    assert_clean(at)
    for key in ("train_dataset", "train_family", "train_anneal"):
        assert at.selectbox(key=key)
    for key in ("train_latent", "train_epochs", "train_beta"):
        assert at.number_input(key=key)
    assert at.number_input(key="train_epochs").max == 5         # from VAE_EXPLORER_MAX_EPOCHS
    assert at.button(key="train_stop").disabled


def test_a_run_trains_then_can_be_explored_and_saved(train_page, tmp_path):
    at = train_page
    at.button(key="train_start").click().run()
    assert not at.exception
    assert at.get("progress")
    job = wait_done(at)
    assert_clean(at)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.history and snap.samples is not None
    assert image_urls(at)                                        # the live sample grid
    at.text_input(key="train_save_name").set_value("my-run")
    at.button(key="train_save").click().run()
    assert_clean(at)
    assert (tmp_path / "my-run" / "model.safetensors").is_file()
    at.button(key="train_push").click().run()                    # no repo id, no token: explained
    assert errors(at)
    at.button(key="train_explore").click().run()
    assert at.sidebar.radio(key="model_kind").value == "This session's run"
    at.switch_page("app_pages/sample.py").run()
    assert_clean(at)
    assert "latent 2" in " ".join(m.value for m in at.sidebar.markdown)


def test_stop(train_page, monkeypatch):
    at = train_page
    at.selectbox(key="train_dataset").set_value("mnist-5k")
    at.number_input(key="train_epochs").set_value(5)
    at.button(key="train_start").click().run()
    at.button(key="train_stop").click().run()
    job = wait_done(at)
    assert job.snapshot().status in ("stopped", "finished")
    assert not at.exception


def test_bad_settings_show_an_error(train_page):
    at = train_page
    at.selectbox(key="train_family").set_value("conv")          # 8x8 digits: no conv model for that size
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("8x8" in e or "pixels" in e for e in errors(at))
