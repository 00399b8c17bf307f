"""Hub failures at the command line are one line that says what failed and what to do; never the network:
an unreachable endpoint (127.0.0.1:9), HF_HUB_OFFLINE, or a fake API answering an HTTP status."""
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError

from vae_core.cli import main, report

UNREACHABLE = "http://127.0.0.1:9"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_push_to_an_unreachable_hub_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert main(["push", "checkpoints/mnist-mlp", "me/model"]) == 2
    err = _one_line(capsys)
    assert "reach the Hub" in err and "hf_fake" not in err


def test_push_with_the_hub_switched_off_says_to_unset_hf_hub_offline(capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert main(["push", "checkpoints/mnist-mlp", "me/model"]) == 2
    assert "HF_HUB_OFFLINE" in _one_line(capsys)


@pytest.mark.parametrize("status, advice", [(401, "token was refused"), (403, "write access"),
                                            (404, "no such repo"), (413, "too large")])
def test_push_refused_by_the_hub_says_why_and_what_to_do(capsys, monkeypatch, status, advice):
    class RefusingApi:
        def __init__(self, token):
            pass

        def create_repo(self, repo_id, private, exist_ok):
            request = httpx2.Request("POST", f"{UNREACHABLE}/api/repos/create")
            raise HfHubHTTPError(f"{status} Client Error", response=httpx2.Response(status, request=request))

    monkeypatch.setattr(huggingface_hub, "HfApi", RefusingApi)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert main(["push", "checkpoints/mnist-mlp", "me/model"]) == 2
    err = _one_line(capsys)
    assert f"answered {status}" in err and advice in err and "hf_fake" not in err


def test_a_connect_error_from_any_http_client_is_a_message_not_a_traceback():
    # httpx's (here httpx2's) ConnectError is not an OSError, so a library that catches OSError misses it.
    line, status = report.failure(httpx2.ConnectError("connection refused"))
    assert status == 2 and line.startswith("Cannot reach the Hugging Face Hub (ConnectError)")


def test_download_from_an_unreachable_hub_in_a_real_process_is_one_line(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": UNREACHABLE, "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "vae_core", "sample", "someone/some-model", "--out", "s.png"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Hub" in r.stderr and "local folder" in r.stderr and not (tmp_path / "s.png").exists()
