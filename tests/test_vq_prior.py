"""The VQ-VAE that generates: its code prior (causal, trained, saved, loaded), codebook health, its likelihood."""
import json
import shutil

import pytest
import torch

from vae_core import RunConfig, TrainConfig, VAEError, load_model, open_model, save_pretrained, train
from vae_core.evaluation.anomaly import anomaly_scores
from vae_core.io.run_folder import PRIOR_FILES
from vae_core.io.card import read_card_metrics
from vae_core.data import load_dataset
from vae_core.io.push import PUSH_FILES
from vae_core.evaluation.metrics import evaluate_model
from vae_core.models import VQConfig, build_model
from vae_core.models.vq_prior import CodePriorConfig, CodeTransformer, frequency_log_prob
from vae_core.training.loop import init_model
from vae_core.training.prior import PriorTrainConfig, encode_codes, train_prior

TINY_VQ = VQConfig(channels=(4, 8), latent_dim=4, codebook_size=16)
TINY_PRIOR = {"width": 32, "layers": 1, "heads": 2, "dropout": 0.0}


def _prior(seed=0, **kw):
    torch.manual_seed(seed)
    return CodeTransformer(CodePriorConfig(**{"codebook_size": 16, "grid": 4, "width": 32, "layers": 2, "heads": 4,
                                              "dropout": 0.0, **kw})).eval()


def test_the_prior_is_causal():
    """Changing the code at position t never changes the logits of positions <= t (which predict codes <= t)."""
    prior = _prior()
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (3, 16), generator=g)
    with torch.no_grad():
        base = prior(codes)
        for t in (0, 5, 15):
            changed = codes.clone()
            changed[:, t] = (changed[:, t] + 7) % 16
            out = prior(changed)
            torch.testing.assert_close(out[:, :t + 1], base[:, :t + 1], rtol=0, atol=1e-6)
            if t < 15:
                assert (out[:, t + 1:] - base[:, t + 1:]).abs().max() > 1e-4     # a later logit does see it


