"""Faults: a run killed at random moments while it writes checkpoints, and a full disk."""
import contextlib
import dataclasses
import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading

import pytest
import torch

from tests.waiting import wait_for
from vae_core import VAEError, load_model, train

CMD = [sys.executable, "-m", "vae_core", "train", "--model", "mlp", "--dataset", "digits", "--hidden-dims", "32",
       "--latent-dim", "2", "--batch-size", "256", "--eval-every", "1000", "--checkpoint-seconds", "0", "--quiet"]


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
    from vae_core.io import run_folder
    out = tmp_path / "run"
    gen = train(tiny_run_config, out_dir=out)
    for ev in gen:
        if ev.kind == "epoch":
            break
    saved = (out / "model.safetensors").read_bytes()
    real = run_folder.save_file

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder, "save_file", full)
    with pytest.raises(VAEError, match="No space left.*previous checkpoint there is intact"):
        for ev in gen:
            pass
    assert (out / "model.safetensors").read_bytes() == saved
    assert not list(tmp_path.glob(".run.tmp-*"))
    monkeypatch.setattr(run_folder, "save_file", real)
    assert load_model(out) is not None


# ---------------------------------------------------------------------------------------------
# A real full file system: a small tmpfs, mounted in a private mount namespace (unshare -rm)

FULL_DISK_SCRIPT = r"""
set -u
mount -t tmpfs -o size={size} tmpfs {mnt} || exit 97
{python} -m vae_core train --model mlp --dataset digits --hidden-dims 64 --latent-dim 2 --batch-size 256 \
    --epochs 3 --eval-every 1000 --checkpoint-seconds 0 --out {mnt}/run --quiet 2>{mnt}/../stderr.txt
echo "train_rc=$?"
{python} - <<'PY'
import pathlib, sys
from vae_core import load_model
mnt = pathlib.Path({mnt!r})
print("leftovers=" + ",".join(p.name for p in mnt.iterdir() if p.name.startswith(".run.tmp")))
m = load_model(mnt / "run")
print("loaded=" + str(sum(p.numel() for p in m.parameters())))
PY
"""


def _can_mount_tmpfs(tmp_path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def test_a_real_full_file_system_stops_the_run_with_a_message_and_keeps_the_checkpoint(tmp_path):
    """The tmpfs holds the first checkpoint but not a second beside it (the swap writes the new one first)."""
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("this machine does not allow a tmpfs in a user namespace (unshare -rm mount -t tmpfs)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = FULL_DISK_SCRIPT.format(size="200k", mnt=str(mnt), python=sys.executable)
    r = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "train_rc=2" in r.stdout, (r.stdout, r.stderr, stderr)
    assert "No space left on device" in stderr and "previous checkpoint there is intact" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert "leftovers=\n" in r.stdout                 # the failed save's temporary folder is gone
    assert "loaded=" in r.stdout, r.stderr[-2000:]    # and the first checkpoint still opens


# ---------------------------------------------------------------------------------------------
# Checksums, damaged resume files, a kill between the two renames, two saves at once


@pytest.fixture
def run_folder(tiny_run_config, tmp_path):
    out = tmp_path / "run"
    for _ in train(tiny_run_config, out_dir=out):
        pass
    return out


def flip_a_byte(path, from_end: int = 5):
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0x01                               # inside the last tensor's data: the file still parses
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_weights_is_caught_on_load(run_folder):
    assert json.loads((run_folder / "checksums.json").read_text())["files"].keys() >= {
        "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "training_config.json"}
    flip_a_byte(run_folder / "model.safetensors")
    with pytest.raises(VAEError, match="model.safetensors does not match its checksum"):
        load_model(run_folder)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "trainer_state.json"])
def test_a_flipped_byte_is_caught_on_resume(run_folder, tiny_run_config, name):
    flip_a_byte(run_folder / name, from_end=3 if name.endswith(".json") else 5)
    more = dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train, epochs=3))
    with pytest.raises(VAEError, match=f"{name} does not match its checksum"):
        next(train(more, out_dir=run_folder, resume=True))


@pytest.mark.parametrize("damage, match", [
    (lambda f: (f / "optimizer.safetensors").write_bytes((f / "optimizer.safetensors").read_bytes()[:100]),
     "optimizer.safetensors is damaged"),
    (lambda f: (f / "optimizer.safetensors").write_bytes(b"\xff" * 64), "optimizer.safetensors is damaged"),
    (lambda f: (f / "trainer_state.json").write_text("{not json"), "trainer_state.json is not valid JSON"),
    (lambda f: (f / "trainer_state.json").write_text('{"epoch": 2}'), "trainer_state.json is damaged"),
    (lambda f: (f / "trainer_state.json").write_text(
        json.dumps({**json.loads((f / "trainer_state.json").read_text()),
                    "optimizer": {"param_groups": [], "scalars": {}}})), "does not fit"),
])
def test_damaged_resume_files_get_a_message_not_a_traceback(run_folder, damage, match, capsys):
    from vae_core.cli import main

    (run_folder / "checksums.json").unlink()             # as a folder copied without its manifest
    damage(run_folder)
    rc = main(["train", "--resume", "--out", str(run_folder), "--epochs", "3", "--quiet"])   # a traceback would raise
    err = capsys.readouterr().err
    assert rc != 0 and re.search(match, err), err[-2000:]


def test_a_run_killed_between_the_two_renames_resumes(run_folder):
    old = run_folder.parent / f".{run_folder.name}.old"
    from vae_core.cli import main

    os.rename(run_folder, old)                          # the state between the two renames of a swap
    assert main(["train", "--resume", "--out", str(run_folder), "--epochs", "3", "--quiet"]) == 0
    assert json.loads((run_folder / "trainer_state.json").read_text())["epoch"] == 3
    assert not old.exists()


def test_two_saves_to_one_name_at_once_both_succeed(tmp_path):
    """Each save used to start by removing every temporary folder of that name: the other save's too."""
    from vae_core import build_model
    from vae_core.io.run_folder import write_run_folder

    dest = tmp_path / "same-name"
    models = [build_model({"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [256], "latent_dim": 2})
              for _ in range(2)]
    errors, start = [], threading.Barrier(4)

    def saver(model):
        start.wait()
        for _ in range(10):
            try:
                write_run_folder(dest, model)
            except Exception as e:                   # a VAEError here is the failure this test looks for
                errors.append(e)

    threads = [threading.Thread(target=saver, args=(models[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert load_model(dest) is not None
    assert not list(tmp_path.glob(".same-name.tmp-*")) and not (tmp_path / ".same-name.old").exists()
