"""The shared sidebar: the model, dataset and device pickers, and the model's summary."""
from __future__ import annotations

import streamlit as st

import vae_core
from vae_core import ImageSet, ModelInfo, VAEBase
from vae_core.data import DATASETS
from vae_core.evaluation.metrics import metric_label

from explorer import loaders
from explorer.limits import Settings, settings
from explorer.private_runs import private_runs
from explorer.links import LINK_DATASET_KEY
from explorer.page_settings import SPLITS
from explorer.session import CONTEXT_KEY, Context, session_id
from explorer.text import literal

SESSION_RUN = "This session's run"
MODEL_KINDS = ("Shipped", "Hub", "Folder")
PUBLIC_MODEL_KINDS = ("Shipped", "Hub")       # a public server opens no folder of its own disk
DEFAULT_MODEL = "mnist-mlp"
FAILURES_KEY = "_model_failures"      # per session: sources that failed to load, not retried on every rerun
MODEL_SEEN_KEY = "_sidebar_model"     # per session: the model the dataset picker last followed


def device_choices() -> list[str]:
    out = [str(vae_core.pick_device())]
    return out + [d for d in ("cpu",) if d not in out]


def prompt(kind: str) -> str:
    """What the sidebar asks for while a model source's box is empty (shown as a hint, never an error)."""
    return f"Enter a {'Hub repo id (org/name)' if kind == 'Hub' else 'run folder path'}."


def _model_picker(sb, limits: Settings) -> tuple[VAEBase | None, ModelInfo | None, str]:
    trained = st.session_state.get("trained_model")
    kinds = list(PUBLIC_MODEL_KINDS if limits.public else MODEL_KINDS) + ([SESSION_RUN] if trained is not None else [])
    kind = sb.radio("Model source", kinds, key="model_kind", horizontal=True)
    revision = source = ""
    if kind == SESSION_RUN:
        pass
    elif kind == "Shipped":
        names = loaders.shipped_checkpoints()
        if not names:
            return None, None, "No shipped checkpoints were found in checkpoints/."
        default = names.index(DEFAULT_MODEL) if DEFAULT_MODEL in names else 0
        source = sb.selectbox("Checkpoint", names, index=default, key="model_shipped")
    elif kind == "Hub":
        source = sb.text_input("Hub repo id", key="model_hub", placeholder="org/name").strip()
        revision = sb.text_input("Revision (optional)", key="model_revision", placeholder="main").strip()
    else:
        source = sb.text_input("Run folder", key="model_folder", placeholder="runs/my-run").strip()
    device = sb.selectbox("Device", device_choices(), key="device",     # below the model it runs
                          help="The best available is first: CUDA, then Apple MPS, then the CPU.")
    if kind == SESSION_RUN:
        model, info = trained
        return model.to(device), info, ""
    if not source:                           # nothing typed yet: a prompt, not an error
        return None, None, prompt(kind)
    key = f"{kind}:{source}@{revision}:{device}"
    failures = st.session_state.setdefault(FAILURES_KEY, {})
    if key in failures:                      # do not hit the network again on every rerun
        if not sb.button("Retry", key="model_retry"):
            return None, None, failures[key]
        failures.pop(key, None)
    try:
        stamp = loaders.folder_stamp(source) if kind == "Folder" else 0.0
        model, info = loaders.load_model(source, revision, device, stamp, limits.load_policy, limits.max_models_bytes)
        return model, info, ""
    except vae_core.VAEError as e:
        failures[key] = str(e)
        return None, None, str(e)


def _follow_the_model(info: ModelInfo | None, limits: Settings) -> None:
    """When the model changes, pick the dataset it was trained on, where its card names one the app
    offers (before the dataset picker is drawn); the user's later choices stand until the next change."""
    if info is None or st.session_state.get(MODEL_SEEN_KEY) == info.key:
        return
    st.session_state[MODEL_SEEN_KEY] = info.key
    if info.trained_on in limits.datasets() and not st.session_state.pop(LINK_DATASET_KEY, False):
        st.session_state["dataset"] = info.trained_on


