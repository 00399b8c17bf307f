"""Open a model from any source, with a record of what it is: ``open_model`` and ``load_model``.

``ModelInfo`` is the model's identity for everyone who caches results about it: a key that is
never reused for other weights (the Hub commit, or a digest of the folder's config and
weights, or a fresh random id for a model trained in this process), its source and revision,
the dataset it was trained on and its card's metrics. Nothing is attached to the module.
"""
from __future__ import annotations

import dataclasses
import hashlib
import uuid
from pathlib import Path

import torch

from ..config import brief
from ..device import pick_device
from ..errors import VAEError
from ..models import VAEBase, build_model, check_decode_cost, config_from_dict
from ..settings import LoadPolicy
from .card import read_card_metrics, read_trained_on
from .formats import diffusers_subfolder, is_pythae_folder, pythae_refusal, read_config
from .hub import Resolved, resolve_source
from .run_folder import PRIOR_FILES, load_code_prior, load_state
from .weights import check_header

DIGEST_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is; ``key`` names it in caches and is never shared by other weights."""

    key: str
    kind: str                                  # "shipped", "folder", "hub" or "session"
    source: str                                # what the user gave: a name, a path, org/name
    revision: str = ""                         # the Hub commit its files came from
    folder: Path | None = None
    trained_on: str = ""                       # the dataset it was trained on, where known
    card_metrics: tuple[tuple[str, str], ...] = ()

    @property
    def metrics(self) -> dict[str, str]:
        return dict(self.card_metrics)

    @classmethod
    def for_session(cls, source: str, trained_on: str = "", metrics: dict | None = None) -> "ModelInfo":
        """A model made in this process (trained in the app): a random key, since it has no files."""
        shown = tuple((k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in (metrics or {}).items())
        return cls(f"session:{uuid.uuid4().hex}", "session", source, trained_on=trained_on, card_metrics=shown)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(DIGEST_CHUNK):
                h.update(chunk)
    return h.hexdigest()[:20]


def _info(resolved: Resolved, source: str, files: list[Path]) -> ModelInfo:
    folder = resolved.folder
    if resolved.kind == "hub" and resolved.commit:
        key = f"hub:{resolved.repo_id}@{resolved.commit}"          # a commit never changes its files
    else:
        key = f"{resolved.kind}:{folder.resolve()}#{_digest(files)}"
    return ModelInfo(key, resolved.kind, source, resolved.commit, folder, read_trained_on(folder),
                     tuple(read_card_metrics(folder).items()))


def open_model(source: str | Path, device: str | torch.device | None = None, revision: str | None = None,
               image_size: int | None = None, *, policy: LoadPolicy | None = None) -> tuple[VAEBase, ModelInfo]:
    """The model (eval mode, on ``device``) and its ModelInfo, from a shipped name, a local Hub-layout
    folder, or a Hub repo id (org/name[@rev]).

    The config is validated, the model's decode measured against ``policy`` and the weights'
    header checked against the config before any tensor is allocated; weights load strictly.
    Whatever a hostile file holds (deep nesting, huge integers, wrong JSON types) ends as a
    VAEError with one line. A diffusers AutoencoderKL / AutoencoderTiny (a repo such as
    stabilityai/sd-vae-ft-mse, or a pipeline's vae/ folder) opens through
    ``models.diffusers_adapter`` when diffusers is installed; ``image_size`` is then its working
    image side (default 128). A pythae model is refused: it is a pickle. ``policy`` (vae_core.settings)
    says what a source may name and what a model may cost; the default is a local user's.
    """
    policy = policy or LoadPolicy()
    resolved = resolve_source(source, revision, policy)
    folder = resolved.folder
    try:
        return _open(resolved, folder, str(source), device, image_size, policy)
    except VAEError as e:
        if resolved.kind == "folder":
            raise
        # A Hub repo's or a shipped model's files are named as the user named them, never by where this
        # machine keeps them (a public server's paths are its own business).
        raise VAEError(str(e).replace(f"{folder}/", f"{source}: ").replace(str(folder), str(source))) from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError, OverflowError) as e:
        # Every check above should have caught a bad file with its own message; this is the net under them.
        raise VAEError(f"{source} is not a model vae_core can open: its files are malformed "
                       f"({type(e).__name__}: {brief(str(e), 120)}).") from None


def _open(resolved: Resolved, folder: Path, source: str, device, image_size, policy: LoadPolicy):
    sub = diffusers_subfolder(folder)
    if sub is not None:
        from ..models.diffusers_adapter import WEIGHTS_NAME, load_diffusers_vae
        where = folder / sub if sub else folder
        model = load_diffusers_vae(folder, sub, image_size=image_size, source=source, revision=resolved.commit,
                                   policy=policy)
        info = _info(resolved, source, [where / "config.json", where / WEIGHTS_NAME])
        return model.to(pick_device(device)).eval(), info
    if is_pythae_folder(folder):
        raise pythae_refusal(folder, source)
    config = config_from_dict(read_config(folder))
    if image_size is not None and tuple(config.in_shape[1:]) != (image_size, image_size):
        raise VAEError(f"This {config.model_type} model takes {config.in_shape[1]}x{config.in_shape[2]} images; "
                       "image_size can only be chosen for a diffusers VAE.")
    check_decode_cost(config, policy, source)
    with torch.device("meta"):                   # shapes only: nothing is allocated
        probe = build_model(config)
    if (folder / "model.safetensors").is_file():
        check_header(folder / "model.safetensors", probe)
    model = build_model(config)
    model.load_state_dict(load_state(folder, model), strict=True)
    files = [folder / "config.json", folder / "model.safetensors"]
    prior = load_code_prior(folder)
    if prior is not None:                      # a VQ-VAE's autoregressive code prior, trained after it
        if model.as_codebook() is None:
            raise VAEError(f"{folder} holds a code prior ({PRIOR_FILES[0]}), but only a VQ-VAE takes one; "
                           f"this is a {config.model_type} model. Delete the prior's files.")
        model.attach_prior(prior)
        files += [folder / f for f in PRIOR_FILES]
    info = _info(resolved, source, files)
    return model.to(pick_device(device)).eval(), info


def load_model(source: str | Path, device: str | torch.device | None = None, revision: str | None = None,
               image_size: int | None = None, *, policy: LoadPolicy | None = None) -> VAEBase:
    """Open a model from a shipped name, a local folder, or a Hub repo id (see ``open_model``)."""
    return open_model(source, device, revision, image_size, policy=policy)[0]


__all__ = ["ModelInfo", "load_model", "open_model"]
