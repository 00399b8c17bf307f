"""Interpolate page: sources, steps and path, uploads good and bad, arithmetic, attribute vectors."""
from tests.app_conftest_helpers import assert_clean, errors, image_urls, open_app, png


def test_widgets_and_changes():
    at = open_app("interpolate")
    assert_clean(at)
    for key in ("interp_steps", "interp_attr_alpha"):
        assert at.slider(key=key)
    assert {b.key for b in at.get("download_button")} == {"interp_download_png", "interp_download_gif"}
    before = image_urls(at)
    at.slider(key="interp_steps").set_value(4).run()
    assert_clean(at)
    assert image_urls(at) != before
    before = image_urls(at)
    at.radio(key="interp_method").set_value("spherical").run()
    assert_clean(at)
    assert image_urls(at) != before
    before = image_urls(at)
    at.number_input(key="interp_b_index").set_value(40).run()
    assert image_urls(at) != before


def test_random_button_picks_another_image():
    at = open_app("interpolate")
    at.button(key="interp_a_random").click().run()
    assert_clean(at)
    assert at.number_input(key="interp_a_index").value != 0


def test_upload_is_converted_and_previewed():
    at = open_app("interpolate")
    at.radio(key="interp_b_source").set_value("Upload").run()
    assert any("Upload an image" in i.value for i in at.info)
    at.file_uploader(key="interp_b_upload").set_value(("digit.jpg", png((90, 60), "white", fmt="JPEG"),
                                                       "image/jpeg")).run()
    assert_clean(at)
    assert any("what the model sees" in c for img in at.image for c in img.captions)


def test_corrupt_and_enormous_uploads_show_errors():
    at = open_app("interpolate")
    at.radio(key="interp_a_source").set_value("Upload").run()
    at.file_uploader(key="interp_a_upload").set_value(("bad.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50,
                                                       "image/png")).run()
    assert not at.exception
    assert any("not an image" in e or "corrupt" in e for e in errors(at))
    at.file_uploader(key="interp_a_upload").set_value(("big.png", png((5000, 4000), "black", mode="L"),
                                                       "image/png")).run()
    assert not at.exception
    assert any("pixels" in e for e in errors(at))


def test_arithmetic_and_attribute_vector():
    at = open_app("interpolate")
    before = image_urls(at)
    at.number_input(key="interp_c_index").set_value(11).run()
    assert_clean(at)
    assert image_urls(at) != before
    before = image_urls(at)
    at.slider(key="interp_attr_alpha").set_value(-1.5).run()
    assert_clean(at)
    assert image_urls(at)[-1] != before[-1]
    at.selectbox(key="interp_attr_to").set_value(7).run()
    assert_clean(at)


def test_conditional_model_upload_asks_for_its_class():
    at = open_app("interpolate", model="mnist-cvae")
    assert_clean(at)
    at.radio(key="interp_a_source").set_value("Upload").run()
    at.file_uploader(key="interp_a_upload").set_value(("d.png", png(), "image/png")).run()
    assert_clean(at)
    assert at.selectbox(key="interp_a_class")


def test_a_refused_upload_affects_only_its_own_input():
    at = open_app("interpolate")
    at.radio(key="interp_a_source").set_value("Upload").run()
    at.file_uploader(key="interp_a_upload").set_value(("bad.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50,
                                                       "image/png")).run()
    assert not at.exception
    assert len(errors(at)) == 1                                        # said once, in A's column
    assert at.number_input(key="interp_b_index").value == 1           # B is still there
    assert len(at.tabs) == 3 and at.slider(key="interp_steps")        # and so are the tabs
    assert any("Give Image A above" in i.value for i in at.info)
    at.number_input(key="interp_b_index").set_value(5).run()          # the rest of the page still works
    assert len(errors(at)) == 1 and not at.exception


def test_the_upload_label_names_every_format_it_accepts():
    from explorer import widgets
    from vae_core import images

    at = open_app("interpolate")
    at.radio(key="interp_a_source").set_value("Upload").run()
    up = at.file_uploader(key="interp_a_upload")
    for fmt in images.ALLOWED_FORMATS:
        assert fmt.lower() in up.label.lower(), (fmt, up.label)
    assert {t.lstrip(".") for t in up.proto.type} == set(widgets.UPLOAD_TYPES)


def test_the_conditional_models_decoded_class_is_the_one_its_box_shows():
    at = open_app("interpolate", model="mnist-cvae")
    box = at.selectbox(key="interp_decode_class")
    assert box.value == at.session_state["_ctx"].data.labels[0].item()     # it starts at A's class
    box.set_value(3).run()
    at.radio(key="interp_a_source").set_value("Upload").run()
    at.file_uploader(key="interp_a_upload").set_value(("seven.png", png((28, 28), "white"), "image/png")).run()
    at.selectbox(key="interp_a_class").set_value(7).run()             # the upload's own class: 7
    assert_clean(at)
    assert at.selectbox(key="interp_decode_class").value == 3          # the user's choice stands
    strips = [c for img in at.image for c in img.captions if " steps" in c]
    assert strips and "decoded as class 3" in strips[0]
    before = image_urls(at)
    at.selectbox(key="interp_decode_class").set_value(0).run()
    assert_clean(at)
    assert "decoded as class 0" in [c for img in at.image for c in img.captions if " steps" in c][0]
    assert image_urls(at) != before


def test_the_decoded_class_follows_image_a_until_the_user_picks_one():
    at = open_app("interpolate", model="mnist-cvae")
    labels = at.session_state["_ctx"].data.labels
    three, seven = (next(i for i in range(len(labels)) if int(labels[i]) == c) for c in (3, 7))
    at.number_input(key="interp_a_index").set_value(three).run()
    at.number_input(key="interp_b_index").set_value(seven).run()
    assert_clean(at)
    assert at.selectbox(key="interp_decode_class").value == 3            # not a 3-to-7 path drawn as 0s
    assert any("decoded as class 3, from the image" in c for img in at.image for c in img.captions)
    at.selectbox(key="interp_decode_class").set_value(7).run()
    assert any("decoded as class 7, chosen" in c for img in at.image for c in img.captions)
    at.number_input(key="interp_a_index").set_value(seven).run()
    assert at.selectbox(key="interp_decode_class").value == 7
