"""Cached loaders: one copy of each model, dataset and per-model statistic for the whole process.

Models are shared read-only by every session: every use is inference, and training works on its
own model. They are kept in a ``ModelCache`` (one per server) that holds at most
VAE_EXPLORER_MAX_MODELS_MB of weights, the least recently used leaving first, so visitors opening
one Hub model after another cannot fill the server's memory. Each model comes with its
``ModelInfo``, whose key names it in every cache below; two different models never share a key.
"""
from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any, Callable, Hashable

import streamlit as st
import torch

import vae_core
from vae_core import ImageSet, ModelInfo, VAEBase
from vae_core.latent import directions, explore
from vae_core.settings import LoadPolicy

MAX_MODELS = 16
MAX_DATASETS = 16
DEFAULT_MODELS_BYTES = 2 * 1024 ** 3
MAX_RESULTS = 64                # results (maps, analyses) the server keeps for every session
LOCAL_NUDGES = 4       # nudged codes a local direction's stability is measured on


class ResultCache:
    """A small least-recently-used map of results; it owns its lock."""

    def __init__(self, size: int = MAX_RESULTS):
        self.size = size
        self._items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value):
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]):
        """The cached value, or ``compute()`` (run by the caller, outside the lock) stored under ``key``."""
        missing = object()
        hit = self.get(key, missing)
        return hit if hit is not missing else self.put(key, compute())


def model_bytes(loaded: tuple[VAEBase, ModelInfo]) -> int:
    """Bytes of a loaded model's tensors (its parameters and buffers)."""
    return sum(t.numel() * t.element_size() for t in [*loaded[0].parameters(), *loaded[0].buffers()])


def data_bytes(data: ImageSet) -> int:
    """Bytes of a dataset's tensors (its images, labels and factors)."""
    return sum(t.numel() * t.element_size() for t in (data.images, data.labels, data.factors) if t is not None)


class ModelCache:
    """Loaded things (models, datasets) by key, the least recently used dropped once they hold more than
    ``max_bytes`` (``size(value)``) or number more than ``max_models``; owns its lock. A value is loaded once:
    a second session asking for one being loaded waits for it."""

    def __init__(self, max_bytes: int = DEFAULT_MODELS_BYTES, max_models: int = MAX_MODELS,
                 size: Callable[[Any], int] = model_bytes, idle_s: float = 0.0, clock=time.monotonic):
        self.max_bytes, self.max_models, self.size, self.idle_s, self.clock = max_bytes, max_models, size, idle_s, clock
        self._items: collections.OrderedDict[Hashable, tuple[Any, int]] = collections.OrderedDict()
        self._used: dict[Hashable, float] = {}           # key -> when a run last asked for it
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(n for _, n in self._items.values())

    def drop_idle(self) -> int:
        """Drop what no run has asked for in ``idle_s`` seconds (its sessions have gone: each run of a session
        asks again); returns how many. The memory comes back once no session holds a reference."""
        if not self.idle_s:
            return 0
        with self._lock:
            idle = [k for k in self._items if self.clock() - self._used.get(k, 0.0) > self.idle_s]
            for k in idle:
                del self._items[k]
                self._used.pop(k, None)
        if idle:
            from vae_core import memory

            memory.release()
        return len(idle)

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        self.drop_idle()
        with self._lock:
            self._used[key] = self.clock()
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:
                    return self._items[key][0]
            try:
                value = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            size = self.size(value)
            with self._lock:
                self._items[key] = (value, size)
                self._used[key] = self.clock()
                while len(self._items) > 1 and (len(self._items) > self.max_models or
                                                sum(n for _, n in self._items.values()) > self.max_bytes):
                    self._used.pop(self._items.popitem(last=False)[0], None)   # its sessions keep their reference
            return value


@st.cache_resource
def model_cache(max_bytes: int, idle_s: float = 0.0) -> ModelCache:
    """The server's loaded models (one cache for each memory budget), dropped once idle for the session
    time-out (their sessions have gone)."""
    return ModelCache(max_bytes, idle_s=idle_s)


def load_model(source: str, revision: str, device: str, stamp: float, policy: LoadPolicy = LoadPolicy(),
               max_bytes: int = DEFAULT_MODELS_BYTES) -> tuple[VAEBase, ModelInfo]:
    """``stamp`` (the weights' modification time for a folder) reloads a folder that changed; ``policy``
    (explorer.limits) says what a source may name and what a model may cost on this server."""
    from explorer.limits import settings

    cache, key = model_cache(max_bytes, settings().session_timeout), (source, revision, device, stamp, policy)

    def load():
        model, info = vae_core.open_model(source, device=device, revision=revision or None, policy=policy)
        for p in model.parameters():
            p.requires_grad_(False)             # shared between sessions: inference only
        from explorer.limits import settings

        settings().check_model_work(model)      # its FLOPs per image, measured once: a grid must fit a request
        return model, info

    if key in cache:
        return cache.get(key, load)
    with st.spinner("Loading the model..."):
        return cache.get(key, load)


