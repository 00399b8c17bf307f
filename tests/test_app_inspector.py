"""The hierarchical inspector (Sample, Traverse, Analyze on mnist-hvae) and the VQ-VAE's prior and codebook
explorer (Sample, Analyze on mnist-vq): the controls appear for those models only, and each one changes the output."""
import json

import pytest

from tests.app_conftest_helpers import assert_clean, image_urls, open_app

HVAE, VQ = "mnist-hvae", "mnist-vq"


def _charts(at):
    return [c.proto.spec for c in at.get("plotly_chart")]


def _keys(at, prefix):
    return [w.key for w in at.slider if w.key and w.key.startswith(prefix)]


def test_sample_has_a_temperature_per_layer_and_resamples_one_layer():
    at = open_app("sample", model=HVAE)
    assert_clean(at)
    temps = _keys(at, "sample_layer_temperature_")
    assert len(temps) == 2 and at.slider(key=temps[0]).label.startswith("Layer 1 (top")
    grids = image_urls(at)
    assert len(grids) == 2                                       # the samples, and the resample grid
    at.slider(key=temps[1]).set_value(0.0).run()                 # the bottom layer at its prior mean
    assert_clean(at)
    after = image_urls(at)
    assert after[0] != grids[0] and after[1] == grids[1]         # the main grid follows; the resample grid does not
    assert "Layer to draw afresh" in at.selectbox(key="sample_resample_layer").label
    at.selectbox(key="sample_resample_layer").set_value(0).run()
    assert_clean(at)
    assert image_urls(at)[1] != after[1]
    for key, value in (("sample_resample_rows", 2), ("sample_resample_cols", 5)):
        before = image_urls(at)[1]
        at.slider(key=key).set_value(value).run()
        assert_clean(at)
        assert image_urls(at)[1] != before


def test_traverse_has_a_per_layer_traversal():
    at = open_app("traverse", model=HVAE)
    assert_clean(at)
    assert any(h.value == "Traverse one layer" for h in at.subheader)
    radio = at.radio(key="traverse_layer")
    assert len(radio.options) == 2
    before = image_urls(at)[-1]
    radio.set_value(1).run()
    assert_clean(at)
    assert image_urls(at)[-1] != before
    rows = at.slider(key="traverse_layer_rows")
    assert rows.max == 32                                         # the bottom layer's units
    rows.set_value(2).run()
    assert_clean(at)


def test_analyze_shows_kl_and_active_units_per_layer():
    at = open_app("analyze", model=HVAE)
    assert_clean(at)
    assert at.multiselect(key="an_pick").value == ["Latent units", "Layers", "Reconstructions"]
    specs = _charts(at)
    assert any("KL per layer" in s for s in specs) and any("Active units per layer" in s for s in specs)
    labels = [m.label for m in at.metric]
    assert "Layer 1 (top, 16 units)" in labels and "Layer 2 (bottom, 32 units)" in labels
    kl_top = next(m.value for m in at.metric if m.label.startswith("Layer 1"))
    at.select_slider(key="an_n").set_value(250).run()
    assert_clean(at)
    assert next(m.value for m in at.metric if m.label.startswith("Layer 1")) != kl_top


@pytest.mark.parametrize("name", ["mnist-mlp", "mnist-cvae"])
def test_flat_models_have_none_of_these_controls(name):
    for page in ("sample", "traverse", "analyze"):
        at = open_app(page, model=name)
        assert_clean(at)
        assert not _keys(at, "sample_layer_temperature_") and not _keys(at, "sample_top_k")
        assert not [r for r in at.radio if r.key == "traverse_layer"]
        if page == "analyze":
            assert not {"Layers", "Codebook"} & set(at.multiselect(key="an_pick").options)


def test_vq_samples_from_its_prior_with_temperature_and_top_k():
    at = open_app("sample", model=VQ)
    assert_clean(at)
    assert any("learned code prior" in i.value for i in at.info)
    before = image_urls(at)
    top_k = at.slider(key="sample_top_k")
    assert top_k.value == 0 and top_k.max == 64
    top_k.set_value(5).run()
    assert_clean(at)
    after = image_urls(at)
    assert after != before
    at.slider(key="sample_temperature").set_value(0.7).run()
    assert_clean(at)
    assert image_urls(at) != after


def test_codebook_explorer_edits_a_code_grid_and_decodes_it():
    at = open_app("analyze", model=VQ)
    assert_clean(at)
    assert at.multiselect(key="an_pick").value == ["Latent units", "Codebook", "Reconstructions"]
    at.multiselect(key="an_pick").set_value(["Codebook"]).run()
    assert_clean(at)
    specs = _charts(at)
    assert any("Usage over the codebook" in s for s in specs) and any("Code grid" in s for s in specs)
    assert {"Codes used", "Perplexity", "Unused codes"} <= {m.label for m in at.metric}
    grid = json.loads(next(s for s in specs if "Code grid" in s))["layout"]
    assert grid["yaxis"]["scaleanchor"] == "x" and grid["xaxis"]["constrain"] == "domain"   # square cells, and the
    assert grid["xaxis"]["range"] == [-0.6, 6.6]                  # column axis spans the 7 columns, not empty space
    patches, decoded = image_urls(at)                             # the code gallery, and image / own codes / edited
    assert "(0 cells edited)" in at.image[-1].captions[0]
    at.number_input(key="an_cb_row").set_value(3).run()
    at.number_input(key="an_cb_col").set_value(3).run()
    code = at.selectbox(key="an_cb_code")
    new = (code.value + 1) % 64
    code.set_value(new).run()                                     # a pick sets the cell at once
    assert_clean(at)
    assert image_urls(at)[1] != decoded                           # the edited grid decodes differently
    assert "(1 cell edited)" in at.image[-1].captions[0]
    at.button(key="an_cb_reset").click().run()
    assert_clean(at)
    assert image_urls(at)[1] == decoded
    at.number_input(key="an_cb_index").set_value(7).run()        # another image: its own codes
    assert_clean(at)
    assert image_urls(at)[1] != decoded and image_urls(at)[0] == patches


def test_coming_back_to_the_codebook_explorer_keeps_its_edit():
    at = open_app("analyze", model=VQ)
    at.multiselect(key="an_pick").set_value(["Codebook"]).run()
    code = at.selectbox(key="an_cb_code")
    code.set_value((code.value + 1) % 64).run()
    assert "(1 cell edited)" in at.image[-1].captions[0]
    at.switch_page("explorer/pages/sample.py").run()             # Streamlit forgets the row and column here
    at.switch_page("explorer/pages/analyze.py").run()
    assert_clean(at)
    assert at.number_input(key="an_cb_row").value == at.number_input(key="an_cb_col").value == 3
    assert any("(1 cell edited)" in c for img in at.image for c in img.captions)
