"""Analyze: the numbers a paper would report, shown as pictures."""
from types import MappingProxyType

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from explorer import controls, figures, inspector, jobs, limits, loaders, session, widgets
from explorer.page_settings import ANALYSES, ANALYZE as PAGE, unit_sample
from vae_core.evaluation import analyze, anomaly
from vae_core.latent import codebook, directions, explore, hierarchy as layers
from vae_core.evaluation.disentanglement import evaluate_disentanglement
from vae_core.evaluation.metrics import mutual_information_note

st.title("Analyze")
UNITS, FACTORS, ANOMALIES, RECON, DISENTANGLEMENT, DIRECTIONS, LAYERS, CODEBOOK = (
    ANALYSES[k] for k in ("units", "factors", "anomalies", "recon", "disentanglement", "directions", "layers", "codebook"))
KIND_COLOURS = MappingProxyType({"principal": figures.CLASS_COLOURS[0], "attribute": figures.CLASS_COLOURS[2],
                                 "local": figures.CLASS_COLOURS[6]})
HEADLINE = MappingProxyType({"beta_vae": "beta-VAE", "factor_vae": "FactorVAE", "mig": "MIG", "sap": "SAP",
                             "dci_disentanglement": "DCI disentanglement", "dci_completeness": "DCI completeness",
                             "dci_informativeness": "DCI informativeness", "modularity": "modularity",
                             "explicitness": "explicitness"})
ANOMALY_IWAE_K = 50            # importance samples per image of the IWAE anomaly score


def cached(key, compute):
    """Results live per model, dataset and settings in the server's result cache, so a revisit is instant;
    a new one is computed in this session's turn on the server's queue (explorer.jobs)."""
    return jobs.queue().results.get_or_compute(key, lambda: jobs.in_turn("analysis", compute))


def progress_bar(text: str):
    bar = st.progress(0.0, text=text)
    return bar, (lambda frac, what: bar.progress(min(1.0, frac), text=f"{text} ({what})"))


def units_section(ctx, model, data, n, seed):
    limits.settings().check_images(model, n, "images to analyse")
    kinds, why = anomaly.score_kinds(model)
    if "iwae" in kinds:
        iwae_k = controls.draw(PAGE, "an_iwae_k", ctx)
    else:
        iwae_k = 0
        st.caption(why)
    key = ("an-units", ctx.model_key, ctx.data_key, n, seed, iwae_k)
    if iwae_k:
        limits.settings().check_iwae(model, n, iwae_k)
    res = jobs.queue().results.get(key)
    if res is None:
        bar, tick = progress_bar("Evaluating the latent units")
        res = jobs.queue().results.put(key, jobs.in_turn("analysis", analyze.latent_units, model, data, n=n,
                                                         iwae_k=iwae_k, seed=seed, progress=tick))
        bar.empty()
    for w in res["warnings"]:
        st.warning(w)
    where = f"{res['n_images']:,} images of {ctx.data_words} drawn with seed {seed}"
    cols = st.columns(4)
    if "elbo" in res:
        cols[0].metric("ELBO (nats)", f"{res['elbo']:.2f}",
                       help=f"Nats per image, on {where}; one posterior sample per image (the single-sample "
                            "ELBO). The model card's ELBO (sidebar) is from the test split when it was trained.")
    if "active_units" in res:
        cols[1].metric("Active units", f"{res['active_units']} / {res['latent_units']}",
                       help=f"Units whose posterior mean varies over {where} (Cov_x E[z|x] > 0.01).")
    if "mutual_information" in res:
        n_mi = res["mutual_information_images"]
        cols[2].metric("I(x; z) (nats)", f"{res['mutual_information']:.2f}",
                       help=f"On {n_mi:,} of these images: the encoder's aggregate posterior as a mixture of them "
                            "(He et al., 2019).")
        note = mutual_information_note(res["mutual_information"], n_mi)
        cols[2].caption(note[0].upper() + note[1:] + ".")
    if "log_likelihood" in res:
        cols[3].metric(f"log p(x) (nats), k={res['iwae_k']}", f"{res['log_likelihood']:.2f}",
                       help=f"The IWAE estimate with k={res['iwae_k']} importance samples per image, on {where}; "
                            f"{res['bits_per_dim']:.4f} bits/dim; {res['binarisation']}")
    if "kl_per_dim" in res:
        kl = np.array(res["kl_per_dim"])
        active = np.array(res["latent_variance"]) > 0.01
        fig = figures.bars([f"z{i}" for i in range(len(kl))], kl, x="latent unit", y="KL (nats per image)",
                           colours=np.where(active, figures.CLASS_COLOURS[0], figures.MUTED).tolist(),
                           hover="%{x}: %{y:.3f} nats<extra></extra>",
                           title="KL per latent unit (grey: collapsed, Cov_x E[z|x] <= 0.01)")
        st.plotly_chart(fig, key="an_kl_chart")
    elif "codebook_usage" in res:
        # A VQ-VAE's units are codebook choices: its Codebook analysis shows their use, once, in full.
        st.caption(f"{res['codebook_usage']:.0%} of the codebook is used on these images. How often each code is "
                   f"used, what each one draws and a code grid to edit: the **{CODEBOOK}** analysis.")


