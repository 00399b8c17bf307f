"""What every page of the explorer shares: cached loaders, the sidebar, images, and error handling.

Pages stay thin: they read widgets, call one vae_core function and draw. Models and datasets
are loaded once per process (``st.cache_resource``) and are read-only there: every use is
inference, and training works on its own model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import streamlit as st
import torch

import vae_core
from explorer_heap import imports_then_freeze
from vae_core import explore, hub, images, project
from vae_core.data import LARGE_DATASETS, ImageSet
from vae_core.models import VAEBase

SESSION_RUN = "This session's run"
MODEL_KINDS = ("Shipped", "Hub", "Folder")
SPLITS = ("all", "train", "test")
DEFAULT_MODEL = "mnist-mlp"


@dataclasses.dataclass
class Context:
    """The sidebar's choices, resolved: what every page works on."""

    model: VAEBase | None = None
    model_key: str = ""             # names the model in caches
    model_error: str = ""
    data: ImageSet | None = None
    data_key: str = ""
    data_error: str = ""
    device: str = "cpu"

    def require_model(self) -> VAEBase:
        if self.model is None:
            st.info(f"{self.model_error or 'No model loaded.'} Choose a working model in the sidebar.")
            st.stop()
        return self.model

    def require_data(self) -> ImageSet:
        self.require_model()
        if self.data is None:
            st.error(self.data_error or "No dataset loaded; choose one in the sidebar.")
            st.stop()
        return self.data


# ---------------------------------------------------------------------------------------------
# Errors: a VAEError is the user's to fix and says how; anything else is ours, shown in one line.


@contextlib.contextmanager
def guard(what: str = "This page"):
    try:
        yield
    except vae_core.VAEError as e:
        st.error(str(e))
        st.stop()
    except Exception as e:   # streamlit's stop and rerun are BaseExceptions and pass through
        first = str(e).splitlines()[0] if str(e) else ""
        st.error(f"{what} hit an unexpected problem ({type(e).__name__}{': ' + first if first else ''}). "
                 "Try other settings or another model; the rest of the app keeps working.")
        st.stop()


# ---------------------------------------------------------------------------------------------
# Cached loaders (one copy per process, shared read-only by every session)


@st.cache_resource(show_spinner="Loading the model...", max_entries=16)
def load_model(source: str, revision: str, device: str, stamp: float) -> VAEBase:
    """``stamp`` (the weights' modification time for a folder) reloads a folder that changed."""
    model = vae_core.load_model(source, device=device, revision=revision or None)
    for p in model.parameters():
        p.requires_grad_(False)             # shared between sessions: inference only
    return model


@st.cache_resource(show_spinner="Loading the dataset...", max_entries=16)
def load_data(name: str, split: str, image_size: int = 0, channels: int = 0) -> ImageSet:
    return vae_core.load_dataset(name, split, image_size=image_size, channels=channels)


@st.cache_resource(show_spinner="Measuring the latent units...", max_entries=32)
def unit_stats(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet | None) -> explore.UnitStats:
    if _data is None or (_model.num_classes and _data.labels is None):
        return explore.UnitStats.uniform(explore.num_units(_model))
    return explore.unit_stats(_model, _data)


@st.cache_resource(show_spinner="Averaging codes per class...", max_entries=64)
def attribute_vector(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet, to_class: int,
                     from_class: int) -> torch.Tensor:
    return explore.attribute_vector(_model, _data, to_class, from_class)


