"""Analyze: the numbers a paper would report, shown as pictures."""
from types import MappingProxyType

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from explorer import inspector, jobs, loaders, session, widgets
from vae_core import analyze, codebook, explore, layers
from vae_core.disentanglement import evaluate_disentanglement

st.title("Analyze")
UNITS, FACTORS, ANOMALIES, RECON, DISENTANGLEMENT = ("Latent units", "Factors", "Anomalies", "Reconstructions",
                                                     "Disentanglement")
LAYERS, CODEBOOK = "Layers", "Codebook"       # a hierarchical VAE's layers; a VQ-VAE's codebook
SCORES = MappingProxyType({"Negative ELBO": "elbo", "Negative IWAE log p(x)": "iwae", "Reconstruction error": "recon"})


def cached(key, compute):
    """Results live per model, dataset and settings in the server's result cache, so a revisit is instant."""
    return jobs.queue().results.get_or_compute(key, compute)


def progress_bar(text: str):
    bar = st.progress(0.0, text=text)
    return bar, (lambda frac, what: bar.progress(min(1.0, frac), text=f"{text} ({what})"))


def units_section(ctx, model, data, n, seed):
    iwae_k = st.select_slider("IWAE samples for log p(x) (0: skip)", [0, 10, 50, 100, 500], 0, key="an_iwae_k")
    key = ("an-units", ctx.model_key, ctx.data_key, n, seed, iwae_k)
    res = jobs.queue().results.get(key)
    if res is None:
        bar, tick = progress_bar("Evaluating the latent units")
        res = jobs.queue().results.put(key, analyze.latent_units(model, data, n=n, iwae_k=iwae_k, seed=seed, progress=tick))
        bar.empty()
    for w in res["warnings"]:
        st.warning(w)
    cols = st.columns(4)
    if "elbo" in res:
        cols[0].metric("ELBO (nats)", f"{res['elbo']:.2f}")
    if "active_units" in res:
        cols[1].metric("Active units", f"{res['active_units']} / {res['latent_units']}")
    if "mutual_information" in res:
        cols[2].metric("I(x; z) (nats)", f"{res['mutual_information']:.2f}")
    if "log_likelihood" in res:
        cols[3].metric(f"log p(x), k={res['iwae_k']}", f"{res['log_likelihood']:.2f}",
                       help=f"{res['bits_per_dim']:.4f} bits/dim; {res['binarisation']}")
    if "kl_per_dim" in res:
        kl = np.array(res["kl_per_dim"])
        active = np.array(res["latent_variance"]) > 0.01
        fig = go.Figure(go.Bar(x=[f"z{i}" for i in range(len(kl))], y=kl,
                               marker_color=np.where(active, "#4c78a8", "#bbbbbb"),
                               hovertemplate="%{x}: %{y:.3f} nats<extra></extra>"))
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="KL (nats)",
                          title="KL per latent unit (grey: collapsed, Cov_x E[z|x] <= 0.01)")
        st.plotly_chart(fig, key="an_kl_chart")
    elif "codebook_usage" in res:
        st.metric("Codebook usage", f"{res['codebook_usage']:.0%}", help=f"perplexity {res['perplexity']:.1f}")
        st.bar_chart(np.array(res["code_frequencies"]), height=220)


def factors_section(ctx, model, data, n, seed):
    res = cached(("an-factors", ctx.model_key, ctx.data_key, n, seed),
                 lambda: analyze.factor_information(model, data, n=n, seed=seed))
    mi = res["mi"]
    fig = go.Figure(go.Heatmap(z=mi.T, x=[f"z{i}" for i in range(mi.shape[0])], y=res["factor_names"],
                               colorscale="Blues", zmin=0, zmax=1,
                               hovertemplate="%{y} / %{x}: %{z:.2f}<extra></extra>"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10),
                      title="Mutual information of each unit with each factor, divided by the factor's entropy")
    st.plotly_chart(fig, key="an_mi_heatmap")
    stats = loaders.unit_stats(ctx.model_key, ctx.data_key, model, data)
    base = torch.zeros((1, *model.latent_shape))
    grid = explore.traversal_grid(model, base, res["best_unit"], stats, steps=9)
    st.caption("Traversals of the most informative unit for each factor, from -3 to 3: " +
               ", ".join(f"{f} (z{u})" for f, u in zip(res["factor_names"], res["best_unit"])))
    widgets.show_grid(grid, nrow=9, target=48)