def factors_section(ctx, model, data, n, seed):
    limits.settings().check_images(model, n, "images to analyse")
    res = cached(("an-factors", ctx.model_key, ctx.data_key, n, seed),
                 lambda: analyze.factor_information(model, data, n=n, seed=seed))
    mi = res["mi"]
    fig = figures.heatmap(mi.T, [f"z{i}" for i in range(mi.shape[0])], res["factor_names"], height=320,
                          x="latent unit", y="ground-truth factor", colour_title="I(unit; factor) / H(factor)",
                          title="Mutual information of each unit with each factor, divided by the factor's entropy")
    st.plotly_chart(fig, key="an_mi_heatmap")
    stats = loaders.unit_stats(ctx.model_key, ctx.data_key, model, data, *unit_sample(model))
    base = torch.zeros((1, *model.latent_shape))
    grid = explore.traversal_grid(model, base, res["best_unit"], stats, steps=9)
    st.caption("Traversals of the most informative unit for each factor, from -3 to 3: " +
               ", ".join(f"{f} (z{u})" for f, u in zip(res["factor_names"], res["best_unit"])))
    widgets.show_grid(grid, nrow=9, wrap=False)


def anomalies_section(ctx, model, data, n, seed):
    limits.settings().check_images(model, n, "images to score")
    c1, c2 = st.columns(2)
    kinds, why = anomaly.score_kinds(model)        # only the scores this model has; never one in another's name
    kind = controls.draw(PAGE, "an_score_kind", ctx, c1, format_func=anomaly.SCORE_NAMES.get, help=why or None)
    if why:
        c1.caption(why)
    classes = list(data.class_names) if data.labels is not None and data.class_names else []
    chosen = controls.draw(PAGE, "an_anomaly_class", ctx, c2)
    anomalous = classes.index(chosen) if chosen in classes else None
    key = ("an-anomaly", ctx.model_key, ctx.data_key, n, seed, kind, anomalous)
    if kind == "iwae":
        limits.settings().check_iwae(model, n, ANOMALY_IWAE_K)
    res = jobs.queue().results.get(key)
    if res is None:
        bar, tick = progress_bar("Scoring images")
        res = jobs.queue().results.put(key, jobs.in_turn("analysis", analyze.anomaly_analysis, model, data, kind,
                                                         anomalous, n=n, k=ANOMALY_IWAE_K, seed=seed,
                                                         progress=tick))
        bar.empty()
    scores = res["scores"]
    pct = controls.draw(PAGE, "an_threshold", ctx)
    threshold = float(np.percentile(scores, pct))
    flagged = scores > threshold
    left, right = st.columns(2)
    groups = [("normal", scores[~res["is_anomaly"]]), (chosen, scores[res["is_anomaly"]])] \
        if "is_anomaly" in res else [("scores", scores)]
    hist = figures.histogram(groups, height=340, x=f"{anomaly.SCORE_NAMES[kind]} ({anomaly.SCORE_UNITS[kind]})",
                             title="Anomaly scores (higher: more unusual)",
                             colours=[figures.CLASS_COLOURS[0], figures.SELECTED])
    hist.add_vline(x=threshold, line_dash="dash", line_color=figures.SELECTED,
                   annotation_text=f"{flagged.sum()} flagged", annotation_position="top right")
    left.plotly_chart(hist, key="an_hist")
    if "roc_auc" in res:
        roc = go.Figure(go.Scatter(x=res["fpr"], y=res["tpr"], mode="lines", name="ROC",
                                   line=dict(color=figures.CLASS_COLOURS[0], width=2)))
        roc.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(dash="dot", color="grey"))
        figures.style(roc, height=340, x="false-positive rate", y="true-positive rate", legend="none",
                      title=f"ROC-AUC {res['roc_auc']:.3f}, PR-AUC {res['pr_auc']:.3f}")
        right.plotly_chart(roc, key="an_roc")
        if res["roc_auc"] < 0.5:
            right.info("An AUC below 0.5 means this class looks *more* typical to the model than the rest: "
                       "VAEs give simple images (few ink pixels) high likelihood, whatever they were trained on "
                       "(Nalisnick et al., 2019). Try another score.")
    else:
        right.info("Pick a class to treat as the anomaly to see the ROC curve.")
    top = res["indices"][res["order"][:20]]
    widgets.show_grid(data.subset(top).float_images(), nrow=10,
                      caption="The 20 most anomalous images, most unusual first (read left to right, row by row)")


