"""Every image grid the pages draw has readable tiles: a 28-px MNIST digit is drawn at least 84 px
wide (upscaled by a whole number, so it stays crisp), never at its native size."""
import pytest

from explorer import figures, widgets
from tests.app_conftest_helpers import assert_clean, open_app
from vae_core import images

MNIST_SIDE = 28


@pytest.fixture
def drawn(monkeypatch):
    """The upscaling of every grid the pages show (not of the downloads, which keep their own size)."""
    to_pil, fast_png = images.to_pil, widgets.fast_png
    shown = []

    def tagged(x, scale=1):
        img = to_pil(x, scale)
        img.info["scale"] = scale
        return img

    def recorded(img):
        shown.append(img.info.get("scale"))
        return fast_png(img)

    monkeypatch.setattr(images, "to_pil", tagged)
    monkeypatch.setattr(widgets, "fast_png", recorded)
    return shown


def assert_readable(shown, page):
    assert shown, f"{page} drew no image"
    small = [s for s in shown if s is None or MNIST_SIDE * s < figures.MIN_TILE]
    assert not small, f"{page}: tiles of {[MNIST_SIDE * (s or 1) for s in small]} px"
    shown.clear()


def test_every_page_draws_mnist_at_a_readable_size(drawn):
    at = open_app("sample")
    at.slider(key="sample_count").set_value(100).run()
    assert_clean(at)
    assert_readable(drawn, "Sample")

    at.switch_page("explorer/pages/traverse.py").run()
    assert_clean(at)
    assert_readable(drawn, "Traverse")

    at.switch_page("explorer/pages/interpolate.py").run()
    at.slider(key="interp_steps").set_value(24).run()
    assert_clean(at)
    assert_readable(drawn, "Interpolate")

    at.switch_page("explorer/pages/latent_map.py").run()        # every one of the 5,000 images is mapped
    drawn.clear()
    at.text_input(key="map_pick").set_value(", ".join(map(str, range(30)))).run()
    assert_clean(at)
    assert_readable(drawn, "Latent map")

    at.switch_page("explorer/pages/analyze.py").run()
    at.multiselect(key="an_pick").set_value(["Reconstructions", "Anomalies"]).run()
    at.select_slider(key="an_n").set_value(250).run()
    at.slider(key="an_recon_count").set_value(32).run()
    assert_clean(at)
    assert_readable(drawn, "Analyze")
