"""The diffusers adapter, on tiny randomly initialised VAEs written by diffusers' own save_pretrained."""
import json
import math
import os
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from vae_core import VAEError, load_model
from vae_core.models import Posterior

S = 32          # working image size; the tiny VAEs downsample by 2, so latents are (4, 16, 16)


def _kl(**kw):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                   down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                                   latent_channels=4, norm_num_groups=4, sample_size=S, **kw)


def _tiny():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                                     num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    kl, tiny = _kl(), _tiny()
    kl.save_pretrained(root / "kl")
    tiny.save_pretrained(root / "tiny")
    return {"kl": (kl.eval(), root / "kl"), "tiny": (tiny.eval(), root / "tiny")}


def _images(n=3, seed=0):
    return torch.rand((n, 3, S, S), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind, model_type", [("kl", "diffusers-kl"), ("tiny", "diffusers-tiny")])
def test_loads_through_load_model_and_speaks_the_interface(folders, kind, model_type):
    from vae_core.models.diffusers_adapter import DiffusersVAE

    _, folder = folders[kind]
    model = load_model(folder, device="cpu", image_size=S)
    assert isinstance(model, DiffusersVAE) and not model.training
    cfg = model.config
    assert (cfg.model_type, cfg.in_shape, cfg.latent_dim, model.num_classes) == (model_type, (3, S, S), 4, 0)
    assert model.latent_shape == (4, S // 2, S // 2) and model.device.type == "cpu"
    assert cfg.to_dict()["model_type"] == model_type
    with torch.inference_mode():
        post = model.encode(_images())
        assert isinstance(post, Posterior) and post.mu.shape == (3, 4, 16, 16)
        assert (post.logvar is None) == (kind == "tiny")
        x_hat = model.decode(post.mode())
        assert x_hat.shape == (3, 3, S, S) and 0 <= x_hat.min() and x_hat.max() <= 1
        assert model(_images()).shape == (3, 3, S, S)
        # leading sample dims, as the IWAE bound passes them
        assert model.decode_logits(torch.zeros(2, 3, *model.latent_shape)).shape == (2, 3, 3, S, S)


def test_kl_round_trip_matches_diffusers_in_the_diffusion_scale(folders):
    vae, folder = folders["kl"]
    model = load_model(folder, device="cpu", image_size=S)
    s = vae.config.scaling_factor
    assert s == pytest.approx(0.18215)          # diffusers' default, which SD's VAE config relies on
    x = _images()
    with torch.inference_mode():
        dist = vae.encode(x * 2 - 1).latent_dist
        post = model.encode(x)
        torch.testing.assert_close(post.mu, dist.mean * s)
        torch.testing.assert_close(post.logvar, dist.logvar + 2 * math.log(s))
        expected = ((vae.decode(dist.mean).sample + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(model.decode(post.mu), expected)
        # rsample is mu + std * eps in our scale: the same draw as diffusers' in its own scale, scaled
        eps = torch.randn(post.mu.shape, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(post.rsample(eps), (dist.mean + dist.std * eps) * s)


def test_tiny_round_trip_matches_diffusers(folders):
    vae, folder = folders["tiny"]
    model = load_model(folder, device="cpu", image_size=S)
    x = _images()
    with torch.inference_mode():
        z = vae.encode(x * 2 - 1).latents
        torch.testing.assert_close(model.encode(x).mu, z)
        torch.testing.assert_close(model.decode(z), ((vae.decode(z).sample + 1) / 2).clamp(0, 1))


def test_shift_and_per_channel_statistics_are_undone_by_decode(tmp_path):
    vae = _kl(scaling_factor=0.5, shift_factor=0.1)
    vae.save_pretrained(tmp_path / "shifted")
    model = load_model(tmp_path / "shifted", device="cpu", image_size=S)
    x = _images()
    with torch.inference_mode():
        raw = vae.eval().encode(x * 2 - 1).latent_dist.mean
        torch.testing.assert_close(model.encode(x).mu, (raw - 0.1) * 0.5)
        torch.testing.assert_close(model.decode(model.encode(x).mu), ((vae.decode(raw).sample + 1) / 2).clamp(0, 1))

    stats = _kl(latents_mean=(0.1, 0.2, 0.3, 0.4), latents_std=(1.0, 2.0, 4.0, 8.0))
    stats.save_pretrained(tmp_path / "stats")
    model = load_model(tmp_path / "stats", device="cpu", image_size=S)
    with torch.inference_mode():
        raw = stats.eval().encode(x * 2 - 1).latent_dist.mean
        mean = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1)
        std = torch.tensor([1.0, 2.0, 4.0, 8.0]).view(1, 4, 1, 1)
        torch.testing.assert_close(model.encode(x).mu, (raw - mean) * 0.18215 / std)


@pytest.mark.parametrize("kind", ["kl", "tiny"])
def test_sampling_is_reproducible_with_a_generator(folders, kind):
    model = load_model(folders[kind][1], device="cpu", image_size=S)
    with torch.inference_mode():
        a = model.sample(2, generator=torch.Generator().manual_seed(0))
        b = model.sample(2, generator=torch.Generator().manual_seed(0))
        c = model.sample(2, generator=torch.Generator().manual_seed(1))
        cold = model.sample(1, generator=torch.Generator().manual_seed(0), temperature=0.0)
        assert a.shape == (2, 3, S, S) and torch.equal(a, b) and not torch.equal(a, c)
        torch.testing.assert_close(cold, model.decode(torch.zeros(1, *model.latent_shape)))


def test_working_size_is_a_load_option(folders):
    model = load_model(folders["kl"][1], device="cpu", image_size=64)
    assert model.config.in_shape == (3, 64, 64) and model.latent_shape == (4, 32, 32)
    assert load_model(folders["kl"][1], device="cpu").config.in_shape[1] == 128     # the default
    with pytest.raises(VAEError, match="multiple"):
        load_model(folders["kl"][1], device="cpu", image_size=33)
    with pytest.raises(VAEError, match="3-channel"):
        model.encode(torch.rand(1, 1, 64, 64))


def test_a_stable_diffusion_pipeline_opens_its_vae_subfolder(folders, tmp_path):
    pipe = tmp_path / "pipe"
    shutil.copytree(folders["kl"][1], pipe / "vae")
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "vae": ["diffusers", "AutoencoderKL"]}))
    model = load_model(pipe, device="cpu", image_size=S)
    assert model.config.subfolder == "vae" and model.latent_shape == (4, 16, 16)


def _hub_cache(tmp_path, folder, repo, commit="b" * 40, revision="main"):
    """A Hub cache laid out the way huggingface_hub writes one (nested files included)."""
    repo_dir = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder)
        blob = repo_dir / "blobs" / (str(rel).replace("/", "--") + ".blob")
        shutil.copy(f, blob)
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, (snap / rel).parent), snap / rel)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    return tmp_path / "hub"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    def make(folder, repo):
        cache = _hub_cache(tmp_path, folder, repo)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        import huggingface_hub.constants as c
        monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
        return cache
    return make


