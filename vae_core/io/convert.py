"""Convert a model saved by pythae into a vae_core model folder, deliberately, on a file you trust.

pythae's ``BaseAE.save`` writes ``model_config.json`` (e.g. ``{"name": "VAEConfig", "input_dim":
[1, 28, 28], "latent_dim": 16, "reconstruction_loss": "bce", "uses_default_encoder": true, ...}``),
``model.pt`` (``torch.save({"model_state_dict": ...})``, a pickle) and, for custom networks,
``encoder.pkl`` / ``decoder.pkl`` (cloudpickled modules: code, not weights). ``load_model``
refuses all of that. This converter is the one place that reads ``model.pt``, and only when a
person runs it:

1. ``torch.load(weights_only=True)``: torch's restricted unpickler builds tensors and plain
   containers and refuses anything else *before* running it, so a booby-trapped file fails here
   and nothing in it runs;
2. a full unpickle only with ``i_trust_this_file=True`` (``--trust-pickle``), for a file that is
   legitimate but holds more than tensors.

What it maps: pythae's default MLP VAE, ``Encoder_VAE_MLP`` (input -> Linear(D, 512) -> ReLU,
then two heads ``embedding`` (mu) and ``log_var``) and ``Decoder_AE_MLP`` (Linear(latent, 512) ->
ReLU -> Linear(512, D) -> Sigmoid), onto ``MLPConfig(hidden_dims=(512,))``. Our encoder emits mu
and logvar from one Linear of 2 * latent, so the two heads are stacked (mu rows first); pythae's
final Sigmoid is our Bernoulli decoder's sigmoid. Custom (pickled) networks and models whose
prior or encoder differ (VAMP, flows, hyperspherical, ...) are refused with a message.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import VAEError
from ..settings import MAX_WEIGHTS_BYTES

# pythae configs whose model is the plain Gaussian VAE with an N(0, I) prior when it uses the default nets.
MAPPABLE = ("VAEConfig", "BetaVAEConfig", "DisentangledBetaVAEConfig", "BetaTCVAEConfig", "IWAEConfig",
            "MIWAEConfig", "PIWAEConfig", "CIWAEConfig", "MSSSIM_VAEConfig", "INFOVAE_MMD_Config")
HIDDEN = 512                     # Encoder_VAE_MLP / Decoder_AE_MLP's fixed width
PYTHAE_FILES = ("model_config.json", "model.pt", "environment.json", "README.md")


@dataclasses.dataclass(frozen=True)
class Converted:
    folder: Path
    model_type: str
    latent_dim: int
    notes: tuple[str, ...]


def pythae_keys(latent_dim: int, d: int) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of a pythae VAE with the default MLP encoder and decoder."""
    return {
        "encoder.layers.0.0.weight": (HIDDEN, d), "encoder.layers.0.0.bias": (HIDDEN,),
        "encoder.embedding.weight": (latent_dim, HIDDEN), "encoder.embedding.bias": (latent_dim,),
        "encoder.log_var.weight": (latent_dim, HIDDEN), "encoder.log_var.bias": (latent_dim,),
        "decoder.layers.0.0.weight": (HIDDEN, latent_dim), "decoder.layers.0.0.bias": (HIDDEN,),
        "decoder.layers.1.0.weight": (d, HIDDEN), "decoder.layers.1.0.bias": (d,),
    }


def _source_folder(src: str | Path, revision: str | None) -> Path:
    """A local pythae folder as given, or a Hub repo's pythae files (downloading is harmless; loading is not)."""
    from . import hub

    path = Path(str(src)).expanduser()
    if path.is_dir():
        return path
    repo = hub.parse_repo_id(str(src))
    if repo is not None:
        return hub.download_repo(repo[0], revision or repo[1], PYTHAE_FILES)
    raise VAEError(f"No folder at {src}; give a pythae model folder (model_config.json + model.pt) or a Hub repo id.")


