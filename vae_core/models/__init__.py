"""Model families: a read-only table maps a type name to its (config class, module class)."""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ..config import brief
from ..errors import VAEError
from .base import ModelConfig, Posterior, VAEBase, check_decode_cost, check_module_budget, parameter_count
from .conv import ConvConfig, ConvVAE
from .hvae import HVAE, HierarchicalVAE, HVAEConfig, HVAEConv, HVAEConvConfig
from .m2 import M2Config, M2VAE
from .mlp import CVAEConfig, MLPConfig, MLPVAE
from .vq import VQConfig, VQVAE

MODEL_TYPES: Mapping[str, tuple[type[ModelConfig], type[VAEBase]]] = MappingProxyType({
    "mlp": (MLPConfig, MLPVAE),
    "cvae": (CVAEConfig, MLPVAE),
    "conv": (ConvConfig, ConvVAE),
    "vq": (VQConfig, VQVAE),
    "m2": (M2Config, M2VAE),
    "hvae": (HVAEConfig, HVAE),
    "hvae-conv": (HVAEConvConfig, HVAEConv),
})


def config_from_dict(d: dict) -> ModelConfig:
    if not isinstance(d, dict) or "model_type" not in d:
        raise VAEError("The model config has no 'model_type'; it must name one of "
                       f"{sorted(MODEL_TYPES)}.")
    kind = d["model_type"]
    if not isinstance(kind, str) or kind not in MODEL_TYPES:
        raise VAEError(f"Unknown model type {brief(kind)}; choose one of {sorted(MODEL_TYPES)}.")
    cfg = MODEL_TYPES[kind][0].from_dict(d)
    check_param_budget(cfg)
    return cfg


def check_param_budget(cfg: ModelConfig) -> int:
    """The exact parameter count of the model ``cfg`` describes (a build on the meta device), or a VAEError
    above MAX_PARAMS."""
    return check_module_budget(cfg, MODEL_TYPES[cfg.model_type][1])


def build_model(config: ModelConfig | dict) -> VAEBase:
    """Validate the config (refusing absurd sizes first), then allocate the model."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    else:
        config.validate()
        check_param_budget(config)
    return MODEL_TYPES[config.model_type][1](config)


__all__ = ["MODEL_TYPES", "ModelConfig", "Posterior", "VAEBase", "build_model", "check_decode_cost", "check_param_budget",
           "config_from_dict", "parameter_count",
           "MLPConfig", "CVAEConfig", "ConvConfig", "VQConfig", "MLPVAE", "ConvVAE", "VQVAE", "M2Config", "M2VAE",
           "HVAEConfig", "HVAEConvConfig", "HVAE", "HVAEConv", "HierarchicalVAE"]
