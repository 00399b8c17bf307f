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
from pathlib import Path
from typing import Callable, Hashable

import streamlit as st
import torch

import vae_core
from vae_core import ImageSet, ModelInfo, VAEBase
from vae_core.latent import directions, explore
from vae_core.settings import LoadPolicy

MAX_MODELS = 16
MAX_DATASETS = 16
MAX_RESIZED = 4                 # resized copies of datasets (each within VAE_EXPLORER_MAX_DATASET_MB)
DEFAULT_MODELS_BYTES = 2 * 1024 ** 3
LOCAL_NUDGES = 4       # nudged codes a local direction's stability is measured on


class ModelCache:
    """Loaded models by key, the least recently used dropped once they hold more than ``max_bytes`` of
    tensors (or number more than ``max_models``); owns its lock. A model is loaded once: a second
    session asking for one being loaded waits for it."""

    def __init__(self, max_bytes: int = DEFAULT_MODELS_BYTES, max_models: int = MAX_MODELS):
        self.max_bytes, self.max_models = max_bytes, max_models
        self._items: collections.OrderedDict[Hashable, tuple[VAEBase, ModelInfo, int]] = collections.OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(n for _, _, n in self._items.values())

    def get(self, key: Hashable, load: Callable[[], tuple[VAEBase, ModelInfo]]) -> tuple[VAEBase, ModelInfo]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][:2]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:
                    return self._items[key][:2]
            try:
                model, info = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
            with self._lock:
                self._items[key] = (model, info, size)
                while len(self._items) > 1 and (len(self._items) > self.max_models or
                                                sum(n for _, _, n in self._items.values()) > self.max_bytes):
                    self._items.popitem(last=False)          # sessions still using it keep their reference
            return model, info


@st.cache_resource
def model_cache(max_bytes: int) -> ModelCache:
    """The server's loaded models (one cache for each memory budget)."""
    return ModelCache(max_bytes)


def load_model(source: str, revision: str, device: str, stamp: float, policy: LoadPolicy = LoadPolicy(),
               max_bytes: int = DEFAULT_MODELS_BYTES) -> tuple[VAEBase, ModelInfo]:
    """``stamp`` (the weights' modification time for a folder) reloads a folder that changed; ``policy``
    (explorer.limits) says what a source may name and what a model may cost on this server."""
    cache, key = model_cache(max_bytes), (source, revision, device, stamp, policy)

    def load():
        model, info = vae_core.open_model(source, device=device, revision=revision or None, policy=policy)
        for p in model.parameters():
            p.requires_grad_(False)             # shared between sessions: inference only
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


@st.cache_resource(show_spinner="Loading the dataset...", max_entries=MAX_DATASETS)
def load_data(name: str, split: str) -> ImageSet:
    return vae_core.load_dataset(name, split)


@st.cache_resource(show_spinner="Resizing the dataset...", max_entries=MAX_RESIZED)
def resized_data(name: str, split: str, image_size: int, channels: int) -> ImageSet:
    """A dataset resized to a model: few kept, since each may be as large as the dataset budget allows."""
    return vae_core.load_dataset(name, split, image_size=image_size, channels=channels)


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
