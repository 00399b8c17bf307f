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
