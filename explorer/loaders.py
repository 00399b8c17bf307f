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
from vae_core import ImageSet, ModelInfo, VAEBase, explore
from vae_core.settings import LoadPolicy

MAX_MODELS = 16
MAX_DATASETS = 16


@st.cache_resource(show_spinner="Loading the model...", max_entries=MAX_MODELS)
def load_model(source: str, revision: str, device: str, stamp: float,
               policy: LoadPolicy = LoadPolicy()) -> tuple[VAEBase, ModelInfo]:
    """``stamp`` (the weights' modification time for a folder) reloads a folder that changed; ``policy``
    (explorer.limits) says what a source may name and what a model may cost on this server."""
    model, info = vae_core.open_model(source, device=device, revision=revision or None, policy=policy)
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
def unit_stats(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet | None,
               max_images: int = 1000) -> explore.UnitStats:
    """Measured on at most ``max_images`` images (the server's request budget lowers it for a large model)."""
    if _data is None or (_model.num_classes and _data.labels is None) or max_images < 2:
        return explore.UnitStats.uniform(explore.num_units(_model))
    return explore.unit_stats(_model, _data, max_images=max_images)


@st.cache_resource(show_spinner="Averaging codes per class...", max_entries=64)
def attribute_vector(model_key: str, data_key: str, _model: VAEBase, _data: ImageSet, to_class: int,
                     from_class: int) -> torch.Tensor:
    return explore.attribute_vector(_model, _data, to_class, from_class)


@st.cache_data(max_entries=64, show_spinner=False)
def model_summary(model_key: str, _model: VAEBase, _info: ModelInfo) -> dict:
    return {"family": _model.config.model_type, "latent_shape": list(_model.latent_shape),
            "params": sum(p.numel() for p in _model.parameters()),
            "in_shape": list(_model.config.in_shape), "num_classes": _model.num_classes,
            "trained_on": _info.trained_on, "metrics": _info.metrics}
