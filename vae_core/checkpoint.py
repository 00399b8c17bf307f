"""The run-folder format: what a model folder holds, how it is written, and how it is read back.

A folder is a Hub-layout model repo: ``config.json`` (the model config), ``model.safetensors``
(the weights) and ``README.md`` (the model card), with ``samples.png``; a training run adds
``training_config.json``, ``optimizer.safetensors`` and ``trainer_state.json`` so it can resume.
Nothing is ever pickled: safetensors and JSON only. Every folder is written beside its final
place and swapped in (``write_run_folder``), so a crash never leaves half a checkpoint.

This module reads and writes local folders only; ``hub`` fetches and publishes them.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import VAEError
from .models import VAEBase
from .models.vq_prior import CodePriorConfig, CodeTransformer
from .settings import MAX_WEIGHTS_BYTES

LIBRARY_NAME = "vae-latent-explorer"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")
MODEL_FILES = ("config.json", "model.safetensors", "README.md", "samples.png")
TRAINING_FILES = ("training_config.json",)
RESUME_FILES = ("optimizer.safetensors", "trainer_state.json")
PRIOR_CONFIG, PRIOR_WEIGHTS = "prior_config.json", "prior.safetensors"
PRIOR_FILES = (PRIOR_CONFIG, PRIOR_WEIGHTS)        # a VQ-VAE's code prior, trained after it (train-prior)


# ---------------------------------------------------------------------------------------------
# Writing, atomically


def fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (inside a folder that is swapped in whole)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_file(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)
    try:
        write(tmp)
        tmp.chmod(0o644)                       # a writer may have replaced the file (and its mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_folder(dest: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)`` then swap tmp_dir into ``dest``.

    The old folder is moved aside before the new one is renamed in, and removed only after;
    ``recover_folder`` puts it back if a crash falls between the two renames.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        write(tmp)
        old = dest.parent / f".{dest.name}.old"
        if dest.exists():
            if old.exists():
                shutil.rmtree(old)
            os.rename(dest, old)
        os.rename(tmp, dest)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_folder(dest: Path) -> None:
    """Undo an interrupted swap: if only the moved-aside copy exists, it is the last good one."""
    dest = Path(dest)
    old = dest.parent / f".{dest.name}.old"
    if old.exists() and not dest.exists():
        os.rename(old, dest)
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def model_card(model: VAEBase, *, training: dict | None = None, metrics: dict | None = None,
               command: str | None = None, sample_image: str | None = None, extra: str = "") -> str:
    """The README.md of a model folder: Hub front matter, how to load it, its metrics and configs."""
    cfg = model.config
    dataset = (training or {}).get("dataset")
    front = ["---", f"library_name: {LIBRARY_NAME}", "tags:", "- vae", "- variational-autoencoder",
             "- pytorch", f"- {LIBRARY_NAME}", f"- {cfg.model_type}"]
    if dataset and str(dataset).startswith("hf:"):
        front += ["datasets:", f"- {str(dataset)[3:].split(':')[0].split('@')[0]}"]   # the bare Hub id
    front.append("---")
    n_params = sum(p.numel() for p in model.parameters())
    lines = [*front, "", f"# {cfg.model_type.upper()} VAE", "",
             f"A `{cfg.model_type}` variational autoencoder with latent shape `{list(model.latent_shape)}` "
             f"on `{list(cfg.in_shape)}` images ({n_params:,} parameters), trained with "
             "VAE Latent Explorer (`vae_core`)" + (f" on `{dataset}`." if dataset else "."), ""]
    if sample_image:
        lines += [f"![samples]({sample_image})", ""]
    lines += ["## Load", "", "```python", "from vae_core import load_model",
              "model = load_model(\"<this folder or org/name>\")", "```", ""]
    if command:
        lines += ["## Reproduce", "", "```bash", command, "```", ""]
    if metrics:
        lines += ["## Metrics (held-out test split)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
        lines.append("")
    lines += ["## Model config", "", "```json", json.dumps(cfg.to_dict(), indent=2), "```", ""]
    if training:
        lines += ["## Training config", "", "```json", json.dumps(training, indent=2), "```", ""]
    if extra:
        lines += [extra, ""]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_model_files(folder: Path, model: VAEBase, card: str | None = None) -> None:
    """Write config.json, model.safetensors and README.md into an existing folder (not atomic on its own),
    and a VQ-VAE's code prior, when it has one, as prior_config.json and prior.safetensors."""
    folder = Path(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.vae_state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "library": LIBRARY_NAME})
    fsync_write(folder / "config.json", json.dumps(model.config.to_dict(), indent=2).encode())
    fsync_write(folder / "README.md", (card or model_card(model)).encode())
    prior = getattr(model, "code_prior", None)
    if prior is not None:
        write_prior_files(folder, prior)


