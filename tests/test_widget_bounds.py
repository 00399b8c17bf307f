"""Widgets bounded by the model (issue 30): a model with 16,384 latent units drew a slider per unit on
Traverse (43 s of server CPU, a browser not settled after 300 s). Above VAE_EXPLORER_MAX_UNIT_SLIDERS units
the page shows the most informative by KL and a box to pick others."""
import pytest

import vae_core
from explorer import widgets
from tests.app_conftest_helpers import assert_clean, open_app


def test_units_shown_are_the_picked_then_the_most_informative_within_the_count():
    order = list(range(100, 0, -1))                       # most informative first
    assert widgets.units_shown(order[:5], [], 8) == order[:5]
    assert widgets.units_shown(order, [], 8) == order[:8]
    assert widgets.units_shown(order, [3, 100], 8) == [3, 100] + order[1:7]
    assert widgets.parse_units(" z3, 7;7 ,", 10, 4) == [3, 7]
    with pytest.raises(vae_core.VAEError, match="from 0 to 9"):
        widgets.parse_units("10", 10, 4)
    with pytest.raises(vae_core.VAEError, match="VAE_EXPLORER_MAX_UNIT_SLIDERS"):
        widgets.parse_units("1,2,3", 10, 2)


def test_traverse_draws_at_most_the_configured_sliders_and_a_picker_for_the_rest(monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_MAX_UNIT_SLIDERS", "4")
    at = open_app("traverse")                             # mnist-mlp: 20 units
    assert_clean(at)
    kl = lambda s: float(s.label.split("KL ")[1].split(")")[0].split(",")[0])   # noqa: E731
    sliders = [s for s in at.slider if s.key.startswith("traverse_z")]
    assert len(sliders) == 4 and [kl(s) for s in sliders] == sorted((kl(s) for s in sliders), reverse=True)
    top = {s.key for s in sliders}
    hidden = next(f"traverse_z{u}" for u in range(20) if f"traverse_z{u}" not in top)
    at.text_input(key="traverse_more_units").set_value(hidden.removeprefix("traverse_z")).run()
    assert_clean(at)
    keys = [s.key for s in at.slider if s.key.startswith("traverse_z")]
    assert len(keys) == 4 and keys[0] == hidden
