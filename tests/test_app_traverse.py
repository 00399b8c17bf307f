"""Traverse page: sliders by KL, live decoding, traversal and manifold grids."""
import pytest

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
    from vae_core.latent import explore

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


def _direction_sliders(at):
    return [s for s in at.slider if s.key.startswith("traverse_dir")]


def test_principal_direction_sliders_move_the_decoded_image_and_show_their_stability():
    at = open_app("traverse")
    assert_clean(at)
    assert at.radio(key="traverse_dir_kind").value == "Principal"
    sliders = _direction_sliders(at)
    assert [s.label.split(" ")[0] for s in sliders] == ["PC1", "PC2", "PC3", "PC4"]
    assert all("of the variance, stability 0." in s.label for s in sliders), [s.label for s in sliders]
    before = image_urls(at)
    at.slider(key="traverse_dir0").set_value(2.5).run()
    assert_clean(at)
    after = image_urls(at)
    assert after[0] != before[0]                                # the image decoded from the sliders
    assert after[1] == before[1]                                # the direction rows start at the units' code
    assert after[2] != before[2]                                # the unit traversal follows the moved code
    assert "and directions" in at.image[0].captions[0], at.image[0].captions


def test_local_directions_follow_the_code_and_new_directions_start_at_zero():
    at = open_app("traverse")
    at.slider(key="traverse_dir0").set_value(1.0).run()
    at.radio(key="traverse_dir_kind").set_value("Local").run()
    assert_clean(at)
    sliders = _direction_sliders(at)
    assert [s.label.split(" (")[0] for s in sliders] == ["local 1", "local 2", "local 3"]
    assert all(s.value == 0.0 for s in sliders)                 # a new set of directions starts at zero
    assert all("gain" in s.label and "stability" in s.label for s in sliders)
    labels = [s.label for s in sliders]
    first = [s.key for s in at.slider if s.key.startswith("traverse_z")][0]
    at.slider(key=first).set_value(3.5).run()                   # another code: other directions there
    assert_clean(at)
    assert [s.label for s in _direction_sliders(at)] != labels


def test_coming_back_to_traverse_the_direction_sliders_keep_their_values_not_their_minimum():
    at = open_app("traverse")
    at.slider(key="traverse_dir0").set_value(1.5).run()
    at.switch_page("explorer/pages/sample.py").run()            # Streamlit forgets Traverse's sliders here
    at.switch_page("explorer/pages/traverse.py").run()
    assert_clean(at)
    assert [s.value for s in _direction_sliders(at)] == [1.5, 0.0, 0.0, 0.0]     # the page kept them
    assert at.query_params["d"] == "1.5,0,0,0"


def test_a_class_contrast_and_its_message_when_both_classes_are_the_same():
    at = open_app("traverse")
    at.radio(key="traverse_dir_kind").set_value("Class A - B").run()
    assert_clean(at)
    at.selectbox(key="traverse_dir_a").set_value(7).run()
    at.selectbox(key="traverse_dir_b").set_value(1).run()
    assert [s.label.split(" (")[0] for s in _direction_sliders(at)] == ["7 - 1"]
    before = image_urls(at)
    at.slider(key="traverse_dir0").set_value(-2.0).run()
    assert image_urls(at)[0] != before[0]
    at.selectbox(key="traverse_dir_b").set_value(7).run()
    assert not at.exception and not at.error
    assert any("two different classes" in i.value for i in at.info)
    assert not _direction_sliders(at)


def test_dsprites_factor_directions():
    at = open_app("traverse", model="dsprites-beta4")
    at.radio(key="traverse_dir_kind").set_value("Factor").run()
    assert_clean(at)
    sliders = _direction_sliders(at)
    assert [s.label.split(" (")[0] for s in sliders] == ["shape", "scale", "orientation", "posX", "posY"]
    assert all("R2 " in s.label for s in sliders)


def _first_with_label(at, label: int, after: int = 0) -> int:
    labels = at.session_state["_ctx"].data.labels
    return next(i for i in range(after, len(labels)) if int(labels[i]) == label)


@pytest.mark.parametrize("model", ["mnist-cvae", "mnist-m2"])
def test_a_conditional_models_class_follows_the_image_until_the_user_picks_one(model):
    at = open_app("traverse", model=model)
    three = _first_with_label(at, 3)
    at.number_input(key="traverse_index").set_value(three).run()
    assert_clean(at)
    assert at.selectbox(key="traverse_class").value == 3                  # not 0 beside a 3
    assert any("decoded as class 3, from the image" in c.value for c in at.caption)
    at.selectbox(key="traverse_class").set_value(5).run()
    assert any("decoded as class 5, chosen" in c.value for c in at.caption)
    at.number_input(key="traverse_index").set_value(_first_with_label(at, 7)).run()
    assert at.selectbox(key="traverse_class").value == 5                  # the user's pick stands
    assert at.query_params["class"] == "5"
