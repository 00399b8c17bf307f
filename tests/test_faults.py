"""Faults: a run killed at random moments while it writes checkpoints, and a full disk."""
import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch

from tests.waiting import wait_for
from vae_core import VAEError, load_model, train

CMD = [sys.executable, "-m", "vae_core", "train", "--model", "mlp", "--dataset", "digits", "--hidden-dims", "32",
       "--latent-dim", "2", "--batch-size", "256", "--eval-every", "1000", "--quiet"]


def test_a_run_killed_at_random_moments_always_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    rng = random.Random(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = 0
    for attempt in range(8):
        # Every epoch is tiny, so checkpoints are written many times a second: kills land mid-write.
        args = CMD + ["--epochs", "100000", "--out", str(out)] + (["--resume"] if (out / "trainer_state.json").exists()
                                                                    or (tmp_path / ".run.old").exists() else [])
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def written() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            return (out / "model.safetensors").exists() or (tmp_path / ".run.old").exists()

        wait_for(written, 60, "the first checkpoint")
        # Let a random number of further checkpoints be written, then kill: the kill lands wherever
        # in the write cycle the process happens to be.
        seen, wanted = set(), rng.randint(1, 12)

        def swaps() -> bool:
            for f in (out / "trainer_state.json", tmp_path / ".run.old"):
                with contextlib.suppress(OSError):
                    seen.add(f.stat().st_ino)
            assert proc.poll() is None
            return len(seen) >= wanted

        wait_for(swaps, 60, f"{wanted} checkpoint writes")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        model = load_model(out)                         # recovers an interrupted swap if it has to
        assert all(torch.isfinite(p).all() for p in model.parameters())
        state = json.loads((out / "trainer_state.json").read_text())
        assert state["epoch"] >= 1
    assert kills == 8
    # And --resume goes on from the last checkpoint.
    before = json.loads((out / "trainer_state.json").read_text())["epoch"]
    r = subprocess.run(CMD + ["--epochs", str(before + 2), "--out", str(out), "--resume"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "trainer_state.json").read_text())["epoch"] == before + 2
    assert not list(tmp_path.glob(".run.tmp-*"))


def test_a_full_disk_stops_the_run_with_a_message_and_keeps_the_checkpoint(tiny_run_config, tmp_path, monkeypatch):
    from vae_core import checkpoint
    out = tmp_path / "run"
    gen = train(tiny_run_config, out_dir=out)
    for ev in gen:
        if ev.kind == "epoch":
            break
    saved = (out / "model.safetensors").read_bytes()
    real = checkpoint.save_file

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(VAEError, match="No space left.*previous checkpoint there is intact"):
        for ev in gen:
            pass
    assert (out / "model.safetensors").read_bytes() == saved
    assert not list(tmp_path.glob(".run.tmp-*"))
    monkeypatch.setattr(checkpoint, "save_file", real)
    assert load_model(out) is not None