def recon_section(ctx, model, data, seed):
    count = controls.draw(PAGE, "an_recon_count", ctx)
    limits.settings().check_images(model, count, "reconstructions")
    _, idx = data.seeded_subset(count, seed)
    res = analyze.reconstructions(model, data, idx)
    cols = st.columns(3)
    cols[0].metric("MSE", f"{res['mse'].mean():.4f}")
    cols[1].metric("PSNR (dB)", f"{res['psnr'].mean():.2f}")
    cols[2].metric("SSIM", f"{res['ssim'].mean():.3f}")
    per_row = figures.grid_layout(len(idx), res["x"].shape[-1]).per_row
    widgets.show_grid(figures.paired_rows(res["x"], res["x_hat"], per_row), nrow=per_row,
                      caption="Each pair of rows: originals, then their reconstructions from the posterior mean")


def layers_section(ctx, model, data, n, seed):
    limits.settings().check_images(model, n, "images to analyse")
    res = cached(("an-units", ctx.model_key, ctx.data_key, n, seed, 0),
                 lambda: analyze.latent_units(model, data, n=n, seed=seed))
    inspector.layers_analysis(layers.layer_summary(model, res))


def codebook_section(ctx, model, data, n, seed):
    limits.settings().check_images(model, n, "images to analyse")
    usage = cached(("an-codebook", ctx.model_key, ctx.data_key, n, seed),
                   lambda: codebook.codebook_usage(model, data, n=n, seed=seed))
    inspector.codebook_analysis(ctx, usage)


