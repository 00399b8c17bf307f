"""vae_core.training.snapshots: a run's codes at every epoch, kept in the run folder and drawn as maps that move."""
import json

import numpy as np
import pytest
import torch

from vae_core import VAEError
from vae_core.io import run_folder
from vae_core.training import snapshots
from vae_core.config import TrainConfig
from vae_core.data import load_dataset
from vae_core.models import MLPConfig
from vae_core.training.loop import train
from vae_core.io.run_folder import RunConfig


def tiny_run(epochs=2, snaps=64):
    data = load_dataset("digits", "train")
    return RunConfig(MLPConfig(in_shape=data.shape, latent_dim=3, hidden_dims=(32,)),
                     TrainConfig(dataset="digits", epochs=epochs, batch_size=256, snapshots=snaps)), data


def test_a_run_keeps_the_codes_of_the_same_images_before_and_after_every_epoch(tmp_path):
    config, data = tiny_run()
    events = list(train(config, data, out_dir=tmp_path / "run"))
    kept = snapshots.read(tmp_path / "run")
    assert kept.epochs == [0, 1, 2] and all(c.shape == (64, 3) for c in kept.codes)
    assert kept.indices.tolist() == data.seeded_subset(64, seed=0)[1].tolist()
    assert torch.equal(kept.labels, data.labels[kept.indices])
    assert not torch.allclose(kept.codes[0], kept.codes[2])                     # training moved them
    assert [e.snapshots.epochs for e in events if e.snapshots is not None] == [[0], [0, 1], [0, 1, 2]]
    # they are the model's posterior means of those images at the end
    from vae_core import load_model
    from vae_core.latent import explore
    model = load_model(str(tmp_path / "run"))
    assert torch.allclose(explore.encode_dataset(model, data.subset(kept.indices)), kept.codes[-1], atol=1e-5)


def test_resume_continues_the_snapshots_and_without_the_flag_none_are_kept(tmp_path):
    config, data = tiny_run(epochs=1)
    list(train(config, data, out_dir=tmp_path / "run"))
    longer = RunConfig(config.model, TrainConfig(**{**json.loads(json.dumps(config.to_dict()["train"])), "epochs": 2}))
    list(train(longer, data, out_dir=tmp_path / "run", resume=True))
    assert snapshots.read(tmp_path / "run").epochs == [0, 1, 2]
    plain = RunConfig(config.model, TrainConfig(dataset="digits", epochs=1, batch_size=256))
    list(train(plain, data, out_dir=tmp_path / "plain"))
    assert snapshots.read(tmp_path / "plain") is None


def test_the_cli_flag_keeps_snapshots(tmp_path):
    from vae_core.cli import main

    main(["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--latent-dim", "2", "--hidden-dims", "16",
          "--batch-size", "256", "--snapshots", "50", "--out", str(tmp_path / "run"), "--quiet"])
    assert snapshots.read(tmp_path / "run").epochs == [0, 1]
    with pytest.raises(VAEError, match="snapshots must be between 0"):
        TrainConfig(snapshots=10**6).validate()


def test_a_damaged_snapshot_file_is_a_clear_error(tmp_path):
    (tmp_path / snapshots.FILE).write_bytes(b"not safetensors")
    with pytest.raises(VAEError, match="not a snapshot file"):
        snapshots.read(tmp_path)
    from vae_core.training.loop import init_model

    config, _ = tiny_run()
    with pytest.raises(ValueError, match="plain new name"):
        run_folder.write_run_folder(tmp_path / "m", init_model(config.model, 0), extra_files={"../x": b""})
    assert not (tmp_path / "m").exists()


def test_procrustes_undoes_a_rotation_and_a_reflection():
    g = np.random.default_rng(0)
    x = g.normal(size=(100, 2)) * [3, 1]
    turn = np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]]) @ np.diag([1, -1])
    assert np.allclose(snapshots.procrustes(x @ turn + 5, x), x - x.mean(0), atol=1e-9)


def test_aligned_maps_give_one_frame_per_epoch_that_moves_rather_than_jumps():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 5, generator=g) * torch.tensor([3.0, 2.0, 0.3, 0.2, 0.1])
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0, 1.0]))                 # PCA's sign choice flips axis 1
    kept = snapshots.Snapshots([], [], torch.arange(200))
    for e, codes in enumerate([base, base @ flip * 1.01, base * 1.02]):
        kept.add(e, codes)
    maps = snapshots.aligned_maps(kept)
    assert maps.shape == (3, 200, 2)
    assert np.abs(maps[1] - maps[0]).max() < 0.2 and np.abs(maps[2] - maps[1]).max() < 0.2
    with pytest.raises(VAEError, match="must increase"):
        kept.add(1, base)