@st.cache_data(max_entries=64, show_spinner=False)
def model_summary(model_key: str, _model: VAEBase) -> dict:
    folder = getattr(_model, "folder", None)
    trained_on = ""
    if folder is not None and (Path(folder) / "training_config.json").is_file():
        try:
            trained_on = json.loads((Path(folder) / "training_config.json").read_text())["train"]["dataset"]
        except (ValueError, KeyError, TypeError, OSError):
            trained_on = ""
    metrics = hub.read_card_metrics(folder) if folder is not None else {}
    if not metrics and getattr(_model, "card_metrics", None):
        metrics = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in _model.card_metrics.items()}
    return {"family": _model.config.model_type, "latent_shape": list(_model.latent_shape),
            "params": sum(p.numel() for p in _model.parameters()),
            "in_shape": list(_model.config.in_shape), "num_classes": _model.num_classes,
            "trained_on": trained_on or getattr(_model, "trained_on", ""), "metrics": metrics}


@st.cache_data(ttl=30, show_spinner=False)
def shipped_checkpoints() -> list[str]:
    return vae_core.shipped_checkpoints()


@st.cache_resource
def _failures() -> dict:
    return {}


@st.cache_resource
def configure_torch() -> int:
    """Once per server process: torch's intra-op threads (VAE_EXPLORER_TORCH_THREADS).

    0 (the default) leaves torch's own choice, best for one user on a machine; a public host with
    many concurrent sessions sets 1 (the Dockerfile does), so sessions do not oversubscribe the cores.
    """
    from vae_core.live import Limits

    threads = Limits.from_env().torch_threads
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


WARM_UP_DELAY_S = 2.0


@st.cache_resource
def warm_up_thread() -> threading.Thread:
    """Once per server process, in the background: pay numba's compile cost for UMAP and import the
    plotting library the map, Train and Analyze pages draw with (explorer_heap.imports_then_freeze).

    app.py calls this after the first page is drawn, and the work waits WARM_UP_DELAY_S more: its
    imports hold the GIL for seconds, and the server must first send that page's images (their
    HTTP requests waited out the whole warm-up before: bench/startup.py)."""
    def run():
        time.sleep(WARM_UP_DELAY_S)
        with imports_then_freeze():
            project.start_warm_up().join()
            import plotly.graph_objects  # noqa: F401

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------------------------
# Work that outlives a rerun: encodings with a progress bar, and slow projections in a thread


