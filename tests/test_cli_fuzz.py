"""Every command driven with hostile values: each is refused with one line, status 2, no traceback, and no
file of an existing run folder (or of the user's files beside it) changes."""
import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vae_core.cli import main

TINY = ["--model", "mlp", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2",
        "--epochs", "1", "--batch-size", "64", "--quiet"]
HOSTILE = {"negative": "-5", "zero": "0", "huge": "10000000000000", "nan": "nan", "inf": "inf", "empty": ""}

# (command line before the flag, flag, hostile values the flag takes as valid: those are not run here)
NUMBERS = [
    (["train", *TINY[:-3], "--out", "NEW"], "--epochs", ()),
    (["train", "--out", "NEW"], "--batch-size", ()),
    (["train", "--out", "NEW"], "--lr", ()),
    (["train", "--out", "NEW"], "--latent-dim", ()),
    (["train", "--out", "NEW"], "--hidden-dims", ()),
    (["train", "--out", "NEW"], "--beta", ("zero",)),
    (["train", "--out", "NEW"], "--image-size", ("zero",)),
    (["train", "--resume", "--out", "RUN"], "--epochs", ()),
    (["train-prior", "RUN"], "--epochs", ()),
    (["evaluate", "RUN", "--dataset", "digits"], "--iwae-k", ("zero",)),
    (["evaluate", "RUN", "--dataset", "digits"], "--batch-size", ()),
    (["evaluate", "RUN", "--dataset", "digits"], "--disentanglement-scale", ()),
    (["evaluate", "RUN", "--dataset", "digits"], "--fid-samples", ()),
    (["evaluate", "RUN", "--dataset", "digits"], "--max-seconds", ()),
    (["evaluate", "RUN", "--dataset", "digits", "--binarized"], "--binarize-seed", ("zero", "huge")),
    (["sample", "RUN", "--out", "NEW.png"], "--n", ()),
    (["sample", "RUN", "--out", "NEW.png"], "--nrow", ()),
    (["sample", "RUN", "--out", "NEW.png"], "--temperature", ("zero",)),
    (["sample", "RUN", "--out", "NEW.png"], "--scale", ()),
    (["sample", "RUN", "--out", "NEW.png"], "--label", ("zero",)),
    (["sample", "RUN", "--out", "NEW.png"], "--seed", ("zero", "huge")),
    (["directions", "RUN", "--dataset", "digits"], "--n", ()),
    (["directions", "RUN", "--dataset", "digits"], "--k", ()),
    (["directions", "RUN", "--dataset", "digits"], "--local-codes", ()),
    (["augment", "RUN", "--dataset", "digits", "--out", "NEW"], "--per-image", ()),
    (["augment", "RUN", "--dataset", "digits", "--out", "NEW"], "--scale", ("zero",)),
    (["augment", "RUN", "--dataset", "digits", "--out", "NEW"], "--labels-per-class", ("zero",)),
    (["augment", "RUN", "--dataset", "digits", "--out", "NEW"], "--threads", ("zero",)),
    (["map", "RUN", "--dataset", "digits", "--out", "NEW.parquet"], "--batch-size", ()),
    (["map", "RUN", "--dataset", "digits", "--out", "NEW.parquet"], "--fit-points", ()),
    (["convert", "FILE", "NEW"], "--in-shape", ()),
    (["experiment", "semi-supervised", "--dataset", "digits"], "--epochs", ()),
    (["experiment", "semi-supervised", "--dataset", "digits"], "--alpha", ("zero",)),
    (["experiment", "semi-supervised", "--dataset", "digits"], "--latent-dim", ()),
    (["experiment", "semi-supervised", "--dataset", "digits"], "--classifier-steps", ()),
    (["experiment", "augmentation", "--dataset", "digits"], "--scales", ("zero",)),
]
NUMBER_CASES = [pytest.param(before, flag, value, id=f"{before[0]}{flag}={kind}")
                for before, flag, allowed in NUMBERS for kind, value in HOSTILE.items() if kind not in allowed]

