"""What kind of folder is this: a vae_core model folder, a diffusers autoencoder, or a pythae save (refused)."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import VAEError
from ..models.diffusers_adapter import is_diffusers_config
from .files import load_json, read_json


def diffusers_subfolder(folder: Path) -> str | None:
    """'' when ``folder`` holds a diffusers autoencoder, 'vae' for a Stable Diffusion pipeline's, else None."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return "" if is_diffusers_config(read_json(folder / "config.json")) else None
    if (folder / "vae" / "config.json").is_file() and is_diffusers_config(read_json(folder / "vae" / "config.json")):
        return "vae"
    return None


def is_pythae_folder(folder: Path) -> bool:
    """pythae's BaseAE.save writes model_config.json + model.pt (a pickle), and no config.json."""
    folder = Path(folder)
    return (folder / "model_config.json").is_file() and not (folder / "config.json").is_file()


def pythae_refusal(folder: Path, source: str) -> VAEError:
    d = read_json(Path(folder) / "model_config.json")
    d = d if isinstance(d, dict) else {}
    pickles = ["model.pt"] + [f"{part}.pkl" for part in ("encoder", "decoder") if d.get(f"uses_default_{part}") is False]
    return VAEError(f"{source} is a pythae {d.get('name', 'model')}: its weights are a Python pickle "
                    f"({', '.join(pickles)}), and unpickling a file can run any code hidden in it, so vae_core never "
                    "opens one while loading. If you trust the file, convert it once into a safetensors model folder "
                    f"and open that: python -m vae_core convert {shlex.quote(source)} converted-model")


def read_config(folder: Path) -> dict:
    """config.json as a dict, or a VAEError that says what is wrong with it."""
    cfg_path = Path(folder) / "config.json"
    if not cfg_path.is_file():
        raise VAEError(f"{folder} has no config.json, so it is not a model folder; "
                       "a run folder holds config.json and model.safetensors.")
    d = load_json(cfg_path)
    if not isinstance(d, dict):
        raise VAEError(f"{cfg_path} holds a JSON {type(d).__name__}, not the mapping of fields a model config is.")
    if isinstance(d.get("_class_name"), str) and d["_class_name"].startswith("Autoencoder"):
        raise VAEError(f"{folder} holds a diffusers {d['_class_name']}; open it with load_model, "
                       "which goes through the diffusers adapter.")
    return d
