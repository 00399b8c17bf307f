"""Public mode and the server's budgets, from the environment, each validated: a bad value stops the
server with a message that names it, never silently switches a limit off.

    VAE_EXPLORER_PUBLIC              1 on a public server (the Docker Space sets it): models only from the
                                     shipped checkpoints and Hub ids, no local paths, no server token,
                                     trained runs private to their session, no error details (default 0)
    VAE_EXPLORER_MAX_EPOCHS          most epochs one run in the app may ask for (default 50)
    VAE_EXPLORER_MAX_SECONDS         most seconds of training one run may take (default 300)
    VAE_EXPLORER_MAX_JOBS            most runs training at once on the server (default 2)
    VAE_EXPLORER_MAX_JOBS_PER_SESSION  most runs training at once for one visitor: all the tabs of one client
                                     address count together (default 1)
    VAE_EXPLORER_MAX_RUNS            script runs the server computes at once, all sessions together; the
                                     others wait their turn (default 4)
    VAE_EXPLORER_PROXY_HOPS          proxies in front of the server that append to X-Forwarded-For: the
                                     visitor's address is that many entries from its right (earlier ones are
                                     the client's own to write); 0 uses the connection's address (default 0;
                                     the Docker Space sets 1)
    VAE_EXPLORER_RUNS_DIR            where "save as run folder" writes when not public (default ./runs)
    VAE_EXPLORER_TORCH_THREADS       torch's intra-op threads in the server (default 0: torch's own
                                     choice; the Docker Space sets 1 so sessions do not oversubscribe)
    VAE_EXPLORER_SESSION_TIMEOUT     seconds a run (and a public session's files) outlive the session (default 120)

Budgets, each checked before anything is allocated (what a visitor's input can make the server do):

    VAE_EXPLORER_MAX_REQUEST_GFLOP   work of one request, from the model's measured FLOPs per image (a forward
                                     of one image under torch's FLOP counter, once per model) times the
                                     images it encodes or decodes (default 1,000: 40-60 s of one core here)
    VAE_EXPLORER_SESSION_CPU_SECONDS  CPU-seconds one session may use (its script runs and its background
                                     jobs) over the last VAE_EXPLORER_CPU_WINDOW_S seconds; a request whose
                                     estimated work would pass it is refused (default 300 over 600)

    VAE_EXPLORER_MAX_OUTPUT_PIXELS   values (C x H x W) of one decoded image; a larger model is refused
                                     at load (default 196,608: 3 x 256 x 256)
    VAE_EXPLORER_MAX_REQUEST_PIXELS  images x values per image in one request: a sample grid, a traversal,
                                     the manifold, an interpolation or its GIF, the images an analysis
                                     encodes. A model's values per image are its decoder's widest layer
                                     when that is wider than the image (default 33,554,432)
    VAE_EXPLORER_MAX_ENCODE_VALUES   images x values per image that one map encodes (in batches, so this
                                     bounds its time, not its memory) (default 536,870,912)
    VAE_EXPLORER_MAX_MAP_POINTS      points of a PCA or UMAP map drawn point by point in the browser
                                     (WebGL) (default 20,000)
    VAE_EXPLORER_MAX_RASTER_POINTS   points of a PCA map drawn on the server as a density raster, above
                                     the WebGL budget (default 200,000)
    VAE_EXPLORER_MAX_TSNE_POINTS     points of a t-SNE map, the slowest method (default 5,000)
    VAE_EXPLORER_MAX_THUMB_POINTS    points of a map whose images are sent as one sheet of thumbnails for its
                                     hover tooltip; a larger map shows none (default 10,000)
    VAE_EXPLORER_MAX_IWAE_VALUES     images x importance samples x values per image of an IWAE estimate
                                     (default 1,073,741,824)
    VAE_EXPLORER_MAX_DISENTANGLEMENT_IMAGES  images the disentanglement metrics encode (default 150,000)
    VAE_EXPLORER_MAX_DATASET_MB      a dataset the server holds (the Train page's choices, the sidebar's,
                                     and a dataset resized to a model) (default 256)
    VAE_EXPLORER_MAX_DATASETS_MB     all the datasets a server holds for its visitors, as loaded and as resized
                                     to a model; the least recently used is dropped first (default 1024)
    VAE_EXPLORER_MAX_MODELS_MB       the weights of the models a server keeps loaded for its visitors; the
                                     least recently used is dropped first (default 2048)
    VAE_EXPLORER_MAX_DOWNLOAD_MB     the files of one Hub model (default 512)
    VAE_EXPLORER_MAX_CACHE_MB        all Hub models on the public server's disk; the least recently used
                                     are removed to make room (default 4096)
    VAE_EXPLORER_HUB_TIMEOUT         seconds one Hub request may wait for the server (default 10)
    VAE_EXPLORER_HUB_FETCH_TIMEOUT   seconds a whole Hub fetch may take before it is given up (default 120)
    VAE_EXPLORER_MAX_SESSION_RUNS    runs one public session keeps saved on the server's disk; saving one
                                     more replaces the oldest (default 3)
    VAE_EXPLORER_MAX_SESSION_DISK_MB  bytes of one public session's saved runs on the server (default 256)
    VAE_EXPLORER_MAX_UPLOAD_FILES    files one session holds uploaded at once; one more is refused at its
                                     upload (default 6: Interpolate's three inputs, twice)
    VAE_EXPLORER_MAX_UPLOAD_MB       bytes of the files one session holds uploaded (default 15)
    VAE_EXPLORER_MAX_UNIT_SLIDERS    sliders Traverse draws for single latent units: a model with more units
                                     shows its most informative (by KL) and a picker for the rest (default 64)
    VAE_EXPLORER_MAX_UPLOAD_PIXELS   pixels an uploaded image is decoded to: a larger one is reduced by a whole
                                     factor, at decode where its format allows (default 1,048,576)
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import streamlit as st

from explorer import usage
from vae_core import VAEError
from vae_core.latent import projections as project
from vae_core.data import DATASETS, app_datasets
from vae_core.evaluation.disentanglement import images_needed
from vae_core.training.live import TrainingLimits
from vae_core.settings import LoadPolicy

RUN_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,63}")
MB = 2 ** 20
MIN_GRID = 16               # images a model must fit in one request's work to be opened (a 4x4 sample grid)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


# Each number the environment may set: field -> (variable, type, unit); the field's default stands when it is unset.
ENV_NUMBERS = MappingProxyType({
    "max_epochs": ("VAE_EXPLORER_MAX_EPOCHS", int, 1),
    "max_seconds": ("VAE_EXPLORER_MAX_SECONDS", float, 1),
    "max_jobs": ("VAE_EXPLORER_MAX_JOBS", int, 1),
    "max_jobs_per_session": ("VAE_EXPLORER_MAX_JOBS_PER_SESSION", int, 1),
    "torch_threads": ("VAE_EXPLORER_TORCH_THREADS", int, 1),
    "session_timeout": ("VAE_EXPLORER_SESSION_TIMEOUT", float, 1),
    "max_output_pixels": ("VAE_EXPLORER_MAX_OUTPUT_PIXELS", int, 1),
    "max_request_pixels": ("VAE_EXPLORER_MAX_REQUEST_PIXELS", int, 1),
    "max_encode_values": ("VAE_EXPLORER_MAX_ENCODE_VALUES", int, 1),
    "max_map_points": ("VAE_EXPLORER_MAX_MAP_POINTS", int, 1),
    "max_raster_points": ("VAE_EXPLORER_MAX_RASTER_POINTS", int, 1),
    "max_tsne_points": ("VAE_EXPLORER_MAX_TSNE_POINTS", int, 1),
    "max_thumb_points": ("VAE_EXPLORER_MAX_THUMB_POINTS", int, 1),
    "max_iwae_values": ("VAE_EXPLORER_MAX_IWAE_VALUES", int, 1),
    "max_disentanglement_images": ("VAE_EXPLORER_MAX_DISENTANGLEMENT_IMAGES", int, 1),
    "max_dataset_bytes": ("VAE_EXPLORER_MAX_DATASET_MB", int, MB),
    "max_models_bytes": ("VAE_EXPLORER_MAX_MODELS_MB", int, MB),
    "max_datasets_bytes": ("VAE_EXPLORER_MAX_DATASETS_MB", int, MB),
    "max_download_bytes": ("VAE_EXPLORER_MAX_DOWNLOAD_MB", int, MB),
    "max_cache_bytes": ("VAE_EXPLORER_MAX_CACHE_MB", int, MB),
    "hub_timeout": ("VAE_EXPLORER_HUB_TIMEOUT", float, 1),
    "hub_fetch_timeout": ("VAE_EXPLORER_HUB_FETCH_TIMEOUT", float, 1),
    "max_session_runs": ("VAE_EXPLORER_MAX_SESSION_RUNS", int, 1),
    "max_session_disk_bytes": ("VAE_EXPLORER_MAX_SESSION_DISK_MB", int, MB),
    "max_upload_files": ("VAE_EXPLORER_MAX_UPLOAD_FILES", int, 1),
    "max_upload_bytes": ("VAE_EXPLORER_MAX_UPLOAD_MB", int, MB),
    "max_upload_pixels": ("VAE_EXPLORER_MAX_UPLOAD_PIXELS", int, 1),
    "max_unit_sliders": ("VAE_EXPLORER_MAX_UNIT_SLIDERS", int, 1),
    "proxy_hops": ("VAE_EXPLORER_PROXY_HOPS", int, 1),
    "max_runs": ("VAE_EXPLORER_MAX_RUNS", int, 1),
    "max_request_flops": ("VAE_EXPLORER_MAX_REQUEST_GFLOP", int, 10 ** 9),
    "session_cpu_seconds": ("VAE_EXPLORER_SESSION_CPU_SECONDS", float, 1),
    "cpu_window": ("VAE_EXPLORER_CPU_WINDOW_S", float, 1),
})
ZERO_OK = frozenset({"torch_threads", "proxy_hops"})     # 0 means "torch's own choice" / "no proxy"


def _env_number(env: Mapping[str, str], name: str, kind, unit: int, zero_ok: bool):
    """``name``'s value in ``env`` times ``unit`` (None when unset), refused unless finite and above zero (or zero
    where ``zero_ok``): a ``nan`` or ``inf`` cannot switch a budget off."""
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise VAEError(f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}; "
                       "fix the server's environment.") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise VAEError(f"{name} must be a finite number {'of zero or more' if zero_ok else 'above zero'}, "
                       f"got {raw!r}; fix the server's environment.")
    return value * unit


@dataclasses.dataclass(frozen=True)
class Settings:
    max_epochs: int = 50
    max_seconds: float = 300.0
    max_jobs: int = 2
    max_jobs_per_session: int = 1
    runs_dir: Path = Path("runs")
    torch_threads: int = 0
    session_timeout: float = 120.0
    public: bool = False
    max_output_pixels: int = 3 * 256 * 256
    max_request_pixels: int = 2 ** 25
    max_encode_values: int = 2 ** 29
    max_map_points: int = 20_000
    max_raster_points: int = 200_000
    max_tsne_points: int = 5_000
    max_thumb_points: int = 10_000
    max_iwae_values: int = 2 ** 30
    max_disentanglement_images: int = 150_000
    max_dataset_bytes: int = 256 * MB
    max_models_bytes: int = 2048 * MB
    max_datasets_bytes: int = 1024 * MB
    max_download_bytes: int = 512 * MB
    max_cache_bytes: int = 4096 * MB
    hub_timeout: float = 10.0
    hub_fetch_timeout: float = 120.0
    max_session_runs: int = 3
    max_session_disk_bytes: int = 256 * MB
    max_upload_files: int = 6
    max_upload_bytes: int = 15 * MB
    max_upload_pixels: int = 1024 * 1024
    max_unit_sliders: int = 64
    proxy_hops: int = 0
    max_runs: int = 4
    max_request_flops: int = 1000 * 10 ** 9
    session_cpu_seconds: float = 300.0
    cpu_window: float = 600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        public = env.get("VAE_EXPLORER_PUBLIC", "").strip().lower()
        if public not in TRUE + FALSE:
            raise VAEError(f"VAE_EXPLORER_PUBLIC={public!r} is neither 1 nor 0; fix the server's environment.")
        values = {f: _env_number(env, name, kind, unit, f in ZERO_OK)
                  for f, (name, kind, unit) in ENV_NUMBERS.items()}
        out = cls(runs_dir=Path(env.get("VAE_EXPLORER_RUNS_DIR") or cls.runs_dir), public=public in TRUE,
                  **{f: v for f, v in values.items() if v is not None})
        if out.max_dataset_bytes > out.max_datasets_bytes:
            raise VAEError("VAE_EXPLORER_MAX_DATASET_MB is larger than VAE_EXPLORER_MAX_DATASETS_MB: one dataset "
                           "could never be held; fix the server's environment.")
        for big, small in (("CACHE", out.max_cache_bytes), ("MODELS", out.max_models_bytes)):
            if out.max_download_bytes > small:
                raise VAEError(f"VAE_EXPLORER_MAX_DOWNLOAD_MB is larger than VAE_EXPLORER_MAX_{big}_MB: one model "
                               "could never fit; fix the server's environment.")
        return out

    @property
    def training(self) -> TrainingLimits:
        return TrainingLimits(self.max_epochs, self.max_seconds, self.session_timeout)

    @property
    def load_policy(self) -> LoadPolicy:
        """What opening a model may reach and cost on this server (vae_core.open_model's policy)."""
        return LoadPolicy(local_paths=not self.public, use_token=not self.public,
                          max_output_pixels=self.max_output_pixels, max_decode_values=self.max_request_pixels,
                          max_download_bytes=self.max_download_bytes,
                          max_cache_bytes=self.max_cache_bytes if self.public else 0,
                          request_timeout=self.hub_timeout, fetch_timeout=self.hub_fetch_timeout)

    def run_folder(self, name: str) -> Path:
        """The folder a saved run of this name goes to: inside the runs folder, never outside it."""
        if not RUN_NAME.fullmatch(name or ""):
            raise VAEError(f"{name!r} is not a usable folder name: use letters, digits, '.', '_' and '-' "
                           "(up to 64 characters).")
        return self.runs_dir / name

    # -- budgets ---------------------------------------------------------------------------------
    def datasets(self) -> list[str]:
        """The registered datasets this server offers: those a shared process may hold in memory."""
        return [n for n in app_datasets() if DATASETS[n].nbytes <= self.max_dataset_bytes]

    def check_dataset(self, name: str) -> None:
        if name not in self.datasets():
            raise VAEError(f"{name!r} is not offered on this server: its datasets are {', '.join(self.datasets())} "
                           f"(each at most {self.max_dataset_bytes // MB:,} MB in memory, "
                           "VAE_EXPLORER_MAX_DATASET_MB).")

    def check_resize(self, images: int, in_shape) -> None:
        """A dataset of ``images`` images resized to ``in_shape`` (held as uint8)."""
        size = images * math.prod(in_shape)
        if size > self.max_dataset_bytes:
            raise VAEError(f"Resizing these {images:,} images to {'x'.join(map(str, in_shape))} would take "
                           f"{size / MB:,.0f} MB; this server holds datasets of at most "
                           f"{self.max_dataset_bytes // MB:,} MB (VAE_EXPLORER_MAX_DATASET_MB). Pick a smaller "
                           "dataset or split, or a model for smaller images.")

    def max_images(self, model) -> int:
        """The most images of ``model`` one request may decode or encode: within its values and its work
        (opening Traverse on a wide model encoded 1,000 images for its unit statistics: 79 s)."""
        return max(0, min(self.max_request_pixels // _cost(model), self.max_request_flops // max(usage.work_cost(model))))

    def check_images(self, model, n: int, what: str = "images") -> None:
        """``n`` images of ``model`` decoded (or encoded) in one request."""
        cost = _cost(model)
        if n * cost > self.max_request_pixels:
            raise VAEError(f"{n:,} {what} of this model would be {n * cost:,} values ({cost:,} per image); this server "
                           f"allows {self.max_request_pixels:,} a request (VAE_EXPLORER_MAX_REQUEST_PIXELS), so at "
                           f"most {self.max_images(model):,} {what}. Ask for fewer.")
        self.check_work(max(usage.work_cost(model)) * n, f"{n:,} {what}")

    def check_animation(self, frames: int, shape, scale: int) -> None:
        """A GIF of ``frames`` frames of ``shape`` (C, H, W) images, each pixel drawn ``scale`` x ``scale``."""
        c, h, w = shape
        values = frames * c * h * w * scale * scale
        if values > self.max_request_pixels:
            raise VAEError(f"An animation of {frames} frames of {h * scale}x{w * scale} pixels would be {values:,} "
                           f"values; this server allows {self.max_request_pixels:,} a request "
                           "(VAE_EXPLORER_MAX_REQUEST_PIXELS). Use fewer steps.")

    def max_points(self, method: str) -> int:
        """The most points a map by ``method`` (pca, tsne, umap, codes) may have: PCA and a 2-D latent's
        own codes go on as a density raster above the WebGL budget."""
        if method == "tsne":
            return self.max_tsne_points
        return self.max_map_points if method == "umap" else max(self.max_map_points, self.max_raster_points)

    def raster(self, n: int) -> bool:
        """Whether a map of ``n`` points is drawn on the server as a density raster."""
        return n > self.max_map_points

    def check_points(self, model, n: int, method: str) -> None:
        """A map of ``n`` codes by ``method`` (pca, tsne, umap, codes): the points, and the images encoded."""
        limit = self.max_points(method)
        if n > limit:
            shown = project.METHODS.get(method, method)
            if method == "tsne":
                why = f"({limit:,}, VAE_EXPLORER_MAX_TSNE_POINTS); choose fewer points or another method."
            elif method == "umap":
                why = (f"({limit:,}, VAE_EXPLORER_MAX_MAP_POINTS); above that the map is a density raster, "
                       "drawn with PCA: choose PCA, or fewer points.")
            else:
                why = f"({limit:,}, VAE_EXPLORER_MAX_RASTER_POINTS); choose fewer points."
            raise VAEError(f"{n:,} points are more than this server maps with {shown} {why}")
        cost = _cost(model)
        if n * cost > self.max_encode_values:
            most = self.max_encode_values // cost
            raise VAEError(f"Mapping {n:,} images of this model encodes {n * cost:,} values ({cost:,} per image); "
                           f"this server encodes at most {self.max_encode_values:,} for one map "
                           f"(VAE_EXPLORER_MAX_ENCODE_VALUES), so at most {most:,} points. Choose fewer points.")
        self.check_work(usage.work_cost(model).encode * n, f"encoding {n:,} images for a map")

    def check_iwae(self, model, n: int, k: int) -> None:
        """An IWAE estimate over ``n`` images with ``k`` importance samples each: n x k decodes."""
        cost = _cost(model)
        if n * k * cost > self.max_iwae_values:
            most = self.max_iwae_values // cost
            raise VAEError(f"An IWAE estimate over {n:,} images with k = {k:,} decodes {n * k:,} images "
                           f"({n * k * cost:,} values); this server allows {self.max_iwae_values:,} "
                           f"(VAE_EXPLORER_MAX_IWAE_VALUES), so n x k at most {most:,} for this model. Lower k or "
                           "the number of images.")
        flops = usage.work_cost(model)
        self.check_work(n * (flops.encode + k * flops.decode), f"an IWAE estimate over {n:,} images with k = {k:,}")

    def check_model_work(self, model) -> None:
        """A model is opened only if a small grid of it fits one request's work: the widest model a visitor can
        load is decided by its cost per image, not only by its parameters."""
        per_image = max(usage.work_cost(model))
        if per_image * MIN_GRID > self.max_request_flops:
            raise VAEError(f"One image of this model takes about {per_image / 1e9:,.1f} GFLOP to decode or encode; "
                           f"this server allows {self.max_request_flops / 1e9:,.0f} GFLOP a request "
                           f"(VAE_EXPLORER_MAX_REQUEST_GFLOP), less than a grid of {MIN_GRID}. Choose a smaller model.")

    def check_work(self, flops: int, what: str, session: str | None = None) -> None:
        """Work of ``flops`` for ``what``: within one request's budget, and within what this session may
        still use of the server's CPU over the window (its measured CPU-seconds so far plus this estimate)."""
        if flops > self.max_request_flops:
            raise VAEError(f"{what[:1].upper() + what[1:]} would take about {flops / 1e9:,.0f} GFLOP of work on "
                           f"this server; one request may take {self.max_request_flops / 1e9:,.0f} "
                           "(VAE_EXPLORER_MAX_REQUEST_GFLOP). Ask for fewer images or samples.")
        session = usage.live_session() if session is None else session
        if not session:
            return
        used = usage.cpu_ledger().used(session, self.cpu_window)
        needs = flops / usage.server_flops_per_second()
        if used + needs > self.session_cpu_seconds:
            raise VAEError(f"This session has used {used:,.0f} CPU-seconds of this shared server in the last "
                           f"{self.cpu_window:,.0f} s, and {what} needs about {needs:,.0f} more; a session may use "
                           f"{self.session_cpu_seconds:,.0f} (VAE_EXPLORER_SESSION_CPU_SECONDS). Wait a few minutes "
                           "or ask for less.")

    def check_disentanglement(self, scale: float) -> None:
        needed = images_needed(scale=scale)
        if needed > self.max_disentanglement_images:
            raise VAEError(f"The disentanglement metrics at {scale:g} of the default sample counts encode {needed:,} "
                           f"images; this server allows {self.max_disentanglement_images:,} "
                           "(VAE_EXPLORER_MAX_DISENTANGLEMENT_IMAGES). Choose a smaller share.")


SERVER_PATH = re.compile(r"(?<![\w:/.~-])/[\w.@+-]+(?:/[\w.@+-]*)*")


def public_text(s: Settings, text: str) -> str:
    """A message as a visitor of this server may read it: in public mode every absolute path on the
    server (a private folder, a cache, a temporary file) is replaced by "a folder of the server"."""
    return SERVER_PATH.sub("a folder of the server", text) if s.public else text


def _cost(model) -> int:
    """Values one image of ``model`` holds while it is decoded (at least its pixels)."""
    return max(1, model.config.decode_values())


def configure_streamlit(s: Settings) -> None:
    """Public mode: Streamlit shows no error details at all, so nothing internal reaches a page even by
    mistake (every page's guard already turns errors into one line; this is the net under it)."""
    if s.public:
        if st.get_option("client.showErrorDetails") != "none":
            st.set_option("client.showErrorDetails", "none")


def settings() -> Settings:
    """This server's settings, read afresh (a dozen environment lookups: cheap on every rerun)."""
    return Settings.from_env()