# Paths: FILE an existing file of the user's, DIR a folder of the user's (thesis.tex), UNDER_FILE a path
# through that file, RO a place in a read-only folder, RUN the existing run folder.
PATHS = [
    ["train", *TINY, "--out", "DIR"], ["train", *TINY, "--out", "FILE"], ["train", *TINY, "--out", "UNDER_FILE/run"],
    ["train", *TINY, "--out", "RO/run"], ["train", *TINY, "--out", ""], ["train", "--config", "DIR"],
    ["train", "--config", "MISSING/run.yaml"], ["train", "--resume", "--out", "DIR"],
    ["sample", "RUN", "--out", "DIR"], ["sample", "RUN", "--out", "FILE.png"], ["sample", "RUN", "--out", "UNDER_FILE/s.png"],
    ["sample", "RUN", "--out", "RO/s.png"], ["sample", "RUN", "--out", ""], ["sample", "RUN", "--out", "NEW.unknown"],
    ["sample", "", "--out", "NEW.png"], ["sample", "RUN", "--device", "gpu"], ["sample", "RUN", "--revision", "../x"],
    ["map", "RUN", "--dataset", "digits", "--out", "DIR"], ["map", "RUN", "--dataset", "digits", "--out", "FILE.parquet"],
    ["map", "RUN", "--dataset", "digits", "--out", "RO/m.parquet"], ["map", "RUN", "--dataset", "", "--out", "m.parquet"],
    ["augment", "RUN", "--dataset", "digits", "--out", "DIR"], ["augment", "RUN", "--dataset", "digits", "--out", "FILE"],
    ["augment", "RUN", "--dataset", "digits", "--out", "RUN"],
    ["convert", "FILE", "DIR"], ["convert", "FILE", "RUN/sub"], ["convert", "", "NEW"],
    ["evaluate", "RUN", "--fid-weights", "DIR"], ["evaluate", "DIR"], ["evaluate", "RUN", "--compare", ""],
    ["experiment", "semi-supervised", "--json", "DIR"], ["experiment", "semi-supervised", "--json", "FILE.json"],
    ["experiment", "augmentation", "--from-json", "MISSING/r.json"],
    ["push", "FILE", "me/model"], ["push", "RUN", "not a repo"], ["push", "RUN", "me/model", "--token-env", ""],
    ["push", "RUN", "me/model", "--token-env", "1BAD"], ["push", "RUN", "me/model@main"],
    ["train-prior", "DIR"], ["train-prior", "FILE"],
]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def places(tmp_path, run_folder, monkeypatch):
    """The placeholders' paths, the user's files made, and the read-only folder refused by os.access
    (as root, which ignores permission bits, the mode alone would not stop a write)."""
    user = tmp_path / "user"
    (user / "thesis").mkdir(parents=True)
    (user / "thesis" / "thesis.tex").write_text("my thesis")
    (user / "notes.txt").write_text("notes")
    for suffix in (".png", ".parquet", ".json"):
        (user / f"notes{suffix}").write_text("mine")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real_access(p, mode, **kw))
    yield {"RUN": run_folder, "DIR": user / "thesis", "FILE": user / "notes", "UNDER_FILE": user / "notes.txt",
           "RO": ro, "MISSING": tmp_path / "missing", "NEW": tmp_path / "new", "user": user}
    ro.chmod(0o755)


def _fill(args: list[str], places: dict) -> list[str]:
    out = []
    for a in args:
        head, _, tail = a.partition("/")
        key = next((k for k in places if a == k or head == k or (a.startswith(k) and a[len(k):].startswith("."))),
                   None)
        if key is None:
            out.append(a)
        elif key == "FILE" and a.startswith("FILE."):
            out.append(str(places["user"] / f"notes{a[4:]}"))
        elif key == "FILE":
            out.append(str(places["user"] / "notes.txt"))
        elif a.startswith("NEW."):
            out.append(str(places["NEW"]) + a[3:])
        else:
            out.append(str(places[key]) + ("/" + tail if tail else ""))
    return out


def _refused_in_one_line(argv, places, capsys, status=2) -> str:
    before = {k: _digest(places[k]) for k in ("RUN", "user")}
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == status, (argv, rc, err)
    lines = err.strip().splitlines()               # a cost estimate may come first, on a line of its own
    assert "Traceback" not in err and len([x for x in lines if not x.startswith("estimate: ")]) == 1, err
    assert lines[-1].startswith("error: "), err
    assert {k: _digest(places[k]) for k in ("RUN", "user")} == before, f"{argv} changed a file"
    assert not places["NEW"].exists() and not Path(str(places["NEW"]) + ".png").exists()
    return err


@pytest.mark.parametrize("before, flag, value", NUMBER_CASES)
def test_a_hostile_number_is_one_line_and_status_2(places, capsys, before, flag, value):
    argv = _fill(before, places) + [flag, value]
    if flag == "--in-shape":
        argv += [value, value]
    err = _refused_in_one_line(argv, places, capsys)
    if value not in ("",):
        assert flag in err or "TrainConfig" in err or "Prior" in err or "VQ" in err, err


@pytest.mark.parametrize("args", PATHS, ids=lambda a: "-".join(x or "EMPTY" for x in a[:1] + a[-2:]))
def test_a_hostile_path_or_name_is_one_line_and_status_2(places, capsys, args):
    _refused_in_one_line(_fill(args, places), places, capsys)


def _full_disk(*_a, **_kw):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("args", [
    ["sample", "RUN", "--n", "4", "--out", "NEW.png"],
    ["map", "RUN", "--dataset", "digits", "--split", "test", "--out", "NEW.parquet", "--quiet"],
    ["augment", "RUN", "--dataset", "digits", "--labels-per-class", "1", "--per-image", "1", "--out", "NEW", "--quiet"],
    ["train", "--resume", "--out", "RUN", "--epochs", "2", "--quiet"],
], ids=["sample", "map", "augment", "train-resume"])
def test_a_full_disk_is_one_line_and_leaves_the_run_folder_as_it_was(places, capsys, monkeypatch, args):
    monkeypatch.setattr(os, "fsync", _full_disk)          # every writer fsyncs before its rename
    err = _refused_in_one_line(_fill(args, places), places, capsys)
    assert "space" in err.lower() or "full" in err.lower(), err


@pytest.mark.parametrize("args", [["sample", "mnist-mlp", "--n", "-5"], ["sample", "mnist-mlp", "--out", "/"],
                                  ["evaluate", "mnist-mlp", "--iwae-k", "1000000000"]])
def test_a_real_process_refuses_in_one_line(tmp_path, args):
    r = subprocess.run([sys.executable, "-m", "vae_core", *args], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert list(tmp_path.iterdir()) == []
