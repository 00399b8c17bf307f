"""pythae models: refused by load_model, converted deliberately by vae_core.io.convert."""
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from vae_core import VAEError, load_model
from vae_core.cli import main
from vae_core.io.convert import convert_pythae

IN_DIM, LATENT = [1, 8, 8], 3


class PythaeReplica(nn.Module):
    """pythae's VAE with its default nets, module for module (Encoder_VAE_MLP, Decoder_AE_MLP), so
    ``state_dict()`` has pythae's own key names."""

    def __init__(self, d=64, latent=LATENT):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([nn.Sequential(nn.Linear(d, 512), nn.ReLU())])
        self.encoder.embedding = nn.Linear(512, latent)
        self.encoder.log_var = nn.Linear(512, latent)
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList([nn.Sequential(nn.Linear(latent, 512), nn.ReLU()),
                                             nn.Sequential(nn.Linear(512, d), nn.Sigmoid())])

    def forward(self, x):
        h = self.encoder.layers[0](x.reshape(x.shape[0], -1))
        mu, log_var = self.encoder.embedding(h), self.encoder.log_var(h)
        out = mu
        for layer in self.decoder.layers:
            out = layer(out)
        return mu, log_var, out.reshape(x.shape)


def write_pythae_folder(folder: Path, *, name="VAEConfig", loss="bce", input_dim=IN_DIM, payload=None,
                        custom_encoder=False) -> PythaeReplica:
    """What pythae's BaseAE.save writes: model_config.json, environment.json, model.pt (and encoder.pkl)."""
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    net = PythaeReplica(d=int(torch.tensor(input_dim).prod()))
    config = {"name": name, "input_dim": input_dim, "latent_dim": LATENT, "uses_default_encoder": not custom_encoder,
              "uses_default_decoder": True, "reconstruction_loss": loss}
    (folder / "model_config.json").write_text(json.dumps(config, indent=4))
    (folder / "environment.json").write_text(json.dumps({"name": "EnvironmentConfig", "python_version": "3.10"}))
    torch.save({"model_state_dict": net.state_dict() if payload is None else payload}, folder / "model.pt")
    if custom_encoder:
        (folder / "encoder.pkl").write_bytes(pickle.dumps(payload))
    return net.eval()


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):   # unpickling this would create the marker file
        return (Path.touch, (Path(self.marker),))


def test_load_model_refuses_a_pythae_folder_and_says_how_to_convert(tmp_path):
    src = tmp_path / "pythae-vae"
    write_pythae_folder(src)
    with pytest.raises(VAEError) as e:
        load_model(src)
    msg = str(e.value)
    assert "pythae VAEConfig" in msg and "pickle" in msg and "run any code" in msg
    assert f"python -m vae_core convert {src} " in msg


def test_converted_model_reproduces_the_original_weights(tmp_path):
    src, out = tmp_path / "pythae-vae", tmp_path / "converted"
    net = write_pythae_folder(src)
    result = convert_pythae(src, out, i_trust_this_file=False)
    assert result.folder == out and result.model_type == "mlp" and result.notes == ()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "checksums.json", "config.json", "model.safetensors",
                                                     "samples.png"]
    model = load_model(out, device="cpu")
    assert model.config.in_shape == (1, 8, 8) and model.config.hidden_dims == (512,)
    assert model.config.likelihood == "bernoulli"
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, log_var, recon = net(x)
        post = model.encode(x)
        torch.testing.assert_close(post.mu, mu)
        torch.testing.assert_close(post.logvar, log_var)
        torch.testing.assert_close(model.decode(post.mu), recon)
    card = (out / "README.md").read_text()
    assert "pythae" in card and "sha256" in card and "![samples](samples.png)" in card


