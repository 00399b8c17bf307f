"""PackedImages: binary images a bit a pixel, standing in for a uint8 tensor wherever a set's images are used."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vae_core
from vae_core import VAEError
from vae_core.data import ImageSet, PackedImages, render_dsprites
from vae_core.data.dsprites import dsprites_subset_indices


@pytest.fixture(scope="module")
def images():
    return render_dsprites(np.arange(0, 737_280, 3_001))          # 246 images of every shape, size and place


@pytest.mark.parametrize("key", [
    3, -1, slice(None), slice(5, 40, 3), torch.tensor([7, 2, 7, 100]), np.array([0, 245]), [1, 4],
    torch.tensor(9), (2, 0, slice(10, 30)), (slice(None), 0), (torch.tensor([3, 1]), 0, 31),
])
def test_indexing_unpacks_what_a_tensor_would_give(images, key):
    assert torch.equal(PackedImages.pack(images)[key], images[key])


def test_a_boolean_mask_takes_the_same_images(images):
    mask = torch.zeros(len(images), dtype=torch.bool)
    mask[::5] = True
    assert torch.equal(PackedImages.pack(images)[mask], images[mask])


def test_an_index_past_the_end_is_an_index_error(images):
    with pytest.raises(IndexError):
        PackedImages.pack(images)[len(images)]


def test_torch_functions_methods_and_numpy_see_the_unpacked_images(images):
    p = PackedImages.pack(images)
    assert torch.equal(F.pad(p, (1, 2, 3, 4)), F.pad(images, (1, 2, 3, 4)))
    assert torch.equal(torch.cat([p, images]), torch.cat([images, images]))
    assert torch.equal(p.float().div(255), images.float().div(255))
    assert torch.equal(p.flatten(1), images.flatten(1))
    assert np.array_equal(np.asarray(p), images.numpy())
    assert (p.shape, p.dtype, p.dim(), len(p)) == (images.shape, torch.uint8, 4, len(images))


def test_it_holds_an_eighth_of_the_bytes(images):
    assert PackedImages.pack(images).nbytes * 8 == images.numel()


def test_only_binary_images_are_packed(images):
    grey = images.clone()
    grey[0, 0, 0, 0] = 128
    with pytest.raises(VAEError, match="binary"):
        PackedImages.pack(grey)


def test_batches_and_subsets_of_a_packed_set_equal_the_unpacked_sets(images):
    labels = torch.arange(len(images)) % 3
    packed, plain = ImageSet(PackedImages.pack(images), labels), ImageSet(images, labels)
    for (a, _), (b, _) in zip(packed.batches(50), plain.batches(50), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(packed.seeded_subset(30, seed=1)[0].images, plain.seeded_subset(30, seed=1)[0].images)
    assert torch.equal(vae_core.data.conform(packed, image_size=32).images, vae_core.data.conform(plain, image_size=32).images)


def test_the_dsprites_set_is_kept_packed_and_renders_the_same_images():
    data = vae_core.load_dataset("dsprites", "test")
    assert isinstance(data.images, PackedImages)
    assert data.images.nbytes == len(data) * 64 * 64 // 8                  # 2.6 MB, not 20 MB
    idx = dsprites_subset_indices()[vae_core.data.split_indices(25_000, "test")]
    assert torch.equal(data.images[::499], render_dsprites(idx[::499]))


def test_to_the_cpu_keeps_it_packed_and_anything_else_unpacks(images):
    p = PackedImages.pack(images)
    assert p.to("cpu") is p and p.to(torch.uint8) is p
    assert torch.equal(p.to(torch.float32), images.float())
    assert torch.equal(p.index_select(0, torch.tensor([4, 0, 4])), images.index_select(0, torch.tensor([4, 0, 4])))
    assert torch.equal(p.index_select(3, torch.tensor([1, 2])), images.index_select(3, torch.tensor([1, 2])))


def test_training_on_a_packed_set_gives_the_same_weights(images):
    from vae_core import RunConfig, TrainConfig, train
    from vae_core.models import MLPConfig
    from vae_core.training.loop import init_model

    small = F.avg_pool2d(images.float(), 8).gt(127).to(torch.uint8).mul(255)       # 246 binary 8 x 8 images
    labels = torch.arange(len(small)) % 3
    cfg = RunConfig(MLPConfig(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dim=2), TrainConfig(epochs=2, batch_size=32))
    weights = []
    for imgs in (small, PackedImages.pack(small)):
        model = init_model(cfg.model, 0)
        list(train(cfg, data=ImageSet(imgs, labels, name="binary"), test_data=ImageSet(small[:40], labels[:40]),
                   model=model))
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