def disentanglement_section(ctx, model, seed):
    if tuple(model.config.in_shape) != (1, 64, 64):
        st.info("The disentanglement metrics score a model of 64x64 grey images on dSprites' ground-truth factors; "
                "pick a dSprites model (e.g. dsprites-beta4) in the sidebar.")
        return
    c1, c2 = st.columns([3, 1])
    scale = controls.draw(PAGE, "an_dis_scale", ctx, c1)
    key = ("an-dis", ctx.model_key, scale, seed)
    res = jobs.queue().results.get(key)
    if res is None:
        if not c2.button("Compute", key="an_dis_run", type="primary"):
            st.caption("beta-VAE, FactorVAE, MIG, SAP, DCI and modularity on dSprites, from the encoder mean.")
            return
        lim = limits.settings()
        lim.check_disentanglement(scale)
        bar, tick = progress_bar("Scoring disentanglement")
        res = jobs.queue().results.put(key, jobs.in_turn(
            "analysis", evaluate_disentanglement, model, seed=seed, scale=scale,
            progress=lambda name, i, total: tick(i / total, name), max_images=lim.max_disentanglement_images))
        bar.empty()
    headline = {name: res[k] for k, name in HEADLINE.items() if k in res}
    fig = figures.bars(list(headline), list(headline.values()), height=340, x="metric", y="score (0 to 1)",
                       text=[f"{v:.2f}" for v in headline.values()], colours=figures.CLASS_COLOURS[0], y_range=(0, 1.05),
                       title=f"Disentanglement scores at {scale:g} of the default sample counts (seed {seed})")
    st.plotly_chart(fig, key="an_dis_chart")
    stopped = [name for k, name in (("beta_vae_converged", "beta-VAE"), ("explicitness_converged", "explicitness"))
               if res.get(k) is False]
    if stopped:
        st.caption(f"{' and '.join(stopped)}: the logistic regression stopped at scikit-learn's default of 100 "
                   "iterations before converging, as it does in disentanglement_lib, whose scores these reproduce.")


def directions_section(ctx, model, data, n, seed):
    key = ("an-directions", ctx.model_key, ctx.data_key, n, seed)
    res = jobs.queue().results.get(key)
    if res is None:
        bar, tick = progress_bar("Finding directions and aligning them with the factors")
        res = jobs.queue().results.put(key, jobs.in_turn("analysis", directions.dataset_alignment, model, data, n=n,
                                                         seed=seed, progress=tick))
        bar.empty()
    rows = res["rows"]
    fig = figures.bars([f"{r['kind']}: {r['name']}" for r in rows], [r["cosine"] for r in rows], height=380,
                       x="direction", y="|cos| with closest factor", y_range=(0, 1.05),
                       text=[r["best_factor"] for r in rows], colours=[KIND_COLOURS[r["kind"]] for r in rows],
                       hover="%{x}: |cos| %{y:.2f} with %{text}<extra></extra>",
                       title="How each kind of direction lines up with a ground-truth factor (bar label: that "
                             "factor; dotted: a random direction)")
    fig.add_hline(y=res["chance"], line_dash="dot", line_color="grey")
    st.plotly_chart(fig, key="an_directions_chart")
    st.caption(f"{res['images']:,} images (seed {seed}). Principal: the codes' principal axes; attribute: each class's "
               f"mean code minus the first class's; local: the decoder Jacobian's top singular vectors at "
               f"{res['local_codes']} codes, their |cos| averaged ({res['local_method']}). A factor's direction: how "
               "the mean code moves as the factor grows (the codes regressed on all factors). Stabilities (bootstrap): " +
               ", ".join(f"{r['name']} {r['stability']:.2f}" for r in rows if r["stability"] is not None) +
               "; factors: " + ", ".join(f"{r['name']} ({r['detail']}, {r['stability']:.2f})"
                                         for r in res["references"]) + ".")


with session.guard("Analysis"):
    ctx = session.context()
    model = ctx.require_model()
    data = ctx.require_data()
    c1, c2, c3 = st.columns([4, 2, 1])
    picked = controls.draw(PAGE, "an_pick", ctx, c1)            # the analyses offered: page_settings.analyses
    n = controls.draw(PAGE, "an_n", ctx, c2)
    seed = int(controls.draw(PAGE, "an_seed", ctx, c3))
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
            recon_section(ctx, model, data, seed)
        elif name == DISENTANGLEMENT:
            disentanglement_section(ctx, model, seed)
        elif name == DIRECTIONS:
            directions_section(ctx, model, data, n, seed)
        elif name == LAYERS:
            layers_section(ctx, model, data, n, seed)
        elif name == CODEBOOK:
            codebook_section(ctx, model, data, n, seed)
