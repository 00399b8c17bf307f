"""Sample page: widgets exist, moving them changes the grid, class and VQ handling."""
import pytest

from tests.app_conftest_helpers import assert_clean, image_urls, open_app


def test_widgets_and_download():
    at = open_app("sample")
    assert_clean(at)
    for key in ("sample_count", "sample_temperature"):
        assert at.slider(key=key)
    assert at.number_input(key="sample_seed").value == 0
    assert at.button(key="sample_resample")
    assert at.get("download_button")[0].label.startswith("Download")


def test_each_control_changes_the_grid():
    at = open_app("sample")
    seen = [image_urls(at)]
    for change in (lambda: at.slider(key="sample_count").set_value(9),
                   lambda: at.slider(key="sample_temperature").set_value(0.5),
                   lambda: at.number_input(key="sample_seed").set_value(7),
                   lambda: at.button(key="sample_resample").click()):
        change()
        at.run()
        assert_clean(at)
        assert image_urls(at) not in seen
        seen.append(image_urls(at))


def test_same_seed_same_grid():
    a, b = open_app("sample"), open_app("sample")
    assert image_urls(a) == image_urls(b)


@pytest.mark.parametrize("model", ["mnist-cvae", "mnist-m2"])       # a CVAE's class, and M2's class beside its style
def test_conditional_model_has_a_class_choice(model):
    at = open_app("sample", model=model)
    assert_clean(at)
    before = image_urls(at)
    at.selectbox(key="sample_class").set_value(7).run()
    assert_clean(at)
    assert image_urls(at) != before


def test_vq_model_says_how_it_samples():
    at = open_app("sample", model="mnist-vq")
    assert_clean(at)
    assert any("code grid is drawn from it one code at a time" in i.value for i in at.info)


def test_the_caption_counts_right_and_names_a_conditional_models_class():
    at = open_app("sample")
    at.slider(key="sample_count").set_value(1).run()
    assert_clean(at)
    assert at.image[0].captions[0].startswith("1 sample, temperature")
    at = open_app("sample", model="mnist-cvae")
    at.selectbox(key="sample_class").set_value(3).run()
    assert_clean(at)
    assert at.image[0].captions[0].startswith("36 samples, class 3, temperature")


def test_the_info_box_says_which_way_of_sampling_applies_to_this_model():
    at = open_app("sample", model="mnist-vq")                      # shipped with a learned code prior
    text = " ".join(i.value for i in at.info)
    assert "this model has a learned code prior" in text and "no learned code prior" not in text
    assert "Without one" not in text
    at = open_app("sample", model="mnist-hvae")
    text = " ".join(i.value for i in at.info)
    assert "hierarchical VAE" in text and "smoother" in text
    assert "layer_temperatures" not in text and "``" not in text and "temperature``" not in text
