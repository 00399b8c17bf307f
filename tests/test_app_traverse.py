"""Traverse page: sliders by KL, live decoding, traversal and manifold grids."""
from tests.app_conftest_helpers import assert_clean, errors, image_urls, open_app


def test_one_slider_per_dimension_ordered_by_kl():
    at = open_app("traverse")
    assert_clean(at)
    sliders = [s for s in at.slider if s.key.startswith("traverse_z")]
    assert len(sliders) == 20
    kls = [float(s.label.split("KL ")[1].split(")")[0].split(",")[0]) for s in sliders]
    assert kls == sorted(kls, reverse=True)
    assert at.slider(key="traverse_rows") and at.slider(key="traverse_cols")


def test_moving_a_slider_changes_the_decoded_image():
    at = open_app("traverse")
    first = [s.key for s in at.slider if s.key.startswith("traverse_z")][0]
    before = image_urls(at)
    at.slider(key=first).set_value(3.0).run()
    assert_clean(at)
    after = image_urls(at)
    assert after[0] != before[0]                               # the live image
    assert after[1] != before[1]                               # the traversal grid follows the code


def test_base_codes_and_grid_controls():
    at = open_app("traverse")
    at.number_input(key="traverse_index").set_value(5).run()
    value = at.slider(key=[s.key for s in at.slider if s.key.startswith("traverse_z")][0]).value
    at.radio(key="traverse_base").set_value("Zero").run()
    assert_clean(at)
    assert all(s.value == 0.0 for s in at.slider if s.key.startswith("traverse_z"))
    assert value != 0.0
    at.radio(key="traverse_base").set_value("Random sample").run()
    before = image_urls(at)
    at.number_input(key="traverse_seed").set_value(3).run()
    assert image_urls(at) != before
    at.slider(key="traverse_rows").set_value(2).run()
    at.slider(key="traverse_cols").set_value(5).run()
    assert_clean(at)


def test_two_dimensional_model_shows_the_manifold():
    at = open_app("traverse", model="mnist-mlp-2d")
    assert_clean(at)
    assert any(h.value == "The latent plane" for h in at.subheader)
    before = image_urls(at)
    at.slider(key="traverse_manifold").set_value(6).run()
    assert image_urls(at)[-1] != before[-1]


def test_the_latent_planes_caption_names_the_units_as_the_sliders_do():
    from vae_core import explore

    at = open_app("traverse", model="mnist-mlp-2d")
    units = sorted(s.label.split(" ")[0] for s in at.slider if s.key.startswith("traverse_z"))
    assert units == ["z0", "z1"]
    plane = at.image[-1].captions[0]
    assert "z0 left to right, z1 bottom to top" in plane, plane
    codes = explore.manifold_codes(4)                      # and the picture is laid out as it says
    assert codes[0, 0] < codes[3, 0] and codes[0, 1] > codes[12, 1]      # z0 grows rightwards, z1 upwards


def test_vq_and_conditional_models():
    for name in ("mnist-vq", "mnist-cvae"):
        at = open_app("traverse", model=name)
        assert_clean(at)
        first = [s.key for s in at.slider if s.key.startswith("traverse_z")][0]
        before = image_urls(at)
        at.slider(key=first).set_value(2.5).run()
        assert_clean(at)
        assert image_urls(at)[0] != before[0], name


def test_mismatched_dataset_stops_with_a_message():
    at = open_app("traverse")
    at.sidebar.selectbox(key="dataset").set_value("digits").run()
    assert not at.exception
    assert any("8x8" in e for e in errors(at))
    at.radio(key="traverse_base").set_value("Zero").run()       # needs no data: works, natural order
    assert not at.exception and not at.error