def read_pythae_config(folder: Path) -> dict:
    path = folder / "model_config.json"
    if not path.is_file():
        raise VAEError(f"{folder} has no model_config.json, so it is not a model saved by pythae.")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VAEError(f"{path} is not valid JSON ({e}).") from None
    if not isinstance(d, dict):
        raise VAEError(f"{path} must hold a mapping.")
    name = d.get("name")
    if d.get("uses_default_encoder") is False or d.get("uses_default_decoder") is False:
        raise VAEError(f"This pythae {name} uses custom networks (encoder.pkl / decoder.pkl are pickled Python code, "
                       "not weights), which cannot be mapped onto vae_core's models: only pythae's default MLP "
                       "encoder and decoder (Encoder_VAE_MLP, Decoder_AE_MLP) can be converted.")
    if name not in MAPPABLE:
        raise VAEError(f"pythae's {name} cannot be converted: only Gaussian VAEs with an N(0, I) prior and pythae's "
                       f"default MLP networks map onto vae_core ({', '.join(MAPPABLE)}).")
    return d


def _in_shape(d: dict, override: tuple[int, ...] | None) -> tuple[int, int, int]:
    dims = d.get("input_dim")
    if not isinstance(dims, list) or not dims or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0
                                                     for v in dims):
        raise VAEError(f"model_config.json's input_dim must be a list of positive integers, got {dims!r}.")
    if override is not None:
        if len(override) != 3 or math.prod(override) != math.prod(dims):
            raise VAEError(f"--in-shape {list(override)} must be three numbers whose product is {math.prod(dims)} "
                           f"(input_dim {dims}).")
        return tuple(override)
    if len(dims) == 3:
        return tuple(dims)
    if len(dims) == 2:
        return (1, *dims)                        # (H, W): grey images
    raise VAEError(f"input_dim {dims} does not say the image's height and width; give them with "
                   "--in-shape C H W (e.g. --in-shape 1 28 28).")


def _unpickler_reason(e: Exception) -> str:
    """The part of torch's long weights-only error that names what was refused, without terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = re.split(r"\. Please use|Check the documentation", text)[0]
    reason = " ".join(text.split()) or type(e).__name__
    return reason[:200]


def load_pickled_state(path: Path, *, i_trust_this_file: bool) -> dict[str, torch.Tensor]:
    """model.pt's state dict: tensors-only unpickling first; a full unpickle only when trusted."""
    if not path.is_file():
        raise VAEError(f"{path.parent} has no model.pt, pythae's weights file.")
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{path} is larger than {MAX_WEIGHTS_BYTES >> 30} GiB; refusing to read it.")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")   # protocol notes, not a danger
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError, ValueError) as e:
        if not i_trust_this_file:
            raise VAEError(f"{path} is not made of tensors alone, so the safe tensors-only reader "
                           f"(torch.load(weights_only=True)) refused it and nothing in it was run "
                           f"({_unpickler_reason(e)}). "
                           "Unpickling it fully would run any code it contains: do that only if you trust whoever "
                           "made the file, by adding --trust-pickle.") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)   # the user said they trust it
        except Exception as e2:   # an arbitrary pickle can raise anything; report it in one line
            raise VAEError(f"{path} could not be unpickled ({type(e2).__name__}: {str(e2).splitlines()[0][:200]}).") from None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise VAEError(f"{path} does not hold a pythae state dict ({{'model_state_dict': {{name: tensor}}}}).")
    return dict(obj)


def map_state(state: dict[str, torch.Tensor], latent_dim: int, d: int) -> dict[str, torch.Tensor]:
    """pythae's default MLP VAE weights -> MLPVAE(hidden_dims=(512,)) weights, checked key by key."""
    want = pythae_keys(latent_dim, d)
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or unexpected:
        raise VAEError("model.pt is not pythae's default MLP VAE (Encoder_VAE_MLP + Decoder_AE_MLP), which is all "
                       f"this converter maps: missing {missing[:5]}, unexpected {unexpected[:5]}.")
    for k, shape in want.items():
        v = state[k]
        if tuple(v.shape) != shape:
            raise VAEError(f"model.pt: {k} has shape {list(v.shape)} but model_config.json implies {list(shape)}.")
        if not v.is_floating_point() or not torch.isfinite(v).all():
            raise VAEError(f"model.pt: {k} is not a finite floating-point tensor.")
    s = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
    return {
        "encoder.0.weight": s["encoder.layers.0.0.weight"], "encoder.0.bias": s["encoder.layers.0.0.bias"],
        # One head for both: rows 0..D-1 are mu, D..2D-1 logvar, as MLPVAE.encode's chunk(2) reads them.
        "encoder.2.weight": torch.cat([s["encoder.embedding.weight"], s["encoder.log_var.weight"]]),
        "encoder.2.bias": torch.cat([s["encoder.embedding.bias"], s["encoder.log_var.bias"]]),
        "decoder.0.weight": s["decoder.layers.0.0.weight"], "decoder.0.bias": s["decoder.layers.0.0.bias"],
        "decoder.2.weight": s["decoder.layers.1.0.weight"], "decoder.2.bias": s["decoder.layers.1.0.bias"],
    }


