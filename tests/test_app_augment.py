"""Augment page: one image's posterior draws at a chosen spread, their downloads, and the prior mode of a
conditional model."""
from tests.app_conftest_helpers import assert_clean, image_urls, open_app, png


def test_spread_count_seed_and_image_change_the_draws():
    at = open_app("augment")
    assert_clean(at)
    assert {b.key for b in at.get("download_button")} == {"aug_download_png", "aug_download_zip"}
    seen = [image_urls(at)[-1]]
    for change in (lambda: at.slider(key="aug_scale").set_value(2.0),
                   lambda: at.slider(key="aug_count").set_value(4),
                   lambda: at.number_input(key="aug_seed").set_value(9),
                   lambda: at.number_input(key="aug_src_index").set_value(5)):
        change()
        at.run()
        assert_clean(at)
        assert image_urls(at)[-1] not in seen
        seen.append(image_urls(at)[-1])
    assert "aug_mode" not in [r.key for r in at.radio]          # an unconditional model has no class to keep


def test_zero_spread_draws_the_reconstruction_every_time():
    at = open_app("augment")
    at.slider(key="aug_scale").set_value(0.0).run()
    assert_clean(at)
    assert any(c.startswith("16 reconstructions") for img in at.image for c in img.captions)
    grid = image_urls(at)[-1]
    at.number_input(key="aug_seed").set_value(3).run()
    assert image_urls(at)[-1] == grid                             # no noise: the seed changes nothing


def test_a_conditional_model_can_draw_new_styles_of_the_class():
    at = open_app("augment", model="mnist-cvae")
    assert_clean(at)
    before = image_urls(at)[-1]
    at.radio(key="aug_mode").set_value("prior").run()
    assert_clean(at)
    assert image_urls(at)[-1] != before
    assert any("prior draws" in c and "class 0" in c for img in at.image for c in img.captions)


def test_an_uploaded_image_is_augmented_once_it_is_given():
    at = open_app("augment")
    at.radio(key="aug_src_source").set_value("Upload").run()
    assert not at.exception
    assert any("Upload an image" in i.value for i in at.info)
    assert not at.get("download_button")                         # nothing to draw from yet
    at.file_uploader(key="aug_src_upload").set_value(("d.png", png((40, 30), "white"), "image/png")).run()
    assert_clean(at)
    assert any("of upload d.png" in c for img in at.image for c in img.captions)


def test_an_uploads_file_name_is_shown_literally_in_the_captions():
    from tests.test_text import shown, unescaped_punctuation

    name = "![x](https://evil.example/p) **Log in** [here](https://evil.example).png"
    at = open_app("augment")
    at.radio(key="aug_src_source").set_value("Upload").run()
    at.file_uploader(key="aug_src_upload").set_value((name, png((40, 30), "white"), "image/png")).run()
    assert_clean(at)
    captions = [c for img in at.image for c in img.captions if "upload" in c]
    assert captions and all(name in shown(c) and not unescaped_punctuation(c) for c in captions), captions


def test_a_deterministic_encoder_says_so_instead_of_identical_draws():
    at = open_app("augment", model="mnist-vq")
    assert_clean(at)
    assert any("encoder is deterministic" in i.value and "reconstruction" in i.value for i in at.info)
    assert len(image_urls(at)) == 2                                 # the image and its reconstruction, once
    assert not any("posterior draws" in c for img in at.image for c in img.captions)
    at = open_app("augment")                                        # a Gaussian encoder: draws, no such note
    assert not any("deterministic" in i.value for i in at.info)
