"""Cached loaders: one copy of each model, dataset and per-model statistic for the whole process.

Models are shared read-only by every session (``st.cache_resource``): every use is inference,
and training works on its own model. Each model comes with its ``ModelInfo``, whose key names
it in every cache below; two different models never share a key.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch

import vae_core
from vae_core import ImageSet, ModelInfo, VAEBase, directions, explore

MAX_MODELS = 16
MAX_DATASETS = 16
LOCAL_NUDGES = 4       # nudged codes a local direction's stability is measured on


@st.cache_resource(show_spinner="Loading the model...", max_entries=MAX_MODELS)
def load_model(source: str, revision: str, device: str, stamp: float) -> tuple[VAEBase, ModelInfo]:
    """``stamp`` (the weights' modification time for a folder) reloads a folder that changed."""
    model, info = vae_core.open_model(source, device=device, revision=revision or None)
    for p in model.parameters():
        p.requires_grad_(False)             # shared between sessions: inference only
    return model, info


def folder_stamp(source: str) -> float:
    """The modification time of a folder's weights, so an edited run folder is loaded afresh."""
    weights = Path(source).expanduser() / "model.safetensors"
    try:
        return weights.stat().st_mtime if weights.is_file() else 0.0
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Loading the dataset...", max_entries=MAX_DATASETS)
def load_data(name: str, split: str, image_size: int = 0, channels: int = 0) -> ImageSet:
    return vae_core.load_dataset(name, split, image_size=image_size, channels=channels)


@st.cache_data(ttl=30, show_spinner=False)
def shipped_checkpoints() -> list[str]:
    return vae_core.shipped_checkpoints()


@st.cache_resource(show_spinner="Measuring the latent units...", max_entries=32)
def unit_stats(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet | None) -> explore.UnitStats:
    if _data is None or (_model.num_classes and _data.labels is None):
        return explore.UnitStats.uniform(explore.num_units(_model))
    return explore.unit_stats(_model, _data)


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
