"""Analyze page: each analysis draws its pictures, settings change them, and bad combinations explain themselves."""
import json

import numpy as np
import pytest

from tests.app_conftest_helpers import assert_clean, image_urls, open_app, plotly_array


def _charts(at):
    return [c.proto.spec for c in at.get("plotly_chart")]


def test_default_analyses_show_units_and_reconstructions():
    at = open_app("analyze")
    assert_clean(at)
    assert at.multiselect(key="an_pick").value == ["Latent units", "Reconstructions"]
    labels = [m.label for m in at.metric]
    assert {"ELBO (nats)", "Active units", "I(x; z) (nats)", "MSE", "PSNR (dB)", "SSIM"} <= set(labels)
    assert any("KL per latent unit" in spec for spec in _charts(at))
    assert len(image_urls(at)) == 1                       # the originals-over-reconstructions grid


def test_moving_the_controls_changes_the_output():
    at = open_app("analyze")
    before = image_urls(at)
    at.slider(key="an_recon_count").set_value(8).run()
    assert_clean(at)
    assert image_urls(at) != before
    elbo = next(m.value for m in at.metric if m.label == "ELBO (nats)")
    at.select_slider(key="an_n").set_value(250).run()
    assert_clean(at)
    assert next(m.value for m in at.metric if m.label == "ELBO (nats)") != elbo
    at.select_slider(key="an_iwae_k").set_value(10).run()
    assert_clean(at)
    assert any(m.label.startswith("log p(x)") for m in at.metric)


def test_anomalies_with_a_class_show_roc_and_threshold():
    at = open_app("analyze")
    at.multiselect(key="an_pick").set_value(["Anomalies"]).run()
    at.select_slider(key="an_n").set_value(250).run()
    at.selectbox(key="an_score_kind").set_value("recon").run()
    assert_clean(at)
    assert any("Pick a class" in i.value for i in at.info)
    at.selectbox(key="an_anomaly_class").set_value("0").run()
    assert_clean(at)
    specs = _charts(at)
    assert any("ROC-AUC" in s for s in specs) and any("flagged" in s for s in specs)
    hist = next(s for s in specs if "flagged" in s)
    at.slider(key="an_threshold").set_value(60.0).run()
    assert_clean(at)
    assert next(s for s in _charts(at) if "flagged" in s) != hist


def test_factors_and_disentanglement_on_dsprites():
    at = open_app("analyze", model="dsprites-beta4")
    at.sidebar.selectbox(key="dataset").set_value("dsprites").run()
    assert_clean(at)
    pick = at.multiselect(key="an_pick")
    assert "Factors" in pick.options and "Disentanglement" in pick.options
    pick.set_value(["Factors", "Disentanglement"]).run()
    at.select_slider(key="an_n").set_value(500).run()
    assert_clean(at)
    assert any("Mutual information of each unit" in s for s in _charts(at))
    assert len(image_urls(at)) == 1                       # one traversal row per factor
    at.select_slider(key="an_dis_scale").set_value(0.01).run()
    at.button(key="an_dis_run").click().run()
    assert_clean(at)
    assert any("Disentanglement scores" in s for s in _charts(at))


def test_disentanglement_needs_factors_and_a_mismatched_dataset_is_explained():
    at = open_app("analyze")
    assert "Disentanglement" not in at.multiselect(key="an_pick").options      # mnist has no factors
    at.sidebar.selectbox(key="dataset").set_value("dsprites").run()          # a 28x28 model on 64x64 data
    assert not at.exception
    assert any("expects 1x28x28" in e for e in [e.value for e in at.error])
    at.sidebar.checkbox(key="resize_data").check().run()                    # the user resizes on purpose
    assert_clean(at)
    assert "Factors" in at.multiselect(key="an_pick").options


def test_a_vq_vae_is_offered_only_the_scores_it_has_and_told_why():
    at = open_app("analyze", model="mnist-vq")
    assert_clean(at)
    # Its codebook's use is drawn once, by the Codebook analysis, not again under the latent units.
    assert at.multiselect(key="an_pick").value == ["Latent units", "Codebook", "Reconstructions"]
    assert sum("Usage over the codebook" in s or "each codebook vector" in s for s in _charts(at)) == 1
    assert [m.label for m in at.metric if m.label in ("Codes used", "Codebook usage")] == ["Codes used"]
    assert any("the **Codebook** analysis" in c.value for c in at.caption)
    assert not [s for s in at.select_slider if s.key == "an_iwae_k"]            # no log p(x) to estimate
    assert any("no IWAE estimate of log p(x)" in c.value for c in at.caption)
    at.multiselect(key="an_pick").set_value(["Anomalies"]).run()
    at.select_slider(key="an_n").set_value(250).run()
    assert_clean(at)
    box = at.selectbox(key="an_score_kind")
    assert box.options == ["Negative ELBO", "Reconstruction error"]
    hist = next(s for s in _charts(at) if "flagged" in s)
    assert "Negative ELBO (nats)" in hist                                        # its x-axis says what and in what unit
    xs = np.concatenate([plotly_array(t["x"]) for t in json.loads(hist)["data"] if t["type"] == "histogram"])
    assert xs.min() > 50                                                          # hundreds of nats, not an MSE
    box.set_value("recon").run()
    assert "Reconstruction error (MSE)" in next(s for s in _charts(at) if "flagged" in s)


def test_the_factor_heatmaps_scale_shows_its_range():
    at = open_app("analyze", model="dsprites-beta4")
    at.multiselect(key="an_pick").set_value(["Factors"]).run()
    at.select_slider(key="an_n").set_value(500).run()
    assert_clean(at)
    spec = json.loads(next(s for s in _charts(at) if "Mutual information of each unit" in s))
    hm = spec["data"][0]
    assert hm["zmin"] == 0 and hm["zmax"] == pytest.approx(float(plotly_array(hm["z"]).max())) and hm["zmax"] < 1
    assert spec["layout"]["xaxis"]["title"]["text"] == "latent unit" and hm["colorbar"]["title"]["text"]


def test_directions_are_aligned_with_dsprites_factors():
    at = open_app("analyze", model="dsprites-beta4")
    assert "Directions and factors" in at.multiselect(key="an_pick").options
    at.select_slider(key="an_n").set_value(250).run()
    at.multiselect(key="an_pick").set_value(["Directions and factors"]).run()
    assert_clean(at)
    spec = json.loads(next(s for s in _charts(at) if "lines up with a ground-truth factor" in s))
    bars = spec["data"][0]
    names = list(bars["x"])
    assert {n.split(":")[0] for n in names} == {"principal", "attribute", "local"}
    assert all(t in {"shape", "scale", "orientation", "posX", "posY"} for t in bars["text"])
    cos = plotly_array(bars["y"])
    assert ((cos >= 0) & (cos <= 1)).all() and cos.max() > 0.5
    assert spec["layout"]["yaxis"]["title"]["text"].startswith("|cos|")
    assert any("Stabilities (bootstrap)" in c.value for c in at.caption)


def test_mnist_offers_no_direction_alignment():
    at = open_app("analyze")
    assert "Directions and factors" not in at.multiselect(key="an_pick").options
