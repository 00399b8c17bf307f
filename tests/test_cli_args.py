"""The command line's arguments: the issue's table of bad values, files that are not ours never replaced
without --overwrite, a resume without checksums said aloud, --debug for unexpected errors."""
import hashlib
import json

import pytest
from PIL import Image

from vae_core.cli import main
from vae_core.cli import sample as sample_command

TINY = ["--model", "mlp", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2",
        "--epochs", "1", "--batch-size", "64", "--quiet"]


def _error_line(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("estimate: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("args, names", [
    (["sample", "mnist-mlp", "--n", "-5"], "--n"),
    (["sample", "mnist-mlp", "--n", "100000000"], "more memory"),
    (["sample", "mnist-mlp", "--scale", "1000"], "--scale"),
    (["sample", "mnist-mlp", "--out", "FOLDER"], "folder"),
    (["sample", "mnist-mlp", "--temperature", "nan"], "--temperature"),
    (["evaluate", "mnist-mlp", "--iwae-k", "-1"], "--iwae-k"),
    (["evaluate", "mnist-mlp", "--batch-size", "0"], "--batch-size"),
])
def test_the_issues_bad_values_are_one_line_and_status_2(tmp_path, capsys, monkeypatch, args, names):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    assert main([str(tmp_path / "folder") if a == "FOLDER" else a for a in args]) == 2
    line = _error_line(capsys)
    assert names in line
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]               # nothing written


def test_sample_into_a_missing_folder_makes_it(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "grid.png"
    assert main(["sample", "mnist-mlp", "--n", "4", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 28


def test_train_out_on_a_folder_holding_a_users_file_refuses_and_leaves_it(tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("three years of work")
    assert main(["train", *TINY, "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "thesis.tex" in line and "--overwrite" in line
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "three years of work"
    assert main(["train", *TINY, "--out", str(out), "--overwrite"]) == 0       # asked for in so many words
    assert not (out / "thesis.tex").exists() and (out / "model.safetensors").is_file()


def test_a_run_folder_of_ours_is_replaced_but_not_one_holding_something_else(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert main(["train", *TINY, "--out", str(out)]) == 0                     # ours: a new run replaces it
    (out / "notes.md").write_text("what I tried")
    for args in (["train", *TINY, "--out", str(out)], ["train", "--resume", "--out", str(out), "--epochs", "2"]):
        assert main(args) == 2
        assert "notes.md" in _error_line(capsys)
    assert (out / "notes.md").read_text() == "what I tried"


@pytest.mark.parametrize("command", [["sample", "mnist-mlp", "--n", "4", "--out"],
                                     ["map", "mnist-mlp", "--dataset", "digits", "--split", "test", "--quiet", "--out"],
                                     ["experiment", "augmentation", "--from-json", "RESULTS", "--json"]])
def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path, capsys, command):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"rows": [{"arm": "x", "labels_per_class": 1, "scale": 0.0, "seed": 0,
                                             "accuracy": 0.5}]}))
    suffix = {"sample": ".png", "map": ".parquet", "experiment": ".json"}[command[0]]
    out = tmp_path / f"mine{suffix}"
    out.write_bytes(b"my own file")
    args = [str(results) if a == "RESULTS" else a for a in command] + [str(out)]
    assert main(args) == 2
    assert "already exists" in _error_line(capsys) and out.read_bytes() == b"my own file"
    if command[0] != "experiment":                      # --from-json only prints; it writes no --json
        assert main(args + ["--overwrite"]) == 0
        assert out.read_bytes() != b"my own file"


def test_augment_out_on_a_users_file_or_folder_refuses_unless_overwrite(tmp_path, capsys):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "cat.jpg").write_bytes(b"meow")
    args = ["augment", "mnist-mlp", "--dataset", "digits", "--labels-per-class", "1", "--per-image", "1", "--quiet",
            "--out", str(mine)]
    assert main(args) == 2
    assert "not written by augment" in _error_line(capsys) and (mine / "cat.jpg").read_bytes() == b"meow"


def test_convert_out_on_a_users_folder_refuses(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2")
    assert main(["convert", str(tmp_path / "no-such-pythae"), str(mine)]) == 2
    assert "data.csv" in _error_line(capsys) and (mine / "data.csv").read_text() == "1,2"


def test_resume_on_a_folder_without_checksums_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    (out / "checksums.json").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2", "--quiet"]) == 0
    assert "has no checksums.json" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_and_status_1_and_debug_shows_it(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(sample_command, "load_model", broken)
    args = ["sample", "mnist-mlp", "--out", str(tmp_path / "s.png")]
    assert main(args) == 1
    line = _error_line(capsys)
    assert "ZeroDivisionError" in line and "--debug" in line
    with pytest.raises(ZeroDivisionError):
        main(["--debug", *args])
    with pytest.raises(ZeroDivisionError):
        main([*args, "--debug"])


def test_a_value_is_checked_when_parsed_before_any_model_loads(capsys, monkeypatch):
    monkeypatch.setattr(sample_command, "load_model", lambda *a, **k: pytest.fail("loaded before the check"))
    assert main(["sample", "mnist-mlp", "--n", "inf"]) == 2
    line = _error_line(capsys)
    assert "--n" in line and "'inf'" in line and "whole number from 1" in line