def test_log_prob_is_the_sum_of_the_conditionals_and_samples_follow_temperature_and_top_k():
    prior = _prior(seed=1)
    codes = torch.randint(0, 16, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logp = torch.log_softmax(prior(codes.flatten(1)), -1).gather(-1, codes.flatten(1)[..., None]).sum((1, 2))
    torch.testing.assert_close(prior.log_prob(codes), logp)
    a = prior.sample(5, torch.Generator().manual_seed(3), top_k=1)
    b = prior.sample(5, torch.Generator().manual_seed(4), top_k=1)
    assert a.shape == (5, 4, 4) and torch.equal(a, b) and (a == a[0]).all()   # top-1: the argmax path, no randomness
    with torch.no_grad():
        prior.head.weight.mul_(20)                                        # a peaked prior, so temperature shows
    cold = prior.sample(100, torch.Generator().manual_seed(5), temperature=0.3)
    hot = prior.sample(100, torch.Generator().manual_seed(5), temperature=3.0)
    assert prior.log_prob(cold).mean() > prior.log_prob(hot).mean() + 5   # sharper: likelier grids under the prior
    top2 = prior.sample(100, torch.Generator().manual_seed(5), top_k=2)
    with torch.no_grad():
        ranks = prior(top2.flatten(1)).argsort(-1, descending=True).argsort(-1)   # each code's rank at its position
    assert ranks.gather(-1, top2.flatten(1)[..., None]).max() <= 1               # only the two likeliest codes drawn
    with pytest.raises(VAEError, match="top-k"):
        prior.sample(1, top_k=17)
    with pytest.raises(VAEError, match="4x4 grids"):
        prior.log_prob(torch.zeros(1, 3, 3, dtype=torch.long))


def test_frequency_baseline_is_independent_codes():
    counts = torch.tensor([3, 1, 0, 0])
    codes = torch.tensor([[0, 1], [0, 0]])
    p = (counts + 1).double() / 8
    torch.testing.assert_close(frequency_log_prob(codes, counts),
                               torch.stack([p[0].log() + p[1].log(), 2 * p[0].log()]).float())


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    """A tiny VQ-VAE trained for one epoch on mnist-5k, in a run folder."""
    out = tmp_path_factory.mktemp("vq") / "run"
    cfg = RunConfig(TINY_VQ, TrainConfig(epochs=1, batch_size=100, sample_every=0))
    list(train(cfg, out_dir=out, model=init_model(TINY_VQ, 0)))
    return out


def test_a_trained_prior_beats_independent_codes_and_is_saved_and_loaded(vq_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(vq_run, folder)
    before = {p.name for p in folder.iterdir()}
    events = list(train_prior(folder, TINY_PRIOR, PriorTrainConfig(epochs=2, batch_size=128)))
    done = events[-1]
    assert done.kind == "done"
    model = load_model(folder, device="cpu")
    codes = encode_codes(model, load_dataset("mnist-5k", "train"))
    counts = torch.bincount(codes.flatten(), minlength=16)
    frequency_nll = -frequency_log_prob(codes, counts).mean().item()
    prior_nll = -model.code_prior.log_prob(codes).mean().item()
    assert prior_nll < frequency_nll - 5                          # on the training codes, by a margin
    assert done.eval["test_nll"] < done.eval["frequency_nll"]     # and on the held-out ones
    # The folder keeps everything it had and gains the prior; the card's metrics are what evaluate says.
    assert before | set(PRIOR_FILES) == {p.name for p in folder.iterdir()}
    assert json.loads((folder / "prior_config.json").read_text())["prior_type"] == "transformer"
    res = evaluate_model(model, load_dataset("mnist-5k", "test"), seed=0, max_images=2000)
    card = read_card_metrics(folder)
    for key in ("elbo", "recon", "kl", "prior_code_nll"):
        assert float(card[key]) == pytest.approx(res[key], rel=1e-3, abs=1e-3), key
    assert res["kl"] == pytest.approx(prior_nll, rel=0.2)          # KL(one-hot || prior) = -log p(codes)
    # Analyze's anomaly score is the same bound, image by image.
    scores = anomaly_scores(model, load_dataset("mnist-5k", "test"), "elbo")
    assert float(scores.mean()) == pytest.approx(-res["elbo"], rel=1e-4)
    assert "train-prior RUN_DIR" in (folder / "README.md").read_text()
    # The prior changes the model's identity; resuming the VQ-VAE's own training still works.
    assert open_model(folder)[1].key != open_model(vq_run)[1].key
    cfg = RunConfig(TINY_VQ, TrainConfig(epochs=2, batch_size=100, sample_every=0))
    events = list(train(cfg, out_dir=folder, resume=True))
    assert events[-1].kind == "done"
    # Training moved the codes the prior was fitted to: the saved run leaves it out, and the start said so.
    assert "fit a new one with `python -m vae_core train-prior" in events[0].message
    assert not set(PRIOR_FILES) & {p.name for p in folder.iterdir()}
    assert load_model(folder, device="cpu").code_prior is None


def test_train_prior_runs_on_the_training_loop_seeded_and_leaves_the_callers_rng(vq_run):
    cfg = PriorTrainConfig(epochs=1, batch_size=400, lr=1e-2)
    runs = []
    for caller_seed in (1, 2):                                        # whatever the caller's generator holds
        torch.manual_seed(caller_seed)
        rng = torch.get_rng_state()
        runs.append(list(train_prior(vq_run, {**TINY_PRIOR, "dropout": 0.1}, cfg, log_every=4, save=False)))
        assert torch.equal(torch.get_rng_state(), rng)
    first = runs[0]
    # 4000 code grids, 400 a step: a step event every log_every steps and at the epoch's end, as train's loop does.
    assert [(e.kind, e.step) for e in first] == [("start", 0), ("step", 4), ("step", 8), ("step", 10),
                                                 ("epoch", 10), ("done", 10)]
    assert all(set(e.losses) == {"nll"} and e.images_per_s > 0 for e in first if e.kind == "step")
    assert first[4].eval["train_nll"] == first[3].losses["nll"]
    assert [e.losses for e in runs[1]] == [e.losses for e in first]     # the same folder and config: the same prior
    assert not set(PRIOR_FILES) & {p.name for p in vq_run.iterdir()}     # save=False writes nothing


def test_a_prior_travels_with_its_model_and_a_wrong_one_is_refused(vq_run, tmp_path):
    model = load_model(vq_run, device="cpu")
    prior = _prior(grid=model.config.grid)
    model.attach_prior(prior)
    saved = save_pretrained(model, tmp_path / "copy")
    assert set(PRIOR_FILES) <= {p.name for p in saved.iterdir()}
    assert set(PRIOR_FILES) <= set(PUSH_FILES)
    again = load_model(saved, device="cpu")
    codes = torch.randint(0, 16, (2, model.config.grid, model.config.grid))
    torch.testing.assert_close(again.code_prior.log_prob(codes), prior.log_prob(codes))
    with pytest.raises(VAEError, match="grids of 16 codes"):
        model.attach_prior(_prior(grid=3))
    cfg = json.loads((saved / "prior_config.json").read_text())
    (saved / "prior_config.json").write_text(json.dumps({**cfg, "width": 64}))
    with pytest.raises(VAEError, match="shape"):
        load_model(saved)
    (saved / "prior.safetensors").unlink()
    with pytest.raises(VAEError, match="no prior.safetensors"):
        load_model(saved)


def test_train_prior_needs_a_vq_run(tmp_path):
    folder = save_pretrained(build_model({"model_type": "mlp", "in_shape": [1, 28, 28], "hidden_dims": [8],
                                          "latent_dim": 2}), tmp_path / "mlp")
    with pytest.raises(VAEError, match="VQ-VAE"):
        list(train_prior(folder))


def test_dead_codes_restart_at_encoder_outputs():
    torch.manual_seed(0)
    model = build_model(TINY_VQ)
    before = model.codebook.weight.detach().clone()
    counts = torch.tensor([5.0] * 8 + [0.0] * 8)
    z_e = torch.randn(2, 4, 7, 7)
    n = model.restart_dead_codes(counts, z_e, torch.Generator().manual_seed(0))
    after = model.codebook.weight.detach()
    assert n == 8
    torch.testing.assert_close(after[:8], before[:8])                     # the live codes are untouched
    rows = z_e.movedim(1, -1).reshape(-1, 4)
    for code in after[8:]:
        assert (rows - code).abs().sum(1).min() < 1e-6                    # each dead code is now an encoder output


def test_restarting_dead_codes_uses_more_of_the_codebook():
    data = load_dataset("mnist-5k", "train").subset(range(0, 4000, 4))
    usage = {}
    for restart in (False, True):
        cfg = RunConfig(VQConfig(channels=(8, 16), latent_dim=8, codebook_size=32),
                        TrainConfig(epochs=3, batch_size=50, sample_every=0, restart_dead_codes=restart))
        events = list(train(cfg, data=data, test_data=data.subset(range(200)),
                            model=init_model(cfg.model, 0)))
        epochs = [e for e in events if e.kind == "epoch"]
        assert all({"codebook_usage", "perplexity"} <= set(e.losses) for e in epochs)   # logged every epoch
        usage[restart] = epochs[-1].eval["codebook_usage"]
    assert usage[True] >= usage[False] + 0.4, usage            # held-out usage: 0.81 against 0.22 here