def test_the_cli_converts_and_explains_a_likelihood_change(tmp_path, capsys):
    src, out = tmp_path / "pythae-vae", tmp_path / "converted"
    write_pythae_folder(src, name="BetaVAEConfig", loss="mse")
    assert main(["convert", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: pythae trained this model with the 'mse'" in printed and str(out) in printed
    assert load_model(out).latent_shape == (LATENT,)


@pytest.mark.parametrize("as_torch_save", [True, False])
def test_a_booby_trapped_pickle_is_not_run_without_trust_pickle(tmp_path, capsys, as_torch_save):
    src, marker = tmp_path / "evil", tmp_path / "PWNED"
    write_pythae_folder(src, payload=_Boom(marker))
    if not as_torch_save:
        (src / "model.pt").write_bytes(pickle.dumps(_Boom(marker)))      # a bare pickle, not torch's zip format
    with pytest.raises(VAEError, match="nothing in it was run.*--trust-pickle"):
        convert_pythae(src, tmp_path / "out", i_trust_this_file=False)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--trust-pickle" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_trust_pickle_is_the_only_gate_to_a_full_unpickle(tmp_path):
    src, marker = tmp_path / "evil", tmp_path / "PWNED"
    write_pythae_folder(src, payload=_Boom(marker))
    with pytest.raises(VAEError, match="does not hold a pythae state dict"):
        convert_pythae(src, tmp_path / "out", i_trust_this_file=True)
    assert marker.exists()          # the user said they trust it, so it was unpickled: that is what the flag means


def test_architectures_it_cannot_map_are_refused(tmp_path):
    marker = tmp_path / "PWNED"
    custom = tmp_path / "custom"
    write_pythae_folder(custom, custom_encoder=True, payload=_Boom(marker))
    with pytest.raises(VAEError, match="custom networks"):
        convert_pythae(custom, tmp_path / "out", i_trust_this_file=True)
    assert not marker.exists()      # refused on its config, before any pickle was opened

    vamp = tmp_path / "vamp"
    write_pythae_folder(vamp, name="VAMPConfig")
    with pytest.raises(VAEError, match="VAMPConfig cannot be converted"):
        convert_pythae(vamp, tmp_path / "out", i_trust_this_file=False)

    extra = tmp_path / "extra"
    net = write_pythae_folder(extra)
    state = net.state_dict()
    state["decoder.layers.2.0.weight"] = torch.zeros(1)
    torch.save({"model_state_dict": state}, extra / "model.pt")
    with pytest.raises(VAEError, match="unexpected"):
        convert_pythae(extra, tmp_path / "out", i_trust_this_file=False)


def test_a_flat_input_dim_needs_the_image_shape(tmp_path):
    src = tmp_path / "flat"
    net = write_pythae_folder(src, input_dim=[64])
    with pytest.raises(VAEError, match="--in-shape"):
        convert_pythae(src, tmp_path / "out", i_trust_this_file=False)
    assert main(["convert", str(src), str(tmp_path / "out"), "--in-shape", "1", "8", "8"]) == 0
    model = load_model(tmp_path / "out")
    x = torch.rand(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x.view(2, 1, 8, 8)).mu, net(x)[0])


def test_a_pythae_repo_on_the_hub_is_refused_then_converted_offline(tmp_path, monkeypatch):
    src = tmp_path / "pythae-vae"
    net = write_pythae_folder(src)
    repo_dir = tmp_path / "hub" / "models--acme--pythae-vae"
    snap = repo_dir / "snapshots" / ("c" * 40)
    (repo_dir / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, repo_dir / "blobs" / f.name)
        os.symlink(os.path.relpath(repo_dir / "blobs" / f.name, snap), snap / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("c" * 40)
    import huggingface_hub.constants as c
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)

    with pytest.raises(VAEError, match="python -m vae_core convert acme/pythae-vae "):
        load_model("acme/pythae-vae")
    convert_pythae("acme/pythae-vae", tmp_path / "out", i_trust_this_file=False)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "out").encode(x).mu, net(x)[0])
