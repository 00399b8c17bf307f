"""An unexpected error is logged with its traceback, naming where it happened, while the page shows one line.

A failure on the public server leaves the server's log something to debug from; the visitor sees a short
message and never a traceback. A VAEError is the user's to fix and its message says how: it is not logged.
"""
import logging

import pytest
from streamlit.testing.v1 import AppTest

import vae_core
from explorer.jobs import JobQueue
from vae_core.config import TrainConfig
from vae_core.models import MLPConfig
from vae_core.training import live
from vae_core.io.run_folder import RunConfig


def unexpected(caplog, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno >= logging.ERROR and r.exc_info]


def test_a_training_run_that_breaks_logs_its_traceback(caplog, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("a bug deep in the loop")
        yield                                                        # a generator, as train is

    monkeypatch.setattr(live, "train", broken)
    config = RunConfig(MLPConfig(in_shape=(1, 8, 8), latent_dim=2, hidden_dims=(16,)),
                       TrainConfig(dataset="digits", epochs=1, batch_size=64))
    with caplog.at_level(logging.ERROR):
        job = live.TrainingJob(config).start()
        job.join(60)
    snap = job.snapshot()
    assert snap.status == "failed" and snap.error == "Training failed: RuntimeError: a bug deep in the loop"
    (record,) = unexpected(caplog, "vae_core.training.live")
    assert record.exc_info[0] is RuntimeError and "--dataset digits" in record.getMessage()


def test_a_background_job_that_breaks_logs_its_traceback_and_a_users_error_does_not(caplog):
    def broken_map():
        raise ZeroDivisionError("a bug in a map")

    def refused():
        raise vae_core.VAEError("too many points; ask for fewer")

    q = JobQueue(workers=1)
    with caplog.at_level(logging.ERROR):
        bad, users = q.submit("alice", "bad", broken_map), q.submit("bob", "users", refused)
        assert bad.wait(10) and users.wait(10)
    assert bad.state == users.state == "failed"
    (record,) = unexpected(caplog, "explorer.jobs")
    assert record.exc_info[0] is ZeroDivisionError and "broken_map" in record.getMessage()
    assert "alice" in record.getMessage()


def _page_that_breaks():
    from explorer import session

    with session.guard("The broken page"):
        raise KeyError("a bug in a page")


@pytest.mark.parametrize("public", ["0", "1"])
def test_a_page_that_breaks_logs_its_traceback_and_shows_one_line(caplog, monkeypatch, public):
    monkeypatch.setenv("VAE_EXPLORER_PUBLIC", public)
    with caplog.at_level(logging.ERROR):
        at = AppTest.from_function(_page_that_breaks).run()
    assert not at.exception
    (shown,) = [e.value for e in at.error]
    assert shown.startswith("The broken page hit an unexpected problem (KeyError") and "Traceback" not in shown
    (record,) = unexpected(caplog, "explorer.session")
    assert record.exc_info[0] is KeyError and "The broken page" in record.getMessage()