def _dataset_picker(sb, model: VAEBase | None, limits: Settings) -> tuple[ImageSet | None, str, str]:
    names = limits.datasets()                # the largest sets stay with the command line
    name = sb.selectbox("Dataset", names, key="dataset", help="\n".join(
        f"- **{n}**: {DATASETS[n].description}" for n in names))
    split = sb.selectbox("Split", SPLITS, key="split")
    if model is None:
        return None, "", ""
    data = loaders.load_data(name, split)
    c, h, w = model.config.in_shape
    key = f"{name}:{split}"
    if tuple(data.shape) != (c, h, w):
        shape = "x".join(map(str, data.shape))
        if not sb.checkbox("Resize the dataset to the model", key="resize_data",
                           help=f"Resize {name}'s {shape} images to the {c}x{h}x{w} the model reads."):
            # One message, on the page that needs the data (Context.require_data); the sidebar has the box.
            return None, key, (f"The model expects {c}x{h}x{w} images but {name} has {shape}. In the sidebar, pick "
                               "a dataset of that shape, or tick \"Resize the dataset to the model\" under Split.")
        limits.check_resize(len(data), (c, h, w))
        data, key = loaders.resized_data(name, split, h, c), f"{key}:{c}x{h}x{w}"
    if model.num_classes and data.labels is None:
        return None, key, f"This conditional model needs class labels, and {name} has none; pick a labelled dataset."
    return data, key, ""


CARD_METRICS_NOTE = ("Written when the model was trained: on the held-out test split of the data it was trained on "
                     "(up to 2,000 images), one posterior sample per image. Analyze measures the dataset and split "
                     "chosen above, on its own seeded sample of images (its Images to analyse and Seed): its numbers "
                     "differ from these by the split, the images and the sampling noise.")


def _summary(sb, ctx: Context) -> None:
    s = loaders.model_summary(ctx.model_key, ctx.model, ctx.info)
    shape = "x".join(map(str, s["latent_shape"]))
    lines = [f"**{s['family']}** VAE, latent {shape}, {s['params']:,} parameters"]
    if s["num_classes"]:
        lines.append(f"conditional on {s['num_classes']} classes")
    if s["trained_on"]:
        lines.append(f"trained on {literal(s['trained_on'])}")       # a model card's words
    sb.markdown(" · ".join(lines))
    if s["metrics"]:
        with sb.expander("Model card metrics"):
            st.markdown("| metric | value |\n|---|---|\n" + "\n".join(
                f"| {literal(metric_label(k))} | {literal(v)} |" for k, v in s["metrics"].items()))
            st.caption(CARD_METRICS_NOTE)


def sidebar() -> Context:
    """Draw the shared sidebar; its result is kept for the page of this run."""
    sb = st.sidebar
    limits = settings()
    ctx = Context(device=str(vae_core.pick_device()))
    try:
        ctx.model, ctx.info, ctx.model_error = _model_picker(sb, limits)
    except vae_core.VAEError as e:
        ctx.model_error = str(e)
    if ctx.model is not None:
        ctx.device = str(ctx.model.device)
        _summary(sb, ctx)
    elif ctx.model_error == prompt(st.session_state.get("model_kind", "")):
        sb.caption(ctx.model_error)             # nothing typed yet: a hint, not an error
    elif ctx.model_error:
        sb.error(literal(ctx.model_error))      # it may quote a visitor's Hub id or folder
        ctx.model_error_shown = True            # the page points here rather than saying it again
    _follow_the_model(ctx.info, limits)
    try:
        ctx.data, ctx.data_key, ctx.data_error = _dataset_picker(sb, ctx.model, limits)
    except vae_core.VAEError as e:
        ctx.data_error = str(e)
    job = st.session_state.get("train_job")
    if job is not None:
        job.touch()                          # this session is alive: its run goes on
    if limits.public and "train_private" in st.session_state:
        private_runs(limits.session_timeout).touch(session_id())     # and its private run folder stays
    st.session_state[CONTEXT_KEY] = ctx
    return ctx