def pythae_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pythae's default MLP VAE written out: (mu, log_var, reconstruction of mu), from its own weights."""
    h = F.relu(F.linear(x.flatten(1), state["encoder.layers.0.0.weight"], state["encoder.layers.0.0.bias"]))
    mu = F.linear(h, state["encoder.embedding.weight"], state["encoder.embedding.bias"])
    log_var = F.linear(h, state["encoder.log_var.weight"], state["encoder.log_var.bias"])
    g = F.relu(F.linear(mu, state["decoder.layers.0.0.weight"], state["decoder.layers.0.0.bias"]))
    recon = torch.sigmoid(F.linear(g, state["decoder.layers.1.0.weight"], state["decoder.layers.1.0.bias"]))
    return mu, log_var, recon.view(x.shape)


def convert_pythae(src_folder: str | Path, out_folder: str | Path, *, i_trust_this_file: bool,
                   revision: str | None = None, in_shape: tuple[int, int, int] | None = None) -> Converted:
    """Convert pythae's default MLP VAE in ``src_folder`` (or a Hub repo id) into a vae_core folder at ``out_folder``.

    ``i_trust_this_file`` must be said out loud: when True, a model.pt that the tensors-only
    reader refuses is unpickled fully, which runs whatever code it carries.
    """
    from .run_folder import write_run_folder
    from .card import model_card
    from ..models import MLPConfig, build_model

    src = _source_folder(src_folder, revision)
    d = read_pythae_config(src)
    shape = _in_shape(d, in_shape)
    latent = d.get("latent_dim")
    if isinstance(latent, bool) or not isinstance(latent, int) or latent <= 0:
        raise VAEError(f"model_config.json's latent_dim must be a positive integer, got {latent!r}.")
    loss = d.get("reconstruction_loss", "mse")
    notes = []
    if loss != "bce":
        # pythae's decoder ends in a Sigmoid whatever the loss, so our Bernoulli decoder (sigmoid of the
        # last layer) reproduces its images exactly; only the likelihood used for ELBOs differs.
        notes.append(f"pythae trained this model with the {loss!r} reconstruction loss; the converted decoder "
                     "gives the same images, but vae_core scores them with a Bernoulli likelihood.")
    config = MLPConfig(in_shape=shape, hidden_dims=(HIDDEN,), latent_dim=latent, likelihood="bernoulli")
    weights = src / "model.pt"
    state = load_pickled_state(weights, i_trust_this_file=i_trust_this_file)
    mapped = map_state(state, latent, math.prod(shape))
    model = build_model(config)
    model.load_state_dict(mapped, strict=True)
    model.eval()

    # Check the mapping on random images against pythae's forward pass written out by hand.
    with torch.no_grad():
        x = torch.rand((4, *shape), generator=torch.Generator().manual_seed(0))
        mu, log_var, recon = pythae_forward({k: v.float() for k, v in state.items()}, x)
        post = model.encode(x)
        if not (torch.allclose(post.mu, mu, atol=1e-5) and torch.allclose(post.logvar, log_var, atol=1e-5)
                and torch.allclose(model.decode(post.mu), recon, atol=1e-5)):
            raise VAEError("The converted model does not reproduce pythae's outputs; nothing was written.")
        samples = model.sample(16, generator=torch.Generator().manual_seed(0))

    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    origin = str(src_folder) + (f" (revision {revision})" if revision else "")
    extra = (f"## Provenance\n\nConverted with `python -m vae_core convert` from pythae's `{d.get('name')}` "
             f"at `{origin}` (model.pt sha256 `{digest}`): pythae's default MLP encoder's `embedding` and `log_var` "
             "heads are stacked into one layer; nothing else changed." + "".join(f"\n\n{n}" for n in notes))

    card = model_card(model, sample_image="samples.png", extra=extra)
    out = write_run_folder(out_folder, model, card=card, samples=samples, samples_per_row=4)
    return Converted(out, config.model_type, latent, tuple(notes))


__all__ = ["Converted", "MAPPABLE", "convert_pythae", "load_pickled_state", "map_state", "pythae_forward",
           "pythae_keys", "read_pythae_config"]
