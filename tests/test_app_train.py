"""Train page: a background run, polled; stop; explore, save, push; bad settings."""
import pytest

from tests.app_conftest_helpers import assert_clean, errors, image_urls, open_app


def wait_done(at, limit=120):
    """Wait for the session's run to end (its thread), then rerun the page."""
    job = at.session_state["train_job"]
    job.join(limit)
    assert not job.is_alive(), f"the run did not end within {limit} s"
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
    at.switch_page("explorer/pages/sample.py").run()
    assert_clean(at)
    assert "latent 2" in " ".join(m.value for m in at.sidebar.markdown)


def test_stop_stops_a_running_run(train_page, monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_MAX_EPOCHS", "50")
    at = train_page
    at.selectbox(key="train_dataset").set_value("mnist-5k")            # 50 epochs: well over the test's time
    at.number_input(key="train_epochs").set_value(50)
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    assert job.is_alive()
    at.button(key="train_stop").click().run()
    wait_done(at, limit=30)
    snap = job.snapshot()
    assert snap.status == "stopped" and snap.step < snap.total_steps, (snap.status, snap.step)
    assert "stopped by you" in snap.message
    assert_clean(at)


def test_bad_settings_show_an_error(train_page):
    at = train_page
    at.selectbox(key="train_family").set_value("conv")          # 8x8 digits: no conv model for that size
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("8x8" in e or "pixels" in e for e in errors(at))


def test_push_takes_a_token_from_a_password_field_and_never_shows_it(train_page, monkeypatch):
    """The token goes to the upload only: the page never echoes it, whatever happens; the server's own
    HF_TOKEN is never used in its place."""
    import huggingface_hub

    calls = {"apis": []}

    class FakeApi:
        def __init__(self, token):
            calls["apis"].append(token)
            calls["token"] = token

        def create_repo(self, repo_id, private, exist_ok):
            pass

        def upload_folder(self, repo_id, folder_path, allow_patterns, commit_message):
            calls["files"] = allow_patterns
            return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_server_owner_token")
    at = train_page.run()
    at.button(key="train_start").click().run()
    wait_done(at)
    assert at.text_input(key="train_token").proto.type == at.text_input(key="train_token").proto.PASSWORD
    at.text_input(key="train_repo").input("me/tiny-vae").run()
    at.button(key="train_push").click().run()
    assert any("token" in e for e in errors(at))                  # the field is empty: nothing is pushed
    assert calls["apis"] == []
    at.text_input(key="train_token").input("hf_secret_123").run()
    at.text_input(key="train_repo").input("not a repo").run()
    at.button(key="train_push").click().run()
    assert any("not a Hub repo id" in e for e in errors(at))      # said, not crashed
    at.text_input(key="train_repo").input("me/tiny-vae").run()
    at.button(key="train_push").click().run()
    assert calls["token"] == "hf_secret_123" and "model.safetensors" in calls["files"]
    assert any("hub.example/me/tiny-vae" in s.value for s in at.success)
    shown = " ".join(str(e.value) for kind in (at.success, at.error, at.info, at.markdown, at.caption) for e in kind)
    assert "hf_secret_123" not in shown and "hf_server_owner_token" not in shown


def motion_frames(at, key: str) -> list[str]:
    """The frame names (epochs) of the animated map drawn with ``key``."""
    import json

    chart = next(c for c in at.get("plotly_chart") if key in c.proto.id)
    return [f["name"] for f in json.loads(chart.proto.spec)["frames"]]


def test_a_run_plays_its_epochs_live_and_then_on_the_latent_map(train_page, tmp_path):
    at = train_page
    at.button(key="train_start").click().run()
    wait_done(at)
    assert_clean(at)
    assert "Training in motion" in [h.value for h in at.subheader]
    assert motion_frames(at, "train_motion") == ["0", "1", "2"]                    # before training, then each epoch
    at.text_input(key="train_save_name").set_value("moving")
    at.button(key="train_save").click().run()
    from vae_core.training import snapshots
    assert snapshots.read(tmp_path / "moving").epochs == [0, 1, 2]
    at.button(key="train_explore").click().run()
    at.switch_page("explorer/pages/latent_map.py").run()
    assert_clean(at)
    assert motion_frames(at, "map_motion") == ["0", "1", "2"]


def _progress_text(at):
    return at.get("progress")[0].proto.text


def test_a_finished_run_shows_its_average_pace_not_its_last_steps(train_page):
    at = train_page
    at.button(key="train_start").click().run()
    job = wait_done(at)
    snap = job.snapshot()
    assert snap.images == snap.step * job.config.train.batch_size                   # every image it trained on
    text = _progress_text(at)
    assert f"{snap.images:,} images in {snap.wall:.0f} s: {snap.images / snap.wall:,.0f} images/s on average" in text
    assert f"({snap.images_per_s:,.0f} images/s)" not in text
    held_out = next(c.value for c in at.caption if c.value.startswith("held-out after epoch"))
    assert "test images" in held_out and " nats, KL " in held_out and "nats per image" in held_out


def test_a_second_run_asks_before_replacing_an_unsaved_one(train_page, tmp_path):
    at = train_page
    at.button(key="train_start").click().run()
    first = wait_done(at)
    at.button(key="train_start").click().run()
    assert at.session_state["train_job"] is first                        # not thrown away unasked
    assert any("not saved" in w.value for w in at.warning)
    at.button(key="train_keep_last").click().run()
    assert at.session_state["train_job"] is first and not any("not saved" in w.value for w in at.warning)
    at.button(key="train_start").click().run()
    at.button(key="train_discard").click().run()
    second = at.session_state["train_job"]
    assert second is not first
    wait_done(at)
    at.text_input(key="train_save_name").set_value("kept-run")
    at.button(key="train_save").click().run()
    at.button(key="train_start").click().run()                          # saved: a new run starts at once
    assert at.session_state["train_job"] is not second
    wait_done(at)
    assert_clean(at)


def test_a_run_stopped_in_its_first_epoch_offers_no_animation(train_page, monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_MAX_EPOCHS", "50")
    at = train_page
    at.selectbox(key="train_dataset").set_value("mnist-5k")
    at.number_input(key="train_epochs").set_value(50)
    at.button(key="train_start").click().run()
    at.button(key="train_stop").click().run()
    job = wait_done(at, limit=30)
    assert len(job.snapshot().motion.epochs) == 1                         # only epoch 0: before training
    assert not any(h.value == "Training in motion" for h in at.subheader)
    assert not any("drag the slider" in c.value for c in at.caption)
    assert any("before its first epoch" in c.value for c in at.caption)