def anomalies_section(ctx, model, data, n, seed):
    c1, c2 = st.columns(2)
    kind = SCORES[c1.selectbox("Score", list(SCORES), key="an_score_kind")]
    classes = list(data.class_names) if data.labels is not None and data.class_names else []
    chosen = c2.selectbox("Class to treat as the anomaly", ["(none)"] + classes, key="an_anomaly_class")
    anomalous = classes.index(chosen) if chosen in classes else None
    key = ("an-anomaly", ctx.model_key, ctx.data_key, n, seed, kind, anomalous)
    res = jobs.queue().results.get(key)
    if res is None:
        bar, tick = progress_bar("Scoring images")
        res = jobs.queue().results.put(key, analyze.anomaly_analysis(model, data, kind, anomalous, n=n, seed=seed, progress=tick))
        bar.empty()
    scores = res["scores"]
    pct = st.slider("Threshold (percentile of the scores)", 50.0, 99.9, 95.0, 0.1, key="an_threshold")
    threshold = float(np.percentile(scores, pct))
    flagged = scores > threshold
    left, right = st.columns(2)
    hist = go.Figure()
    if "is_anomaly" in res:
        for mask, name in ((~res["is_anomaly"], "normal"), (res["is_anomaly"], chosen)):
            hist.add_trace(go.Histogram(x=scores[mask], name=name, opacity=0.7, nbinsx=50))
        hist.update_layout(barmode="overlay")
    else:
        hist.add_trace(go.Histogram(x=scores, nbinsx=50, name="scores"))
    hist.add_vline(x=threshold, line_dash="dash", line_color="red",
                   annotation_text=f"{flagged.sum()} flagged", annotation_position="top right")
    hist.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), title="Anomaly scores (higher: more unusual)")
    left.plotly_chart(hist, key="an_hist")
    if "roc_auc" in res:
        roc = go.Figure(go.Scatter(x=res["fpr"], y=res["tpr"], mode="lines", name="ROC"))
        roc.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(dash="dot", color="grey"))
        roc.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="false-positive rate",
                          yaxis_title="true-positive rate",
                          title=f"ROC-AUC {res['roc_auc']:.3f}, PR-AUC {res['pr_auc']:.3f}")
        right.plotly_chart(roc, key="an_roc")
        if res["roc_auc"] < 0.5:
            right.info("An AUC below 0.5 means this class looks *more* typical to the model than the rest: "
                       "VAEs give simple images (few ink pixels) high likelihood, whatever they were trained on "
                       "(Nalisnick et al., 2019). Try another score.")
    else:
        right.info("Pick a class to treat as the anomaly to see the ROC curve.")
    top = res["indices"][res["order"][:16]]
    st.caption("The 16 most anomalous images, most unusual first")
    widgets.show_grid(data.subset(top).float_images(), nrow=16, target=40)


def recon_section(model, data, seed):
    count = st.slider("Images", 4, 32, 16, 4, key="an_recon_count")
    _, idx = data.seeded_subset(count, seed)
    res = analyze.reconstructions(model, data, idx)
    cols = st.columns(3)
    cols[0].metric("MSE", f"{res['mse'].mean():.4f}")
    cols[1].metric("PSNR (dB)", f"{res['psnr'].mean():.2f}")
    cols[2].metric("SSIM", f"{res['ssim'].mean():.3f}")
    st.caption("Originals (top) and reconstructions from the posterior mean (bottom)")
    widgets.show_grid(torch.cat([res["x"], res["x_hat"]]), nrow=len(idx), target=48)


