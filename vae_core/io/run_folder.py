"""The run-folder format: what a model folder holds, how it is written, checked, and read back.

A folder is a Hub-layout model repo: ``config.json`` (the model config), ``model.safetensors``
(the weights) and ``README.md`` (the model card, ``vae_core.io.card``), with ``samples.png``; a training run
adds ``training_config.json``, ``optimizer.safetensors`` and ``trainer_state.json`` so it can resume; a VQ-VAE's
code prior adds ``prior_config.json`` and ``prior.safetensors``; ``checksums.json``, written last, holds the
sha256 of every other file. Nothing is ever pickled: safetensors and JSON only. Every folder is written beside
its final place and swapped in (``write_run_folder``), so a crash never leaves half a checkpoint.

``training_config.json`` holds a ``RunConfig`` (the model's config and the training's); ``save_run`` writes
a training run's folder after each epoch and ``resume_run`` reads one back, checked file by file, for
``--resume``. This module reads and writes local folders only; ``vae_core.io.hub`` fetches them, ``vae_core.io.push``
publishes them.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import TrainConfig, from_dict, to_dict
from ..errors import VAEError
from ..models import ModelConfig, VAEBase, config_from_dict
from ..models.vq_prior import CodePriorConfig, CodeTransformer
from .card import LIBRARY_NAME, model_card
from .files import atomic_folder, file_sha256, fsync_write, load_json, read_json, recover_folder
from .weights import PICKLE_SUFFIXES, check_header, finite_state, optimizer_from_files, optimizer_to_files

MODEL_FILES = ("config.json", "model.safetensors", "README.md", "samples.png")
TRAINING_FILES = ("training_config.json",)
RESUME_FILES = ("optimizer.safetensors", "trainer_state.json")
PRIOR_CONFIG, PRIOR_WEIGHTS = "prior_config.json", "prior.safetensors"
PRIOR_FILES = (PRIOR_CONFIG, PRIOR_WEIGHTS)        # a VQ-VAE's code prior, trained after it (train-prior)
# The sha256 of every other file of the folder, written last: a flipped byte is caught on load and resume.
MANIFEST = "checksums.json"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    train: TrainConfig

    def __post_init__(self):
        self.model.check_targets(self.train)       # before any data is loaded: what the likelihood can score

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        if not isinstance(d, dict) or set(d) - {"model", "train"}:
            raise VAEError("A run config is an object with two keys, 'model' and 'train'; "
                           f"got {sorted(d) if isinstance(d, dict) else type(d).__name__}.")
        model = d.get("model", {"model_type": "mlp"})
        return cls(config_from_dict(model), from_dict(TrainConfig, d.get("train", {})))

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": to_dict(self.train)}

    def command(self) -> str:
        """A CLI command that reproduces this run."""
        args = ["python", "-m", "vae_core", "train", "--model", self.model.model_type]
        defaults = type(self.model)()
        for f in dataclasses.fields(self.model):
            v = getattr(self.model, f.name)
            if f.name != "in_shape" and v != getattr(defaults, f.name):
                args += [f"--{f.name.replace('_', '-')}", *map(str, v if isinstance(v, tuple) else [v])]
        tdef = TrainConfig()
        for f in dataclasses.fields(self.train):
            v = getattr(self.train, f.name)
            if v != getattr(tdef, f.name) and f.name not in ("device", "threads"):
                args += [f"--{f.name.replace('_', '-')}", str(v)]
        return shlex.join(args) + " --out RUN_DIR"


# ---------------------------------------------------------------------------------------------
# Writing, atomically


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
    from ..images import save_grid

    folder = Path(folder)
    if getattr(model, "code_prior", None) is None:
        raise VAEError("add_code_prior needs a VQ-VAE with a code prior attached (model.attach_prior).")
    rewritten = {"README.md", MANIFEST, *PRIOR_FILES} | ({"samples.png"} if samples is not None else set())

    verify_files(folder, [f.name for f in folder.iterdir() if f.is_file() and f.name not in rewritten])

    def write(tmp: Path) -> None:
        for f in folder.iterdir():
            if f.is_file() and f.name not in rewritten:
                shutil.copy2(f, tmp / f.name)
        write_prior_files(tmp, model.code_prior)
        fsync_write(tmp / "README.md", card.encode())
        if samples is not None:
            save_grid(samples, tmp / "samples.png", nrow=samples_per_row, scale=2)
        write_manifest(tmp)                  # the kept files checked above, the new ones hashed now

    try:
        atomic_folder(folder, write)
    except (OSError, SafetensorError) as e:
        reason = getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise VAEError(f"Could not write the code prior to {folder} ({reason}); the folder is as it was.") from None
    return folder


def write_run_folder(folder: str | Path, model: VAEBase, *, card: str | None = None,
                     samples: torch.Tensor | None = None, samples_per_row: int = 8,
                     run_config: dict | None = None, optimizer: torch.optim.Optimizer | None = None,
                     trainer_state: dict | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
    """Write a model folder atomically: the one writer of every checkpoint, run and converted model.

    Always config.json, model.safetensors, README.md and checksums.json (the sha256 of every
    other file, checked on load and resume); with ``samples`` a samples.png grid
    (pixels doubled), with ``run_config`` training_config.json, with ``optimizer`` and
    ``trainer_state`` what ``--resume`` needs; ``extra_files`` (name -> bytes) beside them, e.g. a
    run's snapshots (vae_core.training.snapshots). A full disk or any other write error leaves the
    folder as it was and raises a VAEError that says so.
    """
    from ..images import save_grid

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
        for name, data in (extra_files or {}).items():
            if Path(name).name != name or name in (*MODEL_FILES, *TRAINING_FILES, *RESUME_FILES, MANIFEST):
                raise ValueError(f"an extra file of a run folder is a plain new name, got {name!r}")
            fsync_write(tmp / name, data)
        write_manifest(tmp)

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
# Checking: the manifest


def write_manifest(folder: Path) -> None:
    """checksums.json: the sha256 of every file in ``folder`` (written last, inside the folder being swapped in)."""
    folder = Path(folder)
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    fsync_write(folder / MANIFEST, json.dumps({"algorithm": "sha256", "files": files}, indent=2).encode())


def verify_files(folder: Path, names) -> None:
    """Check each of ``names`` that exists against the folder's checksums.json; a mismatch is a VAEError.

    A folder without a manifest (written before manifests, or by another tool) is not checked.
    A manifest that is itself damaged, or that does not list a file it should, is refused."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return
    manifest = read_json(path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("algorithm") != "sha256":
        raise VAEError(f"{path} is damaged (not the sha256 list vae_core writes), so the files beside it cannot be "
                       "checked; restore the folder from a backup or use an earlier checkpoint.")
    for name in names:
        if not (folder / name).is_file():
            continue
        want = files.get(name)
        if not isinstance(want, str):
            raise VAEError(f"{folder / name} is not listed in {MANIFEST}: the folder was changed after it was "
                           "written. Restore it from a backup or use an earlier checkpoint.")
        if file_sha256(folder / name) != want:
            raise VAEError(f"{folder / name} does not match its checksum in {MANIFEST}: the file was changed or "
                           "damaged after it was written. Restore it from a backup or use an earlier checkpoint.")


# ---------------------------------------------------------------------------------------------
# Reading


def load_state(folder: Path, model: VAEBase) -> dict[str, torch.Tensor]:
    """Read model.safetensors and check every key, shape, dtype and value against the model.

    The folder's checksums (if it has them) are verified first, and the file's header is checked
    against the model before any tensor is read."""
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
    verify_files(folder, ["model.safetensors"])     # config.json is for people to read and edit; its checks are structural
    check_header(weights, model)
    return finite_state(weights)


def load_code_prior(folder: Path) -> CodeTransformer | None:
    """The folder's code prior (prior_config.json + prior.safetensors), checked against the folder's
    checksums and its config's keys, shapes and dtypes before it is read, in eval mode; None when the
    folder has none."""
    folder = Path(folder)
    cfg_path = folder / PRIOR_CONFIG
    if not cfg_path.is_file():
        return None
    prior = CodeTransformer(CodePriorConfig.from_dict(load_json(cfg_path)))
    weights = folder / PRIOR_WEIGHTS
    if not weights.is_file():
        raise VAEError(f"{folder} has {PRIOR_CONFIG} but no {PRIOR_WEIGHTS}; retrain the prior "
                       f"(python -m vae_core train-prior {folder}) or delete {PRIOR_CONFIG}.")
    verify_files(folder, [PRIOR_WEIGHTS])
    check_header(weights, prior, PRIOR_CONFIG)
    prior.load_state_dict(finite_state(weights), strict=True)
    return prior.eval()


# ---------------------------------------------------------------------------------------------
# A training run: saved after each epoch, resumed from its folder


def save_run(out: Path, config: RunConfig, model: VAEBase, opt: torch.optim.Optimizer, *, epoch: int,
             step: int, history: list, elapsed: float, metrics: dict | None, samples: torch.Tensor,
             setup: dict | None = None, extra_files: dict[str, bytes] | None = None) -> None:
    """Write the whole run folder atomically: model, card, samples, config, optimizer and trainer state, and
    ``extra_files`` (a run's snapshots of its codes, where it keeps them).

    ``setup`` records how the run computed ({"precision": "bf16" or "fp32", "kernels": [...]}),
    so that ``--resume`` goes on the same way and the card can say so."""
    setup = setup or {}
    card_metrics = summarize_metrics(metrics) if metrics else None
    card = model_card(model, training=config.to_dict()["train"], metrics=card_metrics,
                      scored_as=(metrics or {}).get("scored_as"), metrics_note=(metrics or {}).get("binarisation", ""),
                      command=config.command(), sample_image="samples.png",
                      extra=f"Trained for {epoch} epochs ({step} steps, {elapsed:.1f} s)"
                            f"{precision_note(setup.get('precision'), config.train.precision)}")
    write_run_folder(
        out, model, card=card, samples=samples,
        run_config=config.to_dict(), optimizer=opt,
        trainer_state={"epoch": epoch, "step": step, "elapsed": elapsed, "history": history, "metrics": card_metrics,
                       **setup},
        extra_files=extra_files)


def precision_note(used: str | None, asked: str) -> str:
    """The end of the card's training sentence: in what precision the run computed, and what that means."""
    if used == "bf16":
        why = "--precision auto, on hardware with native bf16" if asked == "auto" else "--precision bf16"
        return (f", in bf16 autocast ({why}). bf16 changes the numerics: after the same epochs as fp32, the "
                "shipped MNIST configs' held-out ELBO moved by -0.94 to +0.86 nats (mnist-hvae -0.94, mnist-m2 -0.66, "
                "mnist-mlp +0.22, mnist-cvae +0.21, mnist-conv +0.86; bench/precision_check.py); `--precision fp32`, "
                "the default, trains in full precision.")
    if used == "fp32":
        return ", in fp32."
    return "."


def summarize_metrics(m: dict) -> dict:
    keys = ("elbo", "recon", "kl", "mse", "active_units", "log_likelihood", "bits_per_dim",
            "codebook_usage", "perplexity", "accuracy")
    return {k: (round(m[k], 4) if isinstance(m[k], float) else m[k]) for k in keys if k in m}


def resume_run(out: Path, config: RunConfig, model: VAEBase, opt: torch.optim.Optimizer):
    """The epoch, history, time and setup (precision, kernel route) of the run in ``out``, its weights and
    optimizer state loaded; every file checked against the folder's checksums, and any damage a VAEError
    that says which file."""
    recover_folder(out)
    state_path = out / "trainer_state.json"
    if not state_path.is_file():
        raise VAEError(f"{out} has no trainer_state.json, so there is nothing to resume; start a new run.")
    verify_files(out, ["training_config.json", "model.safetensors", *RESUME_FILES])
    saved = load_run_config(out)
    if saved.model != config.model or dataclasses.replace(saved.train, epochs=0, device="auto", threads=0) != \
            dataclasses.replace(config.train, epochs=0, device="auto", threads=0):
        raise VAEError(f"The config differs from the one {out} was trained with (only --epochs may change "
                       "on resume); start a new run folder instead.")
    model.load_state_dict(load_state(out, model), strict=True)
    state = load_json(state_path)
    try:
        epoch, history, elapsed = int(state["epoch"]), list(state["history"]), float(state["elapsed"])
        meta = state["optimizer"]
        # Folders written before precision and kernels were recorded trained in fp32 on torch's kernels.
        setup = {"precision": str(state.get("precision", "fp32")), "kernels": state.get("kernels")}
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(state_path, e) from None
    opt_path = out / "optimizer.safetensors"
    try:
        opt_tensors = load_file(str(opt_path), device=str(model.device))
    except Exception as e:                    # safetensors' own error, or a missing file
        raise _damaged(opt_path, e) from None
    try:
        optimizer_from_files(opt, opt_tensors, meta)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        raise _damaged(opt_path, e, "does not fit this model's optimizer") from None
    return epoch, history, elapsed, setup


def _damaged(path: Path, e: BaseException, what: str = "is damaged") -> VAEError:
    return VAEError(f"{path} {what} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}), so the "
                    f"run cannot resume from it. Its weights still open with load_model('{path.parent}'); to go on "
                    "training, start a new run folder (or restore this one from a backup).")


def load_run_config(out: str | Path) -> RunConfig:
    out = Path(out)
    recover_folder(out)             # a run killed between the two renames of a save
    path = out / "training_config.json"
    if not path.is_file():
        raise VAEError(f"{out} has no training_config.json; it is not a run folder written by vae_core train.")
    d = load_json(path)
    if not isinstance(d, dict):
        raise _damaged(path, TypeError(f"a JSON {type(d).__name__}"))
    return RunConfig.from_dict(d)
