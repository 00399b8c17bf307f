"""Augmentation by the posterior: draws at a scale, the image folder it writes (read back by folder:), the CLI,
and the augmentation experiment end to end on a tiny configuration."""
import io
import json
import zipfile

import pytest
import torch
from PIL import Image

from vae_core import VAEError, build_model, load_dataset, save_pretrained
from vae_core.latent.augment import MANIFEST, augment_dataset, augment_images, png_zip, write_image_folder
from vae_core.cli import main
from vae_core.models import CVAEConfig, MLPConfig


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """An untrained 8x8 VAE saved as a model folder: enough to draw from."""
    torch.manual_seed(0)
    return save_pretrained(build_model(MLPConfig(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dim=3)),
                           tmp_path_factory.mktemp("models") / "tiny")


def _model(cls=MLPConfig, **kw):
    torch.manual_seed(0)
    return build_model(cls(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dim=3, **kw)).eval()


def test_scale_zero_is_the_reconstruction_and_a_larger_scale_strays_further():
    model = _model()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        recon = model.decode(model.encode(x).mu)
    gen = torch.Generator().manual_seed(0)
    same = augment_images(model, x, None, 4, scale=0.0, generator=gen)
    assert same.shape == (12, 1, 8, 8)
    torch.testing.assert_close(same, recon.repeat_interleave(4, 0))
    spread = [(augment_images(model, x, None, 50, scale=s, generator=torch.Generator().manual_seed(1))
               - recon.repeat_interleave(50, 0)).abs().mean() for s in (0.5, 2.0)]
    assert 0 < spread[0] < spread[1]


def test_prior_mode_needs_a_class_and_keeps_it():
    with pytest.raises(VAEError, match="conditional"):
        augment_images(_model(), torch.rand(2, 1, 8, 8), None, 3, mode="prior")
    cvae = _model(CVAEConfig, num_classes=3)
    gen = torch.Generator().manual_seed(0)
    a = augment_images(cvae, torch.rand(2, 1, 8, 8), torch.tensor([0, 2]), 3, mode="prior", generator=gen)
    with torch.no_grad():
        z = 1.0 * torch.randn((2, 3, 3), generator=torch.Generator().manual_seed(0))
        expected = cvae.decode(z.flatten(0, 1), torch.tensor([0, 0, 0, 2, 2, 2]))
    torch.testing.assert_close(a, expected)


def test_bad_requests_are_refused_before_drawing():
    model = _model()
    for kwargs, match in (({"per_image": 0}, "per_image"), ({"per_image": 3, "scale": -1.0}, "scale"),
                          ({"per_image": 3, "mode": "both"}, "mode")):
        with pytest.raises(VAEError, match=match):
            augment_images(model, torch.rand(1, 1, 8, 8), None, **kwargs)
    with pytest.raises(VAEError, match="limit"):
        augment_images(model, torch.rand(1, 1, 8, 8).expand(200, 1, 8, 8), None, 10_000)


def test_the_folder_reads_back_through_the_folder_source_with_count_shape_and_labels(tmp_path):
    data = load_dataset("digits", "test").subset(range(40))
    aug = augment_dataset(_model(), data, 3, 1.0, seed=0)
    out = write_image_folder(aug, tmp_path / "aug")
    back = load_dataset(f"folder:{out}", "all")
    assert len(back) == 120 and back.shape == (1, 8, 8)
    assert back.class_names == tuple(sorted(set(data.class_names[i] for i in data.labels.tolist())))
    names = [back.class_names[i] for i in back.labels.tolist()]
    assert sorted(names) == sorted(data.class_names[i] for i in aug.labels.tolist())
    assert json.loads((out / MANIFEST).read_text())["images"] == 120


def test_the_folder_is_written_whole_and_never_over_someone_elses(tmp_path, monkeypatch):
    data = load_dataset("digits", "test").subset(range(10))
    aug = augment_dataset(_model(), data, 2, 1.0)
    mine = tmp_path / "mine"
    (mine / "notes.txt").parent.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(VAEError, match="not written by augment"):
        write_image_folder(aug, mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    out = write_image_folder(aug, tmp_path / "aug")
    import vae_core.latent.augment as augment_module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(augment_module, "to_pil", broken)        # a failure half-way through the rewrite
    with pytest.raises(VAEError, match="nothing there was changed"):
        write_image_folder(augment_dataset(_model(), data, 5, 1.0), out)
    assert len(load_dataset(f"folder:{out}", "all")) == 20         # the earlier folder, whole
    assert not list(tmp_path.glob(".aug.tmp-*"))


def test_png_zip_holds_every_image_at_its_size():
    x = torch.rand(5, 1, 8, 8)
    with zipfile.ZipFile(io.BytesIO(png_zip(x, "a"))) as zf:
        names = zf.namelist()
        assert names == [f"a-{i:03d}.png" for i in range(5)]
        assert Image.open(io.BytesIO(zf.read(names[0]))).size == (8, 8)


def test_cli_augments_a_labelled_subset_into_a_folder(tiny_folder, tmp_path, capsys):
    out = tmp_path / "aug"
    args = ["augment", str(tiny_folder), "--dataset", "digits", "--labels-per-class", "2", "--per-image", "3",
            "--scale", "0.5", "--with-originals", "--quiet", "--out", str(out)]
    assert main(args) == 0
    back = load_dataset(f"folder:{out}", "all")
    assert len(back) == 20 + 60 and back.shape == (1, 8, 8)
    assert torch.bincount(back.labels).tolist() == [8] * 10
    assert main(args) == 0                                        # its own folder may be rewritten
    assert main(args[:-1] + [str(tmp_path)]) == 2                 # any other folder is refused
    assert "not written by augment" in capsys.readouterr().err


def test_augmentation_experiment_runs_end_to_end(tiny_folder, capsys):
    assert main(["experiment", "augmentation", "--model", str(tiny_folder), "--dataset", "digits", "--seeds", "0", "1",
                 "--per-image", "2", "--scales", "0", "1", "--classifier-steps", "5", "--quiet"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "%" in line]
    assert [r.split(" | ")[0][2:] for r in rows] == ["100 labelled images only", "+ 200 reconstructions",
                                                     "+ 200 posterior draws, scale 1",
                                                     "+ 200 copies shifted up to 2 px"]
    assert all(r.rstrip().endswith("| 2 |") for r in rows)


def test_the_table_pairs_each_arm_with_the_baseline_of_the_same_seed():
    from vae_core.evaluation.experiments import report

    rows = [{"training set": "only", "seed": 0, "accuracy": 0.70}, {"training set": "more", "seed": 0, "accuracy": 0.72},
            {"training set": "only", "seed": 1, "accuracy": 0.80}, {"training set": "more", "seed": 1, "accuracy": 0.83}]
    lines = report("augmentation", rows).splitlines()
    assert lines[2] == "| only | 75.0% ± 7.1 | | 2 |"
    assert lines[3] == "| more | 77.5% ± 7.8 | +2.5 ± 0.7 | 2 |"     # the spread of the paired gains, not of the means
