"""The binarized-likelihood track (issue 28): dynamic binarization while training, one fixed binarization of the
test images, IWAE on them in chunks with a standard error over images, and every figure named for what it is."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from vae_core import RunConfig, load_dataset
from vae_core.cli import main
from vae_core.data import binarize
from vae_core.data.binarize import binarized, binarized_set
from vae_core.errors import VAEError
from vae_core.evaluation.metrics import (GREY_LEVEL, bits_per_dim, evaluate_model, interval95,
                                         iwae_log_likelihood)
from vae_core.models import MLPConfig, build_model
from vae_core.training import loop


def _dynamic(config: RunConfig, seed: int = 0) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, binarize="dynamic", seed=seed))


def _first_batches(config: RunConfig, data):
    """Step 0's images, then step 0's images again drawn a second time, as the training loop draws them."""
    run = loop._prepare(config, data, None, None, False, None, 10)
    run.begin_epoch(0)
    return loop._batch(run, run.perm, 0, run.gen)[0], loop._batch(run, run.perm, 0, run.gen)[0]


def test_dynamic_binarization_redraws_every_step_and_repeats_with_the_seed(tiny_run_config, digits_train):
    first, again = _first_batches(_dynamic(tiny_run_config), digits_train)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, again)                               # the same images, a new draw
    same_seed, _ = _first_batches(_dynamic(tiny_run_config), digits_train)
    other_seed, _ = _first_batches(_dynamic(tiny_run_config, seed=1), digits_train)
    assert torch.equal(first, same_seed) and not torch.equal(first, other_seed)
    grey, _ = _first_batches(tiny_run_config, digits_train)            # off by default: grey levels
    assert ((grey > 0) & (grey < 1)).any()
    assert torch.equal(first[grey == 0], torch.zeros_like(first[grey == 0]))     # p = 0 never draws a 1
    assert torch.equal(first[grey == 1], torch.ones_like(first[grey == 1]))      # p = 1 always does


def test_a_dynamically_binarized_run_repeats_exactly_and_differs_from_grey_training(tiny_run_config, digits_train):
    def weights(config):
        model = loop.init_model(config.model, config.train.seed)
        for _ in loop.train(config, digits_train, model=model):
            pass
        return torch.cat([p.detach().flatten() for p in model.parameters()])
    dyn = weights(_dynamic(tiny_run_config))
    assert torch.equal(dyn, weights(_dynamic(tiny_run_config)))
    assert not torch.equal(dyn, weights(tiny_run_config))


def test_binarize_is_refused_for_a_likelihood_that_is_not_bernoulli(tmp_path, capsys):
    train = {"dataset": "digits", "binarize": "dynamic"}
    with pytest.raises(VAEError) as e:
        RunConfig.from_dict({"model": {"model_type": "mlp", "likelihood": "gaussian"}, "train": train})
    msg = str(e.value)
    assert "\n" not in msg and "Bernoulli" in msg and "'gaussian'" in msg and "--likelihood bernoulli" in msg
    assert RunConfig.from_dict({"model": {"model_type": "mlp"}, "train": train}).train.binarize == "dynamic"
    with pytest.raises(VAEError, match="must be one of"):
        RunConfig.from_dict({"train": {"binarize": "static"}})
    assert main(["train", "--model", "mlp", "--dataset", "digits", "--likelihood", "laplace", "--binarize", "dynamic",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'laplace'" in err and not (tmp_path / "run").exists()


def test_the_test_binarization_is_one_fixed_draw(monkeypatch):
    images = load_dataset("digits", "test").images
    once = binarized(images, 7)
    assert torch.equal(once, binarized(images, 7)) and not torch.equal(once, binarized(images, 8))
    assert set(once.unique().tolist()) <= {0, 255}
    assert torch.equal(once[images == 0], torch.zeros_like(once[images == 0]))
    assert torch.equal(once[images == 255], torch.full_like(once[images == 255], 255))
    # Each pixel is 1 with probability its grey level: over the set, the share of ones follows the grey levels.
    assert abs(once.float().mean() / 255 - images.float().mean() / 255) < 0.01
    monkeypatch.setattr(binarize, "CHUNK_IMAGES_VALUES", 100)          # drawn a chunk at a time: the same draw
    assert torch.equal(once, binarized(images, 7))
    data = binarized_set(load_dataset("digits", "test"), 7)
    assert data.binarization == 7 and torch.equal(data.images, once)
    assert data.subset([0, 1]).binarization == 7


def _tiny_model():
    torch.manual_seed(0)
    return build_model(MLPConfig(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dim=3)).eval()


def test_iwae_in_chunks_of_samples_equals_one_chunk():
    model, data = _tiny_model(), binarized_set(load_dataset("digits", "test"), 0)
    x, _ = next(data.batches(12))
    with torch.inference_mode():
        post = model.encode(x)
        one = iwae_log_likelihood(model, x, None, post, 50, torch.Generator().manual_seed(3), max_elements=10 ** 9)
        chunked = iwae_log_likelihood(model, x, None, post, 50, torch.Generator().manual_seed(3), max_elements=7 * 64 * 12)
    torch.testing.assert_close(chunked, one, rtol=0, atol=1e-5)


def test_the_standard_error_is_numpys_over_the_per_image_values():
    values = torch.randn(40, generator=torch.Generator().manual_seed(0)) * 3 - 90
    got = interval95(values)
    v = values.double().numpy()
    se = np.std(v, ddof=1) / math.sqrt(len(v))
    assert got["mean"] == pytest.approx(v.mean()) and got["se"] == pytest.approx(se)
    assert got["ci95"] == pytest.approx([v.mean() - 1.96 * se, v.mean() + 1.96 * se])


def test_evaluate_model_reports_the_standard_error_of_its_own_per_image_values():
    model, data = _tiny_model(), binarized_set(load_dataset("digits", "test"), 0).subset(range(30))
    res = evaluate_model(model, data, batch_size=30, iwae_k=8, seed=5)
    gen = torch.Generator().manual_seed(5)
    x, _ = next(data.batches(30))
    with torch.inference_mode():
        post = model.encode(x)
        torch.randn(post.mu.shape, generator=gen)                      # the ELBO's draw comes first
        per_image = iwae_log_likelihood(model, x, None, post, 8, gen).double().numpy()
    assert res["log_likelihood"] == pytest.approx(per_image.mean())
    assert res["log_likelihood_se"] == pytest.approx(np.std(per_image, ddof=1) / math.sqrt(30))
    assert res["binarization_seed"] == 0 and res["scored_as"] == "binarized log p(x)"


def test_bits_per_dim_of_a_density_carry_the_dequantisation_offset():
    assert bits_per_dim(-100.0, "bernoulli", 784) == pytest.approx(100 / (784 * math.log(2)))
    assert bits_per_dim(-100.0, "gaussian", 784) == pytest.approx(100 / (784 * math.log(2)) + math.log2(255))
    assert bits_per_dim(-100.0, "laplace", 784) == bits_per_dim(-100.0, "gaussian", 784)


def _trained(tmp_path, *flags):
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2",
                 "--epochs", "1", "--batch-size", "64", "--quiet", *flags, "--out", str(out)]) == 0
    return out


def test_evaluate_binarized_names_its_data_and_estimator(tmp_path, capsys):
    run = _trained(tmp_path, "--binarize", "dynamic")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--dataset", "digits", "--binarized", "--binarize-seed", "3",
                 "--iwae-k", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(binarized test split with binarization seed 3, 359 images, seed 0)" in out
    assert "IWAE log p(x), k=4 (nats) [binarized log p(x)]" in out and "95% interval over images" in out
    assert "estimator: IWAE (Burda et al., 2016), k=4 importance samples per image" in out
    assert GREY_LEVEL not in out
    assert main(["evaluate", str(run), "--dataset", "digits", "--iwae-k", "4", "--quiet"]) == 0
    grey = capsys.readouterr().out
    assert f"ELBO, 1 sample per image (nats) [{GREY_LEVEL}]" in grey
    assert f"IWAE log p(x), k=4 (nats) [{GREY_LEVEL}]" in grey


def test_the_card_of_a_grey_level_run_names_its_figures(tmp_path):
    card = (_trained(tmp_path) / "README.md").read_text()
    assert f"| scored_as | {GREY_LEVEL} |" in card


def test_evaluate_binarized_refuses_a_density_model(tmp_path, capsys):
    run = _trained(tmp_path, "--likelihood", "gaussian")
    assert main(["evaluate", str(run), "--dataset", "digits", "--binarized", "--iwae-k", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--binarized scores binary images with a Bernoulli likelihood" in err and "'gaussian'" in err


def test_a_dynamically_binarized_run_scores_its_held_out_images_binarized(tiny_run_config, digits_train):
    test = load_dataset("digits", "test")
    evals = [ev.eval for ev in loop.train(_dynamic(tiny_run_config), digits_train, test) if ev.kind == "epoch"]
    assert [e["scored_as"] for e in evals] == ["binarized log p(x)"] * 2
    assert evals[-1]["binarization_seed"] == binarize.TEST_BINARIZATION_SEED
    grey = [ev.eval for ev in loop.train(tiny_run_config, digits_train, test) if ev.kind == "epoch"]
    assert grey[-1]["scored_as"] == GREY_LEVEL
