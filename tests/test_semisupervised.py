"""M2 (Kingma et al., 2014): its objective against a direct computation, its interface, training with a few
labels, and the semi-supervised experiment end to end on a tiny configuration."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal, kl_divergence

from vae_core import RunConfig, TrainConfig, VAEError, build_model, load_dataset, train
from vae_core.data import class_balanced_indices
from vae_core.models import M2Config
from vae_core.training.objectives import loss_parts, m2_labelled_elbo, m2_unlabelled_elbo

TINY = M2Config(in_shape=(1, 4, 4), hidden_dims=(8,), latent_dim=2, num_classes=3, classifier_dims=(8,))


def _tiny_m2(seed=0):
    torch.manual_seed(seed)
    return build_model(TINY)


def _direct_labelled_elbo(model, x, k, eps):
    """log p(x | y, z) + log p(z) - log q(z | x, y) + log p(y) at z = mu + std * eps, written out with torch.distributions
    (the closed-form KL for the z terms, as the objective uses)."""
    y = torch.full((x.shape[0],), k)
    post = model.encode(x, y)
    q = Normal(post.mu, post.std)
    z = post.mu + post.std * eps
    log_px = Bernoulli(logits=model.decode_logits(z, y)).log_prob(x).flatten(1).sum(1)
    return log_px - kl_divergence(q, Normal(0.0, 1.0)).sum(1) + math.log(1 / model.num_classes)


def test_unlabelled_elbo_is_the_class_posterior_weighted_labelled_elbo_plus_its_entropy():
    model = _tiny_m2()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(5, 1, 4, 4, generator=g) > 0.5).float()
    eps = torch.randn(3, 5, 2, generator=g)                              # one z per class and image
    with torch.no_grad():
        q_y = Categorical(logits=model.class_logits(x))
        labelled = torch.stack([_direct_labelled_elbo(model, x, k, eps[k]) for k in range(3)], 1)   # (B, K)
        expected = (q_y.probs * labelled).sum(1) + q_y.entropy()
        torch.testing.assert_close(m2_unlabelled_elbo(model, x, eps), expected, rtol=1e-5, atol=1e-4)
        for k in range(3):
            torch.testing.assert_close(m2_labelled_elbo(model, x, torch.full((5,), k), eps[k]), labelled[:, k],
                                       rtol=1e-5, atol=1e-4)


def test_the_m2_loss_combines_labelled_unlabelled_and_classification_terms():
    model = _tiny_m2()
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(6, 1, 4, 4, generator=g) > 0.5).float()
    y = torch.tensor([-1, 2, -1, 0, -1, -1])                            # two labelled, four hidden
    draws = [torch.randn(2, 2, generator=g), torch.randn(3, 4, 2, generator=g)]
    noise = iter(draws)
    cfg = TrainConfig(alpha=0.3)
    parts = loss_parts(model, x, y, cfg, step=0, total_steps=1, randn=lambda shape, batch_axis=0: next(noise),
                       dataset_size=100, labelled_share=0.1)
    lab = y >= 0
    neg_l = -m2_labelled_elbo(model, x[lab], y[lab], draws[0])
    neg_u = -m2_unlabelled_elbo(model, x[~lab], draws[1])
    ce = torch.nn.functional.cross_entropy(model.class_logits(x[lab]), y[lab])
    expected = neg_l.mean() + neg_u.mean() + 0.3 / 0.1 * ce
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["total"].item() == pytest.approx(torch.cat([neg_l, neg_u]).mean().item(), rel=1e-5)
    assert parts["classifier"].item() == pytest.approx(ce.item(), rel=1e-5)


def test_unlabelled_images_alone_train_the_classifier():
    """Without a single label, U(x) still moves q(y | x): that is how the unlabelled images teach it."""
    model = _tiny_m2()
    x = (torch.rand(8, 1, 4, 4) > 0.5).float()
    parts = loss_parts(model, x, torch.full((8,), -1), TrainConfig(), step=0, total_steps=1,
                       randn=lambda shape, batch_axis=0: torch.randn(shape), dataset_size=8)
    assert "labelled" not in parts and "classifier" not in parts
    parts["loss"].backward()
    grads = [p.grad for p in model.classifier.parameters()]
    assert all(gr is not None for gr in grads) and any(gr.abs().sum() > 0 for gr in grads)


def test_m2_encodes_the_style_given_or_predicted_and_samples_its_class_from_the_prior():
    model = _tiny_m2().eval()
    x = torch.rand(4, 1, 4, 4)
    with torch.no_grad():
        predicted = model.predict(x)
        assert predicted.shape == (4,) and ((0 <= predicted) & (predicted < 3)).all()
        torch.testing.assert_close(model.encode(x).mu, model.encode(x, predicted).mu)      # no label: the predicted one
        assert not torch.allclose(model.encode(x, (predicted + 1) % 3).mu, model.encode(x).mu)
        torch.testing.assert_close(model.class_probs(x).sum(1), torch.ones(4))
        a = model.sample(6, generator=torch.Generator().manual_seed(5))                 # y drawn from p(y)
        b = model.sample(6, generator=torch.Generator().manual_seed(5))
        c = model.sample(6, generator=torch.Generator().manual_seed(5), y=2)            # the same z, class 2
    assert a.shape == (6, 1, 4, 4) and torch.equal(a, b)
    assert not torch.equal(a, c)


def test_class_balanced_subset_is_seeded_balanced_and_nested():
    labels = torch.arange(60) % 4
    a = class_balanced_indices(labels, 3, seed=7)
    assert torch.equal(a, class_balanced_indices(labels, 3, seed=7))
    assert not torch.equal(a, class_balanced_indices(labels, 3, seed=8))
    assert torch.bincount(labels[a]).tolist() == [3, 3, 3, 3]
    assert set(a.tolist()) <= set(class_balanced_indices(labels, 5, seed=7).tolist())   # more labels extend the set
    with pytest.raises(VAEError, match="fewer"):
        class_balanced_indices(labels, 16, seed=0)


def test_m2_training_sees_only_the_labelled_subsets_labels(monkeypatch, digits_train):
    import importlib

    train_module = importlib.import_module("vae_core.training.loop")       # the module, not the function vae_core exports

    config = RunConfig(M2Config(in_shape=(1, 8, 8), hidden_dims=(16,), latent_dim=2, num_classes=10,
                                classifier_dims=(16,)),
                       TrainConfig(dataset="digits", epochs=1, batch_size=64, labels_per_class=2, seed=3,
                                   sample_every=0))
    subset = class_balanced_indices(digits_train.labels, 2, seed=3)
    by_image = {}                                              # an image's pixels -> its indices (digits repeats a few)
    for i in range(len(digits_train)):
        by_image.setdefault(tuple(digits_train.images[i].flatten().tolist()), set()).add(i)
    labelled = {(i, int(digits_train.labels[i])) for i in subset.tolist()}
    seen = []
    real = train_module.training_step

    def spy(model, x, y, cfg, **kw):
        seen.append((x.detach().clone(), y.clone(), kw["labelled_share"]))
        return real(model, x, y, cfg, **kw)

    monkeypatch.setattr(train_module, "training_step", spy)
    list(train(config, digits_train))
    assert seen
    for x, y, share in seen:
        assert share == pytest.approx(20 / len(digits_train))
        for image, label in zip(x, y.tolist()):
            indices = by_image[tuple(image.mul(255).round().to(torch.uint8).flatten().tolist())]
            if label >= 0:                                   # a label reached the loss: only a subset image's own
                assert any((i, label) in labelled for i in indices)
        assert (y >= 0).sum() == 20 and (y < 0).sum() == 64


def test_m2_trains_and_reports_its_held_out_accuracy(digits_train):
    test = load_dataset("digits", "test")
    config = RunConfig(M2Config(in_shape=(1, 8, 8), hidden_dims=(32,), latent_dim=4, num_classes=10,
                                classifier_dims=(32,)),
                       TrainConfig(dataset="digits", epochs=3, batch_size=64, labels_per_class=5, sample_every=0))
    events = list(train(config, digits_train, test))
    final = [e for e in events if e.kind == "epoch"][-1]
    assert {"labelled", "unlabelled", "classifier", "recon", "kl", "loss", "total"} <= set(final.losses)
    assert 0.3 < final.eval["accuracy"] <= 1.0               # far above chance (0.1) after three epochs


def test_semi_supervised_options_are_refused_where_they_do_not_apply(tiny_run_config, digits_train):
    import dataclasses

    with pytest.raises(VAEError, match="m2"):
        list(train(dataclasses.replace(tiny_run_config, train=dataclasses.replace(tiny_run_config.train,
                                                                                   labels_per_class=5)),
                   digits_train))
    m2 = RunConfig(M2Config(in_shape=(1, 8, 8), hidden_dims=(8,), latent_dim=2, num_classes=10),
                   TrainConfig(dataset="digits", epochs=1, objective="iwae"))
    with pytest.raises(VAEError, match="own objective"):
        list(train(m2, digits_train))


def test_cli_trains_m2_with_few_labels(tmp_path, capsys):
    from vae_core.cli import main
    from vae_core.io.run_folder import load_run_config

    out = tmp_path / "m2"
    assert main(["train", "--model", "m2", "--dataset", "digits", "--labels-per-class", "3", "--hidden-dims", "16",
                 "--classifier-dims", "16", "--latent-dim", "2", "--epochs", "1", "--batch-size", "64", "--quiet",
                 "--out", str(out)]) == 0
    run = load_run_config(out)
    assert run.model.model_type == "m2" and run.model.num_classes == 10 and run.train.labels_per_class == 3
    assert "--labels-per-class 3" in (out / "README.md").read_text()
    assert "| accuracy |" in (out / "README.md").read_text()


def test_semi_supervised_experiment_runs_end_to_end(capsys):
    from vae_core.cli import main

    assert main(["experiment", "semi-supervised", "--dataset", "digits", "--labels-per-class", "2", "5",
                 "--seeds", "0", "1", "--epochs", "1", "--hidden-dims", "16", "--latent-dim", "2",
                 "--classifier-steps", "5", "--quiet"]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 6                                    # 3 methods x 2 label counts, each over 2 seeds
    assert all(line.rstrip().endswith("| 2 |") for line in rows)
    assert {"plain classifier", "M1 (classifier on VAE codes)", "M2"} == {line.split(" | ")[0][2:] for line in rows}