def write_prior_files(folder: Path, prior: CodeTransformer) -> None:
    """prior_config.json and prior.safetensors: a code prior's config travels with its weights."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in prior.state_dict().items()}
    save_file(state, str(Path(folder) / PRIOR_WEIGHTS), metadata={"format": "pt", "library": LIBRARY_NAME})
    fsync_write(Path(folder) / PRIOR_CONFIG, json.dumps(prior.config.to_dict(), indent=2).encode())


def add_code_prior(folder: str | Path, model: VAEBase, *, card: str, samples: torch.Tensor | None = None,
                   samples_per_row: int = 8) -> Path:
    """Add (or replace) a VQ-VAE's code prior in its run folder, with a new card and sample grid, atomically.

    Every other file (the VQ-VAE's weights, its training config, its resume state) is kept as it was.
    """
    from .images import save_grid

    folder = Path(folder)
    if getattr(model, "code_prior", None) is None:
        raise VAEError("add_code_prior needs a VQ-VAE with a code prior attached (model.attach_prior).")
    rewritten = {"README.md", "samples.png", *PRIOR_FILES}

    def write(tmp: Path) -> None:
        for f in folder.iterdir():
            if f.is_file() and f.name not in rewritten:
                shutil.copy2(f, tmp / f.name)
        write_prior_files(tmp, model.code_prior)
        fsync_write(tmp / "README.md", card.encode())
        if samples is not None:
            save_grid(samples, tmp / "samples.png", nrow=samples_per_row, scale=2)

    try:
        atomic_folder(folder, write)
    except (OSError, SafetensorError) as e:
        reason = getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise VAEError(f"Could not write the code prior to {folder} ({reason}); the folder is as it was.") from None
    return folder


def write_run_folder(folder: str | Path, model: VAEBase, *, card: str | None = None,
                     samples: torch.Tensor | None = None, samples_per_row: int = 8,
                     run_config: dict | None = None, optimizer: torch.optim.Optimizer | None = None,
                     trainer_state: dict | None = None) -> Path:
    """Write a model folder atomically: the one writer of every checkpoint, run and converted model.

    Always config.json, model.safetensors and README.md; with ``samples`` a samples.png grid
    (pixels doubled), with ``run_config`` training_config.json, with ``optimizer`` and
    ``trainer_state`` what ``--resume`` needs. A full disk or any other write error leaves the
    folder as it was and raises a VAEError that says so.
    """
    from .images import save_grid

    folder = Path(folder)
    opt_files = optimizer_to_files(optimizer) if optimizer is not None else None

    def write(tmp: Path) -> None:
        if samples is not None:
            save_grid(samples, tmp / "samples.png", nrow=samples_per_row, scale=2)
        write_model_files(tmp, model, card)
        if run_config is not None:
            fsync_write(tmp / "training_config.json", json.dumps(run_config, indent=2).encode())
        if opt_files is not None:
            tensors, meta = opt_files
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state = dict(trainer_state or {}, optimizer=meta)
            fsync_write(tmp / "trainer_state.json", json.dumps(state, indent=2).encode())

    try:
        atomic_folder(folder, write)
    except (OSError, SafetensorError) as e:
        reason = getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise VAEError(f"Could not write the checkpoint to {folder} ({reason}); the previous checkpoint there is "
                       "intact. Free some disk space or choose another folder, then try again.") from None
    return folder


def save_pretrained(model: VAEBase, folder: str | Path, card: str | None = None) -> Path:
    """Save a model as a Hub-layout folder, atomically."""
    return write_run_folder(folder, model, card=card)


# ---------------------------------------------------------------------------------------------
# What kind of folder is this?


def read_json(path: Path):
    """A JSON file's content, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None


def diffusers_subfolder(folder: Path) -> str | None:
    """'' when ``folder`` holds a diffusers autoencoder, 'vae' for a Stable Diffusion pipeline's, else None."""
    from .models.diffusers_adapter import is_diffusers_config

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


# ---------------------------------------------------------------------------------------------
# Reading


def read_config(folder: Path) -> dict:
    """config.json as a dict, or a VAEError that says what is wrong with it."""
    cfg_path = Path(folder) / "config.json"
    if not cfg_path.is_file():
        raise VAEError(f"{folder} has no config.json, so it is not a model folder; "
                       "a run folder holds config.json and model.safetensors.")
    try:
        d = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VAEError(f"{cfg_path} is not valid JSON ({e}); restore it from the run that wrote it.") from None
    if isinstance(d, dict) and str(d.get("_class_name", "")).startswith("Autoencoder"):
        raise VAEError(f"{folder} holds a diffusers {d['_class_name']}; open it with load_model, "
                       "which goes through the diffusers adapter.")
    return d


def load_state(folder: Path, model: VAEBase) -> dict[str, torch.Tensor]:
    """Read model.safetensors and check every key, shape, dtype and value against the model."""
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise VAEError(f"{folder} holds only pickled weights ({', '.join(pickles)}). Loading a pickle can run "
                           "arbitrary code, so it is refused. If you trust the file, convert it yourself: in a separate "
                           "Python session load it with torch.load and write model.safetensors with "
                           "safetensors.torch.save_file, next to a config.json.")
        raise VAEError(f"{folder} has no model.safetensors; the run may not have finished its first checkpoint.")
    return checked_weights(weights, model.vae_state_dict(), "config.json")


def checked_weights(weights: Path, expected: dict[str, torch.Tensor], config_name: str) -> dict[str, torch.Tensor]:
    """A safetensors file whose keys, shapes, dtypes match ``expected`` exactly and whose values are finite."""
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{weights} is larger than {MAX_WEIGHTS_BYTES >> 30} GiB; refusing to load it.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VAEError(f"{weights} is corrupt or truncated ({str(e).splitlines()[0]}); "
                       "re-download it or use an earlier checkpoint.") from None
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise VAEError(f"{weights} does not match its {config_name}: missing {missing[:5]}, unexpected {unexpected[:5]}.")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise VAEError(f"{weights}: {k} has shape {list(v.shape)} but the config needs {list(expected[k].shape)}.")
        if v.dtype != expected[k].dtype:
            raise VAEError(f"{weights}: {k} is {v.dtype} but the model needs {expected[k].dtype}.")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise VAEError(f"{weights}: {k} holds NaN or Inf values; this checkpoint is broken.")
    return state


def load_code_prior(folder: Path) -> CodeTransformer | None:
    """The folder's code prior (prior_config.json + prior.safetensors), checked strictly, in eval mode; None
    when the folder has none."""
    folder = Path(folder)
    cfg_path = folder / PRIOR_CONFIG
    if not cfg_path.is_file():
        return None
    d = read_json(cfg_path)
    if d is None:
        raise VAEError(f"{cfg_path} is not valid JSON; retrain the prior (python -m vae_core train-prior {folder}).")
    prior = CodeTransformer(CodePriorConfig.from_dict(d))
    weights = folder / PRIOR_WEIGHTS
    if not weights.is_file():
        raise VAEError(f"{folder} has {PRIOR_CONFIG} but no {PRIOR_WEIGHTS}; retrain the prior "
                       f"(python -m vae_core train-prior {folder}) or delete {PRIOR_CONFIG}.")
    prior.load_state_dict(checked_weights(weights, prior.state_dict(), PRIOR_CONFIG), strict=True)
    return prior.eval()


def read_card_metrics(folder: Path) -> dict[str, str]:
    """The metrics table of a model card, as text, for display."""
    card = Path(folder) / "README.md"
    if not card.is_file():
        return {}
    out, in_table = {}, False
    for line in card.read_text(errors="replace").splitlines():
        if line.startswith("## Metrics"):
            in_table = True
            continue
        if in_table and line.startswith("## "):
            break
        m = re.match(r"^\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|$", line)
        if in_table and m and m.group(1) not in ("metric", "---"):
            out[m.group(1)] = m.group(2)
    return out


def read_trained_on(folder: Path) -> str:
    """The dataset a run folder was trained on, from its training_config.json ('' when unknown)."""
    d = read_json(Path(folder) / "training_config.json")
    try:
        dataset = d["train"]["dataset"]
    except (KeyError, TypeError):
        return ""
    return dataset if isinstance(dataset, str) else ""


# ---------------------------------------------------------------------------------------------
# Optimizer state without pickle: tensors to safetensors, the rest to JSON.


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{name}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


__all__ = ["LIBRARY_NAME", "MODEL_FILES", "PICKLE_SUFFIXES", "PRIOR_FILES", "RESUME_FILES", "TRAINING_FILES",
           "add_code_prior", "atomic_file", "checked_weights", "load_code_prior", "write_prior_files",
           "atomic_folder", "diffusers_subfolder", "fsync_write", "is_pythae_folder", "load_state", "model_card",
           "optimizer_from_files", "optimizer_to_files", "pythae_refusal", "read_card_metrics", "read_config",
           "read_json", "read_trained_on", "recover_folder", "save_pretrained", "write_model_files",
           "write_run_folder"]