def layers_section(ctx, model, data, n, seed):
    res = cached(("an-units", ctx.model_key, ctx.data_key, n, seed, 0),
                 lambda: analyze.latent_units(model, data, n=n, seed=seed))
    inspector.layers_analysis(layers.layer_summary(model, res))


def codebook_section(ctx, model, data, n, seed):
    usage = cached(("an-codebook", ctx.model_key, ctx.data_key, n, seed),
                   lambda: codebook.codebook_usage(model, data, n=n, seed=seed))
    inspector.codebook_analysis(model, data, usage, ctx.model_key)


def disentanglement_section(ctx, model, seed):
    if tuple(model.config.in_shape) != (1, 64, 64):
        st.info("The disentanglement metrics score a model of 64x64 grey images on dSprites' ground-truth factors; "
                "pick a dSprites model (e.g. dsprites-beta4) in the sidebar.")
        return
    c1, c2 = st.columns([3, 1])
    scale = c1.select_slider("Share of disentanglement_lib's sample counts", [0.01, 0.02, 0.05, 0.1, 0.25, 1.0],
                             0.02, key="an_dis_scale",
                             help="1.0 is the library's defaults (10,000 points; several minutes on a CPU).")
    key = ("an-dis", ctx.model_key, scale, seed)
    res = jobs.queue().results.get(key)
    if res is None:
        if not c2.button("Compute", key="an_dis_run", type="primary"):
            st.caption("beta-VAE, FactorVAE, MIG, SAP, DCI and modularity on dSprites, from the encoder mean.")
            return
        bar, tick = progress_bar("Scoring disentanglement")
        res = jobs.queue().results.put(key, evaluate_disentanglement(
            model, seed=seed, scale=scale, progress=lambda name, i, total: tick(i / total, name)))
        bar.empty()
    headline = {k: v for k, v in res.items() if k in ("beta_vae", "factor_vae", "mig", "sap", "dci_disentanglement",
                                                        "dci_completeness", "dci_informativeness", "modularity",
                                                        "explicitness")}
    fig = go.Figure(go.Bar(x=list(headline), y=list(headline.values()), text=[f"{v:.2f}" for v in headline.values()]))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), yaxis_range=[0, 1],
                      title=f"Disentanglement scores at {scale:g} of the default sample counts (seed {seed})")
    st.plotly_chart(fig, key="an_dis_chart")


with session.guard("Analysis"):
    ctx = session.context()
    model = ctx.require_model()
    data = ctx.require_data()
    available = [UNITS, ANOMALIES, RECON] + ([FACTORS] if data.factors is not None else []) + \
                ([DISENTANGLEMENT] if data.factor_names == ("shape", "scale", "orientation", "posX", "posY") else [])
    own = [LAYERS] if layers.is_hierarchical(model) else [CODEBOOK] if codebook.is_vq(model) else []
    available += own
    c1, c2, c3 = st.columns([4, 2, 1])
    picked = c1.multiselect("Analyses", available, [UNITS, *own, RECON], key="an_pick")
    n = c2.select_slider("Images to analyse", [250, 500, 1000, 2000, 5000], 1000, key="an_n")
    seed = int(c3.number_input("Seed", 0, 10_000, 0, key="an_seed"))
    if not picked:
        st.info("Pick one or more analyses above.")
    for name in picked:
        st.subheader(name)
        if name == UNITS:
            units_section(ctx, model, data, n, seed)
        elif name == FACTORS:
            factors_section(ctx, model, data, n, seed)
        elif name == ANOMALIES:
            anomalies_section(ctx, model, data, n, seed)
        elif name == RECON:
            recon_section(model, data, seed)
        elif name == DISENTANGLEMENT:
            disentanglement_section(ctx, model, seed)
        elif name == LAYERS:
            layers_section(ctx, model, data, n, seed)
        elif name == CODEBOOK:
            codebook_section(ctx, model, data, n, seed)
