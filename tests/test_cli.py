import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from vae_core import load_model
from vae_core.cli import main

TINY = ["--model", "mlp", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2",
        "--epochs", "1", "--batch-size", "64", "--quiet"]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vae_core", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_train_writes_a_folder_that_load_model_opens(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert "finished" in capsys.readouterr().out
    for f in ("config.json", "model.safetensors", "README.md", "optimizer.safetensors", "trainer_state.json",
              "training_config.json", "samples.png"):
        assert (out / f).is_file(), f
    model = load_model(out)
    assert model.latent_shape == (2,) and model.config.in_shape == (1, 8, 8)
    card = (out / "README.md").read_text()
    assert "library_name: vae-latent-explorer" in card and "--hidden-dims 16" in card and "| elbo |" in card


def test_resume_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2", "--quiet"]) == 0
    assert json.loads((out / "trainer_state.json").read_text())["epoch"] == 2


def test_config_file_and_flags_override_it(tmp_path):
    from vae_core.cli import build_run_config, make_parser
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  model_type: mlp\n  latent_dim: 3\n  hidden_dims: [8, 8]\ntrain:\n  dataset: digits\n  beta: 4.0\n  epochs: 7\n")
    args = make_parser().parse_args(["train", "--config", str(cfg), "--epochs", "2"])
    run = build_run_config(args)
    assert run.model.latent_dim == 3 and run.model.hidden_dims == (8, 8) and run.model.in_shape == (1, 8, 8)
    assert run.train.beta == 4.0 and run.train.epochs == 2
    j = tmp_path / "run.json"
    j.write_text(json.dumps({"model": {"model_type": "cvae"}, "train": {"dataset": "digits"}}))
    run = build_run_config(make_parser().parse_args(["train", "--config", str(j)]))
    assert run.model.num_classes == 10


@pytest.mark.parametrize("args, content, match", [
    (["train", "--dataset", "nope"], None, "Unknown dataset"),
    (["train", "--model", "conv", "--codebook-size", "8"], None, "does not apply"),
    (["train", "--model", "conv", "--dataset", "digits"], None, "--image-size"),
    (["train", "--config", "CFG"], "model: [unclosed", "malformed"),
    (["train", "--config", "CFG"], "model:\n  model_type: mlp\n  latent_dim: many\n", "integer"),
    (["train", "--config", "CFG"], "bogus: 1\n", "unknown section"),
    (["train", "--lr", "-1"], None, "lr"),
    (["evaluate", "/no/such/run"], None, "No folder"),
    (["evaluate", "nobody/no-such-model"], None, "Hub"),
    (["sample", "mnist-cvae"], None, "--label"),
    (["push", "RUN", "me/model"], None, "HF_TOKEN"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, content, match):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if content is not None:
        (tmp_path / "cfg.yaml").write_text(content)
    if "RUN" in args:
        main(["train", *TINY, "--out", str(tmp_path / "run")])
        capsys.readouterr()
    args = [str(tmp_path / "cfg.yaml") if a == "CFG" else str(tmp_path / "run") if a == "RUN" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_a_real_process_shows_no_traceback():
    r = _cli("train", "--dataset", "nope")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "Unknown dataset" in r.stderr


def test_help_for_every_command():
    for cmd in ("train", "evaluate", "sample", "push"):
        r = _cli(cmd, "--help")
        assert r.returncode == 0 and "usage" in r.stdout
    assert "--kl-anneal" in _cli("train", "--help").stdout


def test_evaluate_and_sample(tmp_path, capsys):
    assert main(["evaluate", "mnist-mlp", "--iwae-k", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "IWAE log p(x), k=20" in out and "active units" in out and "bits/dim" in out
    assert "(test split, 1,000 images, seed 0)" in out              # each number's split, image count and seed
    for name in ("ELBO", "reconstruction -log p(x|z)", "KL", "IWAE log p(x)", "I(x; z)"):   # every one in nats
        assert any(line.strip().startswith(name) and "(nats)" in line for line in out.splitlines()), name
    assert "at most log N = log 1,000 = 6.91 nats with this estimator" in out
    assert main(["evaluate", "mnist-mlp", "--iwae-k", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["log_likelihood"] >= res["elbo"] - 1.0
    png = tmp_path / "s.png"
    assert main(["sample", "mnist-cvae", "--label", "3", "--n", "16", "--out", str(png)]) == 0
    assert Image.open(png).size[0] > 28


def test_evaluate_compares_two_models_on_the_same_images_and_k(capsys):
    assert main(["evaluate", "mnist-mlp-2d", "--compare", "mnist-mlp", "--iwae-k", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    ours, theirs = res["compare"]["models"]
    assert ours["model"] == "mnist-mlp-2d" and theirs["model"] == "mnist-mlp"
    assert ours["log_likelihood"] == res["log_likelihood"]
    assert main(["evaluate", "mnist-mlp", "--iwae-k", "3", "--json"]) == 0     # alone: the same number
    assert json.loads(capsys.readouterr().out)["log_likelihood"] == theirs["log_likelihood"]
    assert res["compare"]["log_likelihood_gain"] == ours["log_likelihood"] - theirs["log_likelihood"]
    assert ours["parameters"] == sum(p.numel() for p in load_model("mnist-mlp-2d").parameters())


def test_evaluate_fid_without_torch_fidelity_says_what_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch_fidelity", None)            # as on a CPU torch: not importable
    assert main(["evaluate", "mnist-mlp", "--iwae-k", "2", "--fid", "--fid-samples", "50", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "requirements-fid.txt" in err and "Traceback" not in err


def test_push_uploads_only_the_model_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    main(["train", *TINY, "--out", str(out)])
    calls = {}

    class FakeApi:
        def __init__(self, token):
            calls["token"] = token

        def create_repo(self, repo_id, private, exist_ok):
            calls["repo"] = repo_id

        def upload_folder(self, repo_id, folder_path, allow_patterns, commit_message):
            calls["files"] = allow_patterns
            return type("Info", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    assert main(["push", str(out), "me/tiny"]) == 0
    printed = capsys.readouterr()
    assert calls["repo"] == "me/tiny" and calls["token"] == "secret-token"
    assert "model.safetensors" in calls["files"] and "optimizer.safetensors" not in calls["files"]
    assert "secret-token" not in printed.out + printed.err


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(_free_port()),
                        "-m", "vae_core", "train", *TINY, "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_model(out).latent_shape == (2,)


def test_directions_reports_each_kind_against_dsprites_factors(capsys):
    assert main(["directions", "dsprites-beta4", "--n", "300", "--k", "2", "--local-codes", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    kinds = {r["kind"] for r in res["rows"]}
    assert kinds == {"principal", "attribute", "local"}
    assert [r["name"] for r in res["references"]] == ["shape", "scale", "orientation", "posX", "posY"]
    assert all(0 <= r["cosine"] <= 1 and r["best_factor"] in {"shape", "scale", "orientation", "posX", "posY"}
               for r in res["rows"])
    assert main(["directions", "mnist-mlp", "--dataset", "mnist-5k"]) == 2
    assert "no ground-truth factors" in capsys.readouterr().err
