"""Real FID through torch-fidelity (vae_core.evaluation.quality.inception_fid).

The default run checks the plumbing against a stand-in ``torch_fidelity`` module (the real one
needs a torchvision matching torch, and Inception weights from the internet); the tests marked
``network`` run the real library and are skipped by default.
"""
import importlib.abc
import math
import sys
import types
import urllib.error

import pytest
import torch

from vae_core import ImageSet, VAEError, build_model, load_dataset, load_model
from vae_core.evaluation.quality import inception_fid, to_uint8_rgb


def _tiny_mlp(**overrides):
    return build_model({"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [8], "latent_dim": 3} | overrides)


def _tiny_data(n: int = 40, shape=(1, 8, 8)) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g), name="tiny")


def _stack(ds) -> torch.Tensor:
    return torch.stack([ds[i] for i in range(len(ds))])


def _fake_fidelity(calls: list) -> types.ModuleType:
    """A stand-in torch_fidelity: checks its inputs as the real one does, returns a function of them."""
    def calculate_metrics(**kwargs):
        calls.append(kwargs)
        for ds in (kwargs["input1"], kwargs["input2"]):
            assert isinstance(ds, torch.utils.data.Dataset)
            item = ds[0]
            assert torch.is_tensor(item) and item.dtype == torch.uint8 and item.dim() == 3 and item.shape[0] == 3
        a, b = (_stack(kwargs[k]).double() for k in ("input1", "input2"))
        return {"frechet_inception_distance": float((a.mean(0) - b.mean(0)).abs().mean())}

    mod = types.ModuleType("torch_fidelity")
    mod.calculate_metrics = calculate_metrics
    return mod


class _FailingImport(importlib.abc.MetaPathFinder):
    """Makes ``import torch_fidelity`` raise ``error``, as a torchvision built for another torch does."""

    def __init__(self, error: Exception):
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "torch_fidelity":
            raise self.error
        return None


# ---------------------------------------------------------------------------------------------
# Without the library


def test_missing_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)           # import now raises ImportError
    with pytest.raises(VAEError, match="requirements-fid.txt") as err:
        inception_fid(_tiny_mlp(), _tiny_data())
    assert "sample_quality" in str(err.value) and "torchvision" in str(err.value)


@pytest.mark.parametrize("error", [OSError("libtorchvision.so: undefined symbol"),
                                   RuntimeError("operator torchvision::nms does not exist")])
def test_broken_torchvision_becomes_a_vae_error(monkeypatch, error):
    monkeypatch.delitem(sys.modules, "torch_fidelity", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_FailingImport(error), *sys.meta_path])
    with pytest.raises(VAEError, match="requirements-fid.txt") as err:
        inception_fid(_tiny_mlp(), _tiny_data())
    assert type(error).__name__ in str(err.value)


# ---------------------------------------------------------------------------------------------
# The plumbing, against a stand-in library


def test_to_uint8_rgb_repeats_grey_and_scales_to_0_255():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2)
    out = to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, 0].flatten().tolist() == [0, 64, 128, 255]
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    u = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8_rgb(u), u)                                # uint8 RGB passes through
    with pytest.raises(VAEError, match="grey or RGB"):
        to_uint8_rgb(torch.zeros(1, 2, 4, 4))