def test_loading_a_diffusers_repo_id_offline_through_the_hub_cache(folders, tmp_path, offline_cache):
    vae, folder = folders["tiny"]
    offline_cache(folder, "acme/taesd-mini")
    x = _images(2)
    for source in ("acme/taesd-mini", "hub:acme/taesd-mini@main"):
        model = load_model(source, device="cpu", image_size=S)
        assert model.config.model_type == "diffusers-tiny" and model.config.revision == "b" * 40
        with torch.inference_mode():
            torch.testing.assert_close(model.encode(x).mu, vae.encode(x * 2 - 1).latents)


def test_a_pipeline_repo_id_needs_only_its_vae_files(folders, tmp_path, offline_cache):
    pipe = tmp_path / "pipe"
    shutil.copytree(folders["kl"][1], pipe / "vae")
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    offline_cache(pipe, "acme/tiny-sd")                # no unet/, no text encoder: never fetched
    model = load_model("acme/tiny-sd", device="cpu", image_size=S)
    assert model.config.class_name == "AutoencoderKL" and model.config.subfolder == "vae"


def test_refusals_are_one_clear_message(folders, tmp_path):
    pytest.importorskip("diffusers")
    bad = tmp_path / "dc"
    shutil.copytree(folders["kl"][1], bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "_class_name": "AutoencoderDC"}))
    with pytest.raises(VAEError, match="AutoencoderKL and AutoencoderTiny"):
        load_model(bad)

    pickled = tmp_path / "pickled"
    shutil.copytree(folders["kl"][1], pickled)
    os.rename(pickled / "diffusion_pytorch_model.safetensors", pickled / "diffusion_pytorch_model.bin")
    with pytest.raises(VAEError, match="pickled"):
        load_model(pickled)

    partial = tmp_path / "partial"
    shutil.copytree(folders["kl"][1], partial)
    state = load_file(str(partial / "diffusion_pytorch_model.safetensors"))
    state.pop(sorted(state)[0])
    save_file(state, str(partial / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(VAEError, match="missing keys"):
        load_model(partial)

    huge = tmp_path / "huge"
    shutil.copytree(folders["kl"][1], huge)
    (huge / "config.json").write_text(json.dumps({**cfg, "block_out_channels": [16384, 16384, 16384]}))
    with pytest.raises(VAEError, match="parameters"):
        load_model(huge)

    with pytest.raises(VAEError, match="image_size"):
        load_model("mnist-mlp", image_size=64)


def test_without_diffusers_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    folder = tmp_path / "kl"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    monkeypatch.setitem(sys.modules, "diffusers", None)          # import diffusers -> ImportError
    with pytest.raises(VAEError, match=r"pip install diffusers==\d"):
        load_model(folder)


def test_the_install_hint_names_the_pinned_extra():
    from pathlib import Path

    from vae_core.models.diffusers_adapter import DIFFUSERS_VERSION, INSTALL_HINT

    pins = (Path(__file__).resolve().parent.parent / "requirements-extras.txt").read_text().split()
    assert f"diffusers=={DIFFUSERS_VERSION}" in pins and f"pip install diffusers=={DIFFUSERS_VERSION}" in INSTALL_HINT
