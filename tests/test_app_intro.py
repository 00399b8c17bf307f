"""The first visit's orientation: shown on the first page, names the model and every page, opens three views,
and once hidden stays hidden on every page for the rest of the visit."""
from explorer.navigation import PAGES
from tests.app_conftest_helpers import assert_clean, open_app


def _intro(at) -> str:
    return " ".join(m.value for m in at.markdown if "New here?" in m.value)


def test_the_first_page_explains_the_model_and_every_page():
    at = open_app()
    assert_clean(at)
    text = _intro(at)
    assert "variational autoencoder" in text and "mlp" in text and "mnist-5k" in text and "latent of shape 20" in text
    pages = " ".join(m.value for m in at.markdown)
    assert all(f"**{title}**" in pages for _, title, _ in PAGES)
    assert [b.key for b in at.button if b.key.startswith("intro_try_")] == [
        "intro_try_traverse", "intro_try_interpolate", "intro_try_latent_map"]


def test_each_thing_to_try_opens_its_view():
    at = open_app()
    at.button(key="intro_try_traverse").click().run()
    assert_clean(at)
    assert at.number_input(key="traverse_index").value == 7 and at.radio(key="traverse_base").value == "Dataset image"
    at = open_app()
    at.button(key="intro_try_interpolate").click().run()
    assert_clean(at)
    assert at.radio(key="interp_method").value == "spherical"


def test_hidden_it_stays_hidden_across_pages():
    at = open_app()
    at.button(key="intro_hide").click().run()
    assert_clean(at)
    assert not _intro(at)
    at.switch_page("explorer/pages/traverse.py").run()
    at.switch_page("explorer/pages/sample.py").run()
    assert_clean(at)
    assert not _intro(at) and not [b for b in at.button if b.key and b.key.startswith("intro_")]
