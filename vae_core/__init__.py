"""vae_core: variational autoencoders to train, load, evaluate and explore.

>>> from vae_core import load_model
>>> model = load_model("mnist-mlp")            # a shipped checkpoint, a run folder, or org/name on the Hub
>>> images = model.sample(16)
"""
from .config import TrainConfig
from .data import DATASETS, ImageSet, load_dataset
from .device import pick_device
from .errors import TrainingDiverged, VAEError
from .evaluation.metrics import evaluate_model
from .io.hub import shipped_checkpoints
from .io.loading import ModelInfo, load_model, open_model
from .io.push import push_to_hub
from .io.run_folder import save_pretrained
from .io.run_folder import RunConfig
from .models import MODEL_TYPES, ModelConfig, Posterior, VAEBase, build_model
from .training.loop import Event, train

__version__ = "0.1.0"

__all__ = ["DATASETS", "Event", "ImageSet", "MODEL_TYPES", "ModelConfig", "ModelInfo", "Posterior", "RunConfig",
           "TrainConfig", "TrainingDiverged", "VAEBase", "VAEError", "build_model", "evaluate_model",
           "load_dataset", "load_model", "open_model", "pick_device", "push_to_hub", "save_pretrained",
           "shipped_checkpoints", "train"]