class Store:
    """A small process-wide LRU of results, and one background worker for slow projections."""

    def __init__(self, size: int = 16):
        self.size = size
        self.items: dict = {}
        self.lock = threading.Lock()
        # Two workers, so one session's long t-SNE does not hold up another's UMAP.
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="projection")

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items[key] = self.items.pop(key)       # most recently used goes last
                return self.items[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.pop(next(iter(self.items)))
        return value

    def submit(self, key, fn, *args, **kwargs) -> Future:
        with self.lock:
            fut = self.items.get(key)
            if fut is None:
                fut = self.items[key] = self.pool.submit(fn, *args, **kwargs)
        return fut


@st.cache_resource
def store() -> Store:
    return Store()


def codes_for(ctx: Context, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior means of ``n`` images of the dataset (a fixed random subset), and their indices."""
    key = ("codes", ctx.model_key, ctx.data_key, n)
    hit = store().get(key)
    if hit is not None:
        return hit
    data = ctx.data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n].sort().values
    bar = st.progress(0.0, text=f"Encoding {n:,} images...")

    def tick(done, total):
        bar.progress(done / total, text=f"Encoding {n:,} images... {done:,}/{total:,}")

    codes = explore.encode_dataset(ctx.model, data.subset(idx), progress=tick)
    bar.empty()
    return store().put(key, (codes, idx))


# ---------------------------------------------------------------------------------------------
# The sidebar


def _stamp(source: str) -> float:
    weights = Path(source).expanduser() / "model.safetensors"
    try:
        return weights.stat().st_mtime if weights.is_file() else 0.0
    except OSError:
        return 0.0


def device_choices() -> list[str]:
    out = [str(vae_core.pick_device())]
    return out + [d for d in ("cpu",) if d not in out]


def _model_picker(sb) -> tuple[VAEBase | None, str, str]:
    trained = st.session_state.get("trained_model")
    kinds = list(MODEL_KINDS) + ([SESSION_RUN] if trained is not None else [])
    kind = sb.radio("Model source", kinds, key="model_kind", horizontal=True)
    device = sb.selectbox("Device", device_choices(), key="device",
                          help="The best available is first: CUDA, then Apple MPS, then the CPU.")
    if kind == SESSION_RUN:
        model, label = trained
        return model.to(device), f"session:{id(model)}:{device}", ""
    revision = ""
    if kind == "Shipped":
        names = shipped_checkpoints()
        if not names:
            return None, "", "No shipped checkpoints were found in checkpoints/."
        default = names.index(DEFAULT_MODEL) if DEFAULT_MODEL in names else 0
        source = sb.selectbox("Checkpoint", names, index=default, key="model_shipped")
    elif kind == "Hub":
        source = sb.text_input("Hub repo id", key="model_hub", placeholder="org/name").strip()
        revision = sb.text_input("Revision (optional)", key="model_revision", placeholder="main").strip()
    else:
        source = sb.text_input("Run folder", key="model_folder", placeholder="runs/my-run").strip()
    if not source:
        return None, "", f"Enter a {'Hub repo id (org/name)' if kind == 'Hub' else 'run folder path'}."
    key = f"{kind}:{source}@{revision}:{device}"
    failures = _failures()
    if key in failures:                      # do not hit the network again on every rerun
        if not sb.button("Retry", key="model_retry"):
            return None, key, failures[key]
        failures.pop(key, None)
    try:
        return load_model(source, revision, device, _stamp(source) if kind == "Folder" else 0.0), key, ""
    except vae_core.VAEError as e:
        failures[key] = str(e)
        return None, key, str(e)


def _dataset_picker(sb, model: VAEBase | None) -> tuple[ImageSet | None, str, str]:
    names = [n for n in vae_core.DATASETS if n not in LARGE_DATASETS]   # those stay with the CLI
    name = sb.selectbox("Dataset", names, key="dataset", help="\n".join(
        f"- **{n}**: {vae_core.DATASETS[n][1]}" for n in names))
    split = sb.selectbox("Split", SPLITS, key="split")
    if model is None:
        return None, "", ""
    data = load_data(name, split)
    c, h, w = model.config.in_shape
    key = f"{name}:{split}"
    if tuple(data.shape) != (c, h, w):
        msg = (f"The model expects {c}x{h}x{w} images but {name} has {'x'.join(map(str, data.shape))}. "
               "Pick a dataset of that shape, or resize this one to the model below.")
        if not sb.checkbox("Resize the dataset to the model", key="resize_data", help=msg):
            return None, key, msg
        data, key = load_data(name, split, h, c), f"{key}:{c}x{h}x{w}"
    if model.num_classes and data.labels is None:
        return None, key, f"This conditional model needs class labels, and {name} has none; pick a labelled dataset."
    return data, key, ""


def sidebar() -> Context:
    """Draw the shared sidebar; its result is kept for the page of this run."""
    sb = st.sidebar
    ctx = Context(device=str(vae_core.pick_device()))
    try:
        ctx.model, ctx.model_key, ctx.model_error = _model_picker(sb)
    except vae_core.VAEError as e:
        ctx.model_error = str(e)
    if ctx.model is not None:
        ctx.device = str(ctx.model.device)
        _summary(sb, ctx)
    elif ctx.model_error:
        sb.error(ctx.model_error)
    try:
        ctx.data, ctx.data_key, ctx.data_error = _dataset_picker(sb, ctx.model)
    except vae_core.VAEError as e:
        ctx.data_error = str(e)
    if ctx.data_error:
        sb.warning(ctx.data_error)
    sb.caption(f"Device in use: {ctx.device}")
    job = st.session_state.get("train_job")
    if job is not None:
        job.touch()                          # this session is alive: its run goes on
    st.session_state["_ctx"] = ctx
    return ctx


def session_alive():
    """A function that says whether this browser session is still connected (None outside a server).

    A training run started here is tied to it: once the tab is closed for longer than
    VAE_EXPLORER_SESSION_TIMEOUT, the run is stopped and its thread ends (vae_core.live)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    run_ctx = get_script_run_ctx()
    if not runtime.exists() or run_ctx is None:
        return None
    rt, session_id = runtime.get_instance(), run_ctx.session_id
    return lambda: rt.is_active_session(session_id) is True      # (AppTest's stand-in runtime answers a Mock)


def context() -> Context:
    """The sidebar's context for this run (drawing the sidebar if a page runs on its own)."""
    ctx = st.session_state.get("_ctx")
    return ctx if ctx is not None else sidebar()


def _summary(sb, ctx: Context) -> None:
    s = model_summary(ctx.model_key, ctx.model)
    shape = "x".join(map(str, s["latent_shape"]))
    lines = [f"**{s['family']}** VAE, latent {shape}, {s['params']:,} parameters"]
    if s["num_classes"]:
        lines.append(f"conditional on {s['num_classes']} classes")
    if s["trained_on"]:
        lines.append(f"trained on {s['trained_on']}")
    sb.markdown(" · ".join(lines))
    if s["metrics"]:
        with sb.expander("Model card metrics"):
            st.markdown("| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in s["metrics"].items()))


# ---------------------------------------------------------------------------------------------
# Drawing helpers


def scale_for(shape, target: int = 112) -> int:
    return max(1, target // max(shape[-1], 1))


def show_grid(x: torch.Tensor, nrow: int | None = None, caption: str | None = None, target: int = 56):
    """Show (B, C, H, W) images as one crisp grid; returns the PIL image (e.g. for a download)."""
    img = images.to_pil(images.grid(x, nrow), scale_for(x.shape, target))
    st.image(fast_png(img), caption=caption, output_format="PNG")
    return img


def fast_png(img) -> bytes:
    """PNG with light compression: a few times quicker to write than the default, which matters on a slider."""
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def class_picker(model: VAEBase, data: ImageSet | None, key: str, label: str = "Class",
                 default: int = 0) -> int | None:
    """A class selector for a conditional model (None for an unconditional one)."""
    if not model.num_classes:
        return None
    names = list(data.class_names) if data is not None and len(data.class_names) == model.num_classes else \
        [str(i) for i in range(model.num_classes)]
    return st.selectbox(label, range(model.num_classes), index=min(default, model.num_classes - 1),
                        format_func=lambda i: names[i], key=key)


# ---------------------------------------------------------------------------------------------
# Picking one image: from the dataset, an upload, or a drawing


def canvas_available() -> bool:
    try:
        import streamlit_drawable_canvas  # noqa: F401
    except ImportError:
        return False
    return True


def _random_index(key: str, n: int) -> None:
    """on_click: a new random index from a per-session generator (seeded by the click count)."""
    clicks = st.session_state.get(f"{key}_clicks", 0) + 1
    st.session_state[f"{key}_clicks"] = clicks
    gen = torch.Generator().manual_seed(clicks * 7919 + len(key))
    st.session_state[key] = int(torch.randint(n, (1,), generator=gen))


def _frame_count(data: bytes) -> int:
    """Frames in an upload that decode_image has already accepted (an animated GIF, PNG or WEBP: more than 1)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=images.ALLOWED_FORMATS) as probe:
            return int(getattr(probe, "n_frames", 1))
    except Exception:             # counting frames is a courtesy: the image itself decoded
        return 1


def image_input(slot: str, title: str, ctx: Context, default_index: int = 0):
    """Widgets for one image; returns (x (1, C, H, W) in [0, 1], label or None, caption), or None
    while the user has not given one yet."""
    model = ctx.require_model()
    sources = ["Dataset", "Upload"] + (["Draw"] if canvas_available() else [])
    st.markdown(f"**{title}**")
    source = st.radio("Source", sources, key=f"{slot}_source", horizontal=True, label_visibility="collapsed")
    if source == "Dataset":
        data = ctx.require_data()
        key = f"{slot}_index"
        st.session_state.setdefault(key, min(default_index, len(data) - 1))
        c1, c2 = st.columns([3, 1])
        i = int(c1.number_input("Index", 0, len(data) - 1, key=key))
        c2.button("Random", key=f"{slot}_random", on_click=_random_index, args=(key, len(data)))
        x = data.images[i:i + 1].float() / 255
        label = None if data.labels is None else int(data.labels[i])
        st.image(fast_png(images.to_pil(x[0], scale_for(x.shape, 84))), caption=f"image {i}", output_format="PNG")
        return x, label, f"image {i}"
    if source == "Upload":
        up = st.file_uploader("PNG or JPEG image", type=["png", "jpg", "jpeg", "gif", "bmp", "webp"],
                              key=f"{slot}_upload")
        if up is None:
            st.info("Upload an image: it is converted to the model's size and channels.")
            return None
        img = images.decode_image(up.getvalue())
        caption = f"upload {up.name}"
        frames = _frame_count(up.getvalue())
        if frames > 1:
            st.info(f"{up.name} is animated ({frames} frames); the first frame is used.")
    else:
        from streamlit_drawable_canvas import st_canvas

        result = st_canvas(key=f"{slot}_canvas", width=168, height=168, stroke_width=14, stroke_color="#ffffff",
                           background_color="#000000", return_image_data=True)
        if result.image_bytes is None or not result.json_data or not result.json_data.get("objects"):
            st.info("Draw on the canvas (light ink on dark, like MNIST).")
            return None
        img = images.decode_image(result.image_bytes)
        caption = "drawing"
    x = images.to_model_input(img, model.config.in_shape)
    st.image(fast_png(images.to_pil(x[0], scale_for(x.shape, 84))), caption="what the model sees", output_format="PNG")
    label = class_picker(model, ctx.data, f"{slot}_class", "Its class") if model.num_classes else None
    return x, label, caption


# ---------------------------------------------------------------------------------------------
# Latent maps: PCA at once; t-SNE and UMAP in the background while PCA is shown


def projection(ctx: Context, codes: torch.Tensor, method: str, params: dict):
    """2-D points for ``codes``, and the Future of a slow method still running (else None).

    While t-SNE or UMAP runs, the PCA map stands in for it. Results are kept per process,
    so a map already computed comes back at once, for every session.
    """
    base = ("map", ctx.model_key, ctx.data_key, len(codes))
    if method == "pca":
        key = (*base, "pca")
        hit = store().get(key)
        return (hit if hit is not None else store().put(key, project.pca(codes))), None
    key = (*base, method, tuple(sorted(params.items())))
    fut = store().submit(key, project.project, codes, method, **params)
    if fut.done():
        err = fut.exception()
        if err is not None:
            store().items.pop(key, None)             # let the next try run again
            if isinstance(err, vae_core.VAEError):
                raise err
            raise vae_core.VAEError(f"{project.METHODS[method]} failed ({type(err).__name__}: {err}); "
                                    "try other parameters or PCA.")
        return fut.result(), None
    return projection(ctx, codes, "pca", {})[0], fut


def selected_points(event) -> list[int]:
    """Dataset indices of the points selected on a Plotly chart (stored in customdata)."""
    out = []
    for p in (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
            getattr(getattr(event, "selection", None), "points", []) or []:
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            out.append(int(cd))
    return out


def parse_indices(text: str, limit: int = 64) -> list[int]:
    """'3, 17 42' -> [3, 17, 42]; anything else is a VAEError that says what is expected."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        out = [int(p) for p in parts]
    except ValueError:
        raise vae_core.VAEError(f"{text!r} is not a list of image indices; write them like 3, 17, 42.") from None
    return out[:limit]
