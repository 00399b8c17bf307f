"""Every statistic two pages both show for the same model is the same number: measured on the same seeded
random sample of the dataset (page_settings.unit_sample), never on its first images (mnist-5k is sorted by class)."""
import json

import numpy as np
import pytest

from tests.app_conftest_helpers import assert_clean, open_app, plotly_array


def _analyze_units(at):
    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if "KL per latent unit" in c.proto.spec))
    bars = next(t for t in spec["data"] if t["type"] == "bar")
    kl = np.asarray(plotly_array(bars["y"]), dtype=float)
    active = next(m.value for m in at.metric if m.label == "Active units")
    return kl, int(active.split("/")[0])


def _traverse_units(at):
    kl, inactive = {}, 0
    for s in at.slider:
        if s.key.startswith("traverse_z"):
            unit, rest = s.label.split(" ", 1)                  # "z7 (KL 2.15)" or "z3 (KL 0.00, inactive)"
            kl[int(unit[1:])] = float(rest.split("KL ")[1].split(")")[0].split(",")[0])
            inactive += "inactive" in rest
    return np.array([kl[u] for u in sorted(kl)]), len(kl) - inactive


@pytest.mark.parametrize("seed", [0, 7])
def test_traverse_and_analyze_show_the_same_kl_per_unit_and_active_units(seed):
    at = open_app("analyze")
    at.select_slider(key="an_n").set_value(500).run()
    at.number_input(key="an_seed").set_value(seed).run()
    assert_clean(at)
    kl, active = _analyze_units(at)
    at.switch_page("explorer/pages/traverse.py").run()
    assert_clean(at)
    t_kl, t_active = _traverse_units(at)
    assert np.array_equal(t_kl, np.round(kl, 2)), (t_kl, kl)      # every unit, so the order too
    assert t_active == active
    assert any(f"over 500 images of the dataset drawn with seed {seed}" in c.value for c in at.caption)


def test_analyze_numbers_name_their_split_image_count_estimator_and_units():
    import vae_core
    from vae_core.evaluation.metrics import evaluate_model

    at = open_app("analyze")
    at.select_slider(key="an_n").set_value(250).run()
    at.number_input(key="an_seed").set_value(3).run()
    assert_clean(at)
    elbo = next(m for m in at.metric if m.label == "ELBO (nats)")
    assert "250 images of mnist-5k (all splits) drawn with seed 3" in elbo.help
    assert "one posterior sample per image" in elbo.help
    sub, _ = vae_core.load_dataset("mnist-5k", "all").seeded_subset(250, 3)      # the images it names
    want = evaluate_model(vae_core.load_model("mnist-mlp", device="cpu"), sub, seed=3)["elbo"]
    assert float(elbo.value) == pytest.approx(want, abs=0.006)
    mi = next(m for m in at.metric if m.label == "I(x; z) (nats)")
    assert float(mi.value) <= 5.52                                       # log 250: the ceiling it is shown beside
    assert any("At most log N = log 250 = 5.52 nats with this estimator" in c.value and "near that ceiling" in c.value
               for c in at.caption)
    at.select_slider(key="an_iwae_k").set_value(10).run()
    assert any(m.label == "log p(x) (nats), k=10" for m in at.metric)


def test_the_model_cards_metrics_say_what_and_in_what_unit_and_on_which_split():
    at = open_app()
    table = next(m.value for m in at.sidebar.markdown if "| metric | value |" in m.value)
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert "ELBO (nats per image)" in rows and "KL to the prior (nats per image)" in rows
    assert not {"elbo", "recon", "kl"} & set(rows)                       # never the raw keys
    assert any("held-out test split" in c.value and "Analyze measures" in c.value for c in at.sidebar.caption)