def folder_stamp(source: str) -> float:
    """The modification time of a folder's weights, so an edited run folder is loaded afresh."""
    weights = Path(source).expanduser() / "model.safetensors"
    try:
        return weights.stat().st_mtime if weights.is_file() else 0.0
    except OSError:
        return 0.0


@st.cache_resource
def data_cache(max_bytes: int, idle_s: float = 0.0) -> ModelCache:
    """The server's datasets, as loaded and as resized to a model, within VAE_EXPLORER_MAX_DATASETS_MB in all
    (one cache for each budget), dropped once idle for the session time-out (their sessions have gone)."""
    return ModelCache(max_bytes, MAX_DATASETS, size=data_bytes, idle_s=idle_s)


@st.cache_resource
def resize_lock() -> threading.Lock:
    """One resize at a time on the server: each peaks at its result plus a few MB (vae_core.data.conform)."""
    return threading.Lock()


def _datasets() -> ModelCache:
    from explorer.limits import settings

    s = settings()
    return data_cache(s.max_datasets_bytes, s.session_timeout)


def load_data(name: str, split: str) -> ImageSet:
    cache, key = _datasets(), ("data", name, split)
    if key in cache:
        return cache.get(key, lambda: vae_core.load_dataset(name, split))
    with st.spinner("Loading the dataset..."):
        return cache.get(key, lambda: vae_core.load_dataset(name, split))


def resized_data(name: str, split: str, image_size: int, channels: int) -> ImageSet:
    """A dataset resized to a model (each within VAE_EXPLORER_MAX_DATASET_MB, checked by the caller), one
    resize at a time on the server, from the dataset as the server already holds it."""
    from vae_core.data import conform

    def resize() -> ImageSet:
        source = load_data(name, split)
        with resize_lock():
            return conform(source, image_size=image_size, channels=channels)

    cache, key = _datasets(), ("resized", name, split, image_size, channels)
    if key in cache:
        return cache.get(key, resize)
    with st.spinner("Resizing the dataset..."):
        return cache.get(key, resize)


@st.cache_data(ttl=30, show_spinner=False)
def shipped_checkpoints() -> list[str]:
    return vae_core.shipped_checkpoints()


@st.cache_resource(show_spinner="Measuring the latent units...", max_entries=32)
def unit_stats(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet | None, n: int = 1000,
               seed: int = 0) -> explore.UnitStats:
    """Measured on ``n`` images drawn with ``seed`` (``unit_sample`` picks both, the same for every page)."""
    if _data is None or (_model.num_classes and _data.labels is None) or n < 2:
        return explore.UnitStats.uniform(explore.num_units(_model))
    return explore.unit_stats(_model, _data, n=n, seed=seed)


@st.cache_resource(show_spinner="Averaging codes per class...", max_entries=64)
def attribute_vector(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet, to_class: int,
                     from_class: int) -> torch.Tensor:
    return explore.attribute_vector(_model, _data, to_class, from_class)


@st.cache_resource(show_spinner="Encoding images to find directions...", max_entries=16)
def direction_codes(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet) -> tuple[torch.Tensor, ImageSet]:
    return directions.dataset_codes(_model, _data)


@st.cache_resource(show_spinner="Finding directions and their bootstrap stability...", max_entries=64)
def data_directions(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet, kind: str, a: int = 0,
                    b: int = 1) -> tuple[directions.Direction, ...]:
    codes, sub = direction_codes(model_key, data_key, _model, _data)
    return tuple(directions.dataset_directions(codes, sub, kind, a=a, b=b))


@st.cache_resource(show_spinner="Finding where the decoded image changes most...", max_entries=64)
def local_directions(model_key: str, data_key: str, code_key: str, _model: VAEBase, _data: ImageSet | None,
                     _z: torch.Tensor, y: int | None) -> directions.LocalResult:
    """``code_key`` names ``_z`` (its bytes' hash): the directions at one code are found once."""
    codes = direction_codes(model_key, data_key, _model, _data)[0] if _data is not None else None
    return directions.local_directions(_model, _z, 3, y, codes=codes, nudges=LOCAL_NUDGES)


@st.cache_data(max_entries=64, show_spinner=False)
def model_summary(model_key: str, _model: VAEBase, _info: ModelInfo) -> dict:
    return {"family": _model.config.model_type, "latent_shape": list(_model.latent_shape),
            "params": sum(p.numel() for p in _model.parameters()),
            "in_shape": list(_model.config.in_shape), "num_classes": _model.num_classes,
            "trained_on": _info.trained_on, "metrics": _info.metrics}
