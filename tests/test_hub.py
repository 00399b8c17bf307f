import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vae_core import VAEError, build_model, load_model, open_model, save_pretrained
from vae_core.device import pick_device
from vae_core.io.files import atomic_folder

CFG = {"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [16], "latent_dim": 3}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(CFG)
    return model, save_pretrained(model, tmp_path / "m")


@pytest.fixture
def foreign(saved):
    """The same folder without its checksums, as another tool would write it: the structural checks
    below are what stand between such a folder and the model (test_checksums.py covers the manifest)."""
    model, folder = saved
    (folder / "checksums.json").unlink()
    return model, folder


def test_save_then_load_is_bit_identical(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "checksums.json", "config.json",
                                                        "model.safetensors"]
    loaded = load_model(folder, device="cpu")
    assert not loaded.training
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.encode(x).mu, loaded.encode(x).mu)
        assert torch.equal(model.decode(model.encode(x).mu), loaded.decode(loaded.encode(x).mu))


def test_mismatched_checkpoint_is_refused(foreign):
    _, folder = foreign
    cfg = json.loads((folder / "config.json").read_text())
    cfg["latent_dim"] = 4
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VAEError, match="shape"):
        load_model(folder)


def test_missing_and_extra_keys_are_refused(foreign):
    _, folder = foreign
    state = load_file(str(folder / "model.safetensors"))
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(VAEError, match="unexpected"):
        load_model(folder)


def test_wrong_dtype_and_nan_weights_are_refused(foreign):
    _, folder = foreign
    state = load_file(str(folder / "model.safetensors"))
    bad = dict(state)
    bad["encoder.0.weight"] = bad["encoder.0.weight"].double()
    save_file(bad, str(folder / "model.safetensors"))
    with pytest.raises(VAEError, match="float64"):
        load_model(folder)
    state["encoder.0.bias"][0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(VAEError, match="NaN"):
        load_model(folder)


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):   # unpickling this would create the marker file
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_is_refused_and_never_run(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    (folder / "config.json").write_text(json.dumps(CFG))
    for name in ("pytorch_model.bin", "model.pt", "weights.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(VAEError, match="pickle"):
        load_model(folder)
    assert not marker.exists()


@pytest.mark.parametrize("damage, match", [
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 10), "corrupt"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:200]), "corrupt"),
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda f: (f / "config.json").unlink(), "no config.json"),
    (lambda f: (f / "config.json").write_text(json.dumps({**CFG, "hidden_dims": [10 ** 9]})), "hidden_dims"),
])
def test_damaged_checkpoints_get_one_clear_message(foreign, damage, match):
    _, folder = foreign
    damage(folder)
    with pytest.raises(VAEError, match=match):
        load_model(folder)


def test_bad_sources_are_explained(tmp_path):
    with pytest.raises(VAEError, match="No folder"):
        load_model(str(tmp_path / "missing" / "run"))
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(VAEError, match="is a file"):
        load_model(f)
    with pytest.raises(VAEError, match="not a shipped checkpoint"):
        load_model("no-such-model")


def _hub_cache(tmp_path, folder, repo="acme/tiny-vae", commit="a" * 40, revision="main"):
    """A Hub cache laid out the way huggingface_hub writes one."""
    repo_dir = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        blob = repo_dir / "blobs" / f"{f.name}.blob"
        shutil.copy(f, blob)
        os.symlink(os.path.relpath(blob, snap), snap / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / revision).write_text(commit)
    return tmp_path / "hub"


def test_loading_by_repo_id_offline_through_the_hub_cache(saved, tmp_path, monkeypatch):
    model, folder = saved
    cache = _hub_cache(tmp_path, folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    x = torch.rand(2, 1, 8, 8)
    for source in ("acme/tiny-vae", "hub:acme/tiny-vae", "acme/tiny-vae@main"):
        loaded, info = open_model(source, device="cpu")
        with torch.no_grad():
            assert torch.equal(loaded.encode(x).mu, model.eval().encode(x).mu)
        # Its identity is the commit its files came from, whatever name or branch was typed.
        assert (info.kind, info.key, info.revision) == ("hub", f"hub:acme/tiny-vae@{'a' * 40}", "a" * 40)
    with pytest.raises(VAEError, match="local cache|no model repo"):
        load_model("acme/other-vae")
    with pytest.raises(VAEError):
        load_model("acme/tiny-vae@v9")


def test_interrupted_folder_swap_recovers_the_previous_checkpoint(saved):
    model, folder = saved
    old = folder.parent / f".{folder.name}.old"
    os.rename(folder, old)                 # as if a crash fell between the two renames
    loaded = load_model(folder)
    assert folder.is_dir() and not old.exists() and loaded is not None


def test_a_failed_write_leaves_the_old_folder_untouched(saved):
    _, folder = saved
    before = (folder / "model.safetensors").read_bytes()

    def write(tmp):
        (tmp / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_folder(folder, write)
    assert (folder / "model.safetensors").read_bytes() == before
    assert not list(folder.parent.glob(f".{folder.name}.tmp-*"))


def test_device_choice_prefers_cuda_then_mps(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    with pytest.raises(VAEError, match="CUDA"):
        pick_device("cuda")


def run_dataset(folder) -> str:
    return json.loads((folder / "training_config.json").read_text())["train"]["dataset"]


@pytest.mark.parametrize("name", __import__("vae_core").shipped_checkpoints())
def test_every_shipped_checkpoint_round_trips_and_reproduces_its_card(name):
    """Load, encode, decode, finite outputs; then the card's held-out metrics, recomputed."""
    from vae_core import load_dataset
    from vae_core.io.card import read_card_metrics
    from vae_core.evaluation.metrics import evaluate_model
    from vae_core.io.run_folder import load_run_config

    model, info = open_model(name, device="cpu")
    assert info.kind == "shipped" and info.trained_on == run_dataset(info.folder)
    run = load_run_config(info.folder)
    test = load_dataset(run.train.dataset, "test", image_size=run.train.image_size)
    with torch.inference_mode():
        x = test.float_images()[:8]
        y = test.labels[:8] if model.num_classes else None
        x_hat = model.decode(model.encode(x, y).mode(), y)
        samples = model.sample(4, generator=torch.Generator().manual_seed(0), y=0 if model.num_classes else None)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all() and torch.isfinite(samples).all()
    card = read_card_metrics(info.folder)
    assert info.metrics == card
    # The card's numbers come from the same seeded evaluation that training ran after its last epoch.
    res = evaluate_model(model, test, seed=run.train.seed, max_images=2000)
    for key in ("elbo", "recon", "kl", "mse"):
        assert float(card[key]) == pytest.approx(res[key], rel=2e-3, abs=2e-3), key
    if "active_units" in card:
        assert int(card["active_units"]) == res["active_units"]
    if "accuracy" in card:                                   # a model that classifies (an M2)
        assert float(card["accuracy"]) == pytest.approx(res["accuracy"], abs=1e-3)