def test_samples_and_real_images_reach_the_library_as_uint8_rgb(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "torch_fidelity", _fake_fidelity(calls))
    model, data = _tiny_mlp(), _tiny_data(40)
    res = inception_fid(model, data, n=25, seed=3, batch_size=10)

    (kw,) = calls
    assert kw["fid"] is True and kw["cuda"] is False and kw["batch_size"] == 10 and kw["verbose"] is False
    assert kw["feature_extractor"] == "inception-v3-compat"
    fake, real = _stack(kw["input1"]), _stack(kw["input2"])
    assert fake.shape == real.shape == (25, 3, 8, 8)
    for t in (fake, real):
        assert t.dtype == torch.uint8
        assert torch.equal(t[:, 0], t[:, 1]) and torch.equal(t[:, 0], t[:, 2])
    # the real images are 25 distinct images of the data set, unchanged
    pool = {bytes(img.numpy()) for img in data.images}
    assert len({bytes(img[:1].numpy()) for img in real}) == 25
    assert all(bytes(img[:1].numpy()) in pool for img in real)
    # the samples are the model's, in 0..255: the same seed draws the same images
    with torch.inference_mode():
        x = model.sample(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(fake[:10, :1], x.mul(255).round().to(torch.uint8))
    assert int(fake.max()) > 128 > int(fake.min())                       # spread over the range, not 0..1

    expected = float((fake.double().mean(0) - real.double().mean(0)).abs().mean())
    assert res == {"fid": expected, "n": 25, "feature_extractor": "inception-v3-compat (torch-fidelity)"}
    assert res["fid"] > 0

    calls.clear()
    again = inception_fid(model, data, n=25, seed=3, batch_size=10)
    assert again == res and torch.equal(_stack(calls[0]["input1"]), fake)   # reproducible by seed
    assert inception_fid(model, data, n=1000)["n"] == len(data)            # n is capped at the data


def test_conditional_model_draws_every_class_in_turn(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", _fake_fidelity([]))
    model = _tiny_mlp(model_type="cvae", num_classes=10)
    seen = []
    draw = model.sample
    monkeypatch.setattr(model, "sample", lambda n, generator=None, y=None: (seen.append(y), draw(n, generator, y))[1])
    inception_fid(model, _tiny_data(40), n=25, batch_size=10)
    assert torch.cat(seen).tolist() == [i % 10 for i in range(25)]


def test_a_model_of_another_image_shape_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", _fake_fidelity([]))
    with pytest.raises(VAEError, match=r"\(1, 8, 8\).*\(1, 28, 28\)"):
        inception_fid(_tiny_mlp(), _tiny_data(10, shape=(1, 28, 28)))


def test_a_failed_weights_download_becomes_a_vae_error(monkeypatch):
    mod = types.ModuleType("torch_fidelity")

    def calculate_metrics(**kwargs):                                      # what torch.hub raises offline
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    mod.calculate_metrics = calculate_metrics
    monkeypatch.setitem(sys.modules, "torch_fidelity", mod)
    with pytest.raises(VAEError, match="Inception weights") as err:
        inception_fid(_tiny_mlp(), _tiny_data())
    assert "weights_path" in str(err.value) and "name resolution" in str(err.value)


# ---------------------------------------------------------------------------------------------
# The real library (needs torch-fidelity, a matching torchvision, and the weights or the internet)


def _real_torch_fidelity():
    try:
        import torch_fidelity
    except (ImportError, OSError, RuntimeError) as err:
        pytest.skip(f"torch-fidelity is not importable here ({type(err).__name__}: {err}); "
                    f"pip install -r requirements-fid.txt with a torchvision matching torch")
    return torch_fidelity


class _Replay:
    """A 'model' whose samples are the images of a data set, in order."""

    num_classes = 0
    device = torch.device("cpu")

    def __init__(self, data: ImageSet):
        self.x, self.start = data.float_images(), 0

    def sample(self, n, generator=None, y=None):
        out, self.start = self.x[self.start:self.start + n], self.start + n
        return out


@pytest.mark.network
def test_real_fid_of_data_against_itself_is_near_zero_and_a_model_is_positive():
    _real_torch_fidelity()
    test = load_dataset("mnist-5k", "test")
    itself = inception_fid(_Replay(test), test, n=len(test))            # all images: the same set twice
    assert itself["n"] == len(test) and abs(itself["fid"]) < 1.0

    model = inception_fid(load_model("mnist-mlp"), test, n=len(test), seed=0)
    assert math.isfinite(model["fid"]) and model["fid"] > max(1.0, 10 * abs(itself["fid"]))
    assert model["feature_extractor"] == "inception-v3-compat (torch-fidelity)"
