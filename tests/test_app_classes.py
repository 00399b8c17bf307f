"""Class & style page: the styles-by-classes grid and style transfer for M2 and a CVAE; a message for other models."""
from tests.app_conftest_helpers import assert_clean, image_urls, open_app


def test_an_unconditional_model_is_told_which_models_have_a_class_and_can_switch_to_m2():
    at = open_app("classes")
    assert not at.exception
    assert any("mnist-m2" in i.value for i in at.info)
    assert not image_urls(at)
    at.button(key="classes_open_m2").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="model_shipped").value == "mnist-m2"
    assert image_urls(at)


def test_m2_grid_controls_change_the_styles_but_not_the_classes():
    at = open_app("classes", model="mnist-m2")
    assert_clean(at)
    assert any("Each row one style" in c for img in at.image for c in img.captions)
    seen = [image_urls(at)[0]]
    for change in (lambda: at.slider(key="classes_styles").set_value(3),
                   lambda: at.slider(key="classes_temperature").set_value(0.5),
                   lambda: at.number_input(key="classes_seed").set_value(4)):
        change()
        at.run()
        assert_clean(at)
        assert image_urls(at)[0] not in seen
        seen.append(image_urls(at)[0])
    assert at.get("download_button")[0].label.startswith("Download")


def test_m2_style_transfer_shows_its_prediction_and_reads_the_style_given_either_class():
    at = open_app("classes", model="mnist-m2")
    assert any(m.value.startswith("**Predicted class:") for m in at.markdown)
    assert at.get("plotly_chart")                                 # q(y | x) as a bar chart
    before = image_urls(at)[-1]
    at.number_input(key="style_src_index").set_value(700).run()   # another image, another style
    assert_clean(at)
    assert image_urls(at)[-1] != before
    assert at.radio(key="classes_given").options == ["the predicted class", "its label"]
    at.radio(key="classes_given").set_value("its label").run()
    assert_clean(at)
    assert any("read as class" in c for img in at.image for c in img.captions)


def test_cvae_style_transfer_uses_the_images_label():
    at = open_app("classes", model="mnist-cvae")
    assert_clean(at)
    assert not at.get("plotly_chart")                             # a CVAE is told the class: nothing to predict
    assert len(image_urls(at)) == 3                               # the grid, the picked image, the transfer strip


def test_the_style_is_read_as_the_images_class_and_the_caption_says_where_it_came_from():
    at = open_app("classes", model="mnist-m2")
    labels = at.session_state["_ctx"].data.labels
    three = next(i for i in range(len(labels)) if int(labels[i]) == 3)
    at.number_input(key="style_src_index").set_value(three).run()
    captions = [c for img in at.image for c in img.captions]
    assert any("read as class 3 (predicted from the image)" in c for c in captions), captions
    at.radio(key="classes_given").set_value("its label").run()
    assert any("read as class 3 (from the image's label)" in c for img in at.image for c in img.captions)
