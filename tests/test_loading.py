"""ModelInfo: every loaded model says what it is, and its key is never shared by other weights."""
import json

import pytest
import torch

from vae_core import ModelInfo, build_model, open_model, save_pretrained

CFG = {"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [16], "latent_dim": 3}


def test_a_shipped_model_says_where_it_comes_from_and_what_it_was_trained_on():
    model, info = open_model("mnist-mlp", device="cpu")
    assert info.kind == "shipped" and info.source == "mnist-mlp" and info.trained_on == "mnist-5k"
    assert float(info.metrics["elbo"]) < 0 and info.folder.name == "mnist-mlp"
    assert not hasattr(model, "source") and not hasattr(model, "folder")       # nothing bolted onto the module
    assert open_model("mnist-mlp", device="cpu")[1].key == info.key              # the same files: the same key
    assert open_model("mnist-conv", device="cpu")[1].key != info.key


def test_a_folder_rewritten_with_other_weights_gets_another_key(tmp_path):
    torch.manual_seed(0)
    folder = save_pretrained(build_model(CFG), tmp_path / "run")
    _, first = open_model(folder, device="cpu")
    assert first.kind == "folder" and first.trained_on == "" and first.metrics == {}
    save_pretrained(build_model(CFG), folder)                      # new random weights, same path
    _, second = open_model(folder, device="cpu")
    assert second.key != first.key
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "sigma": 0.2}))   # same weights, another config
    assert open_model(folder, device="cpu")[1].key != second.key


def test_models_made_in_this_process_never_share_a_key():
    keys = {ModelInfo.for_session("mlp trained here", "digits", {"elbo": -1.5}).key for _ in range(1000)}
    assert len(keys) == 1000
    info = ModelInfo.for_session("mlp trained here", "digits", {"elbo": -1.23456, "active_units": 2})
    assert info.kind == "session" and info.trained_on == "digits"
    assert info.metrics == {"elbo": "-1.235", "active_units": "2"}
    with pytest.raises(AttributeError):
        info.key = "another"                                      # a record, not a mutable attribute bag


def test_opening_every_shipped_model_never_imports_torchs_compiler():
    """A model built on the meta device (the shape probe) must not reach torch's compiler package or
    sympy: a server that opened one would keep their 800 modules (about 60 MB) for as long as it runs."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from vae_core import open_model\n"
            "from vae_core.io.hub import shipped_checkpoints\n"
            "for name in shipped_checkpoints():\n"
            "    open_model(name)\n"
            "    assert 'torch._dynamo' not in sys.modules and 'sympy' not in sys.modules, name\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
