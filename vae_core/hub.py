"""Hub-layout folders: save, load (local folder, shipped name, or Hub repo id), publish.

A folder holds config.json (the model config), model.safetensors (the weights) and README.md
(the model card); a training run adds training_config.json, optimizer.safetensors and
trainer_state.json so it can resume. Nothing is ever pickled: safetensors and JSON only.
Folders are written beside their final place and renamed into it, so a crash never leaves
half a checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .device import pick_device
from .errors import VAEError
from .models import VAEBase, build_model, config_from_dict

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS_DIR = PACKAGE_ROOT / "checkpoints"
LIBRARY_NAME = "vae-latent-explorer"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")
REPO_ID = re.compile(r"^(hub:)?([A-Za-z0-9][\w.-]{0,95})/([\w.-]{1,96})(@[\w./-]{1,128})?$")
MAX_WEIGHTS_BYTES = 2 * 1024 ** 3


# ---------------------------------------------------------------------------------------------
# Writing


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_file(path: Path, write) -> None:
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


def atomic_folder(dest: Path, write) -> None:
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
    """Write config.json, model.safetensors and README.md into an existing folder (not atomic on its own)."""
    folder = Path(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "library": LIBRARY_NAME})
    _fsync_write(folder / "config.json", json.dumps(model.config.to_dict(), indent=2).encode())
    _fsync_write(folder / "README.md", (card or model_card(model)).encode())


def save_pretrained(model: VAEBase, folder: str | Path, card: str | None = None) -> Path:
    """Save a model as a Hub-layout folder, atomically."""
    folder = Path(folder)
    atomic_folder(folder, lambda tmp: write_model_files(tmp, model, card))
    return folder


# The files a push uploads; a run's optimizer state and trainer state only when asked.
PUSH_FILES = ("config.json", "model.safetensors", "README.md", "samples.png", "training_config.json")
RESUME_FILES = ("optimizer.safetensors", "trainer_state.json")


def push_to_hub(folder: str | Path, repo_id: str, token: str | None, *, private: bool = False,
                with_optimizer: bool = False, message: str = "Upload VAE with vae_core") -> str:
    """Upload a model folder (its config, weights, card and sample grid) to a Hub model repo; returns the commit URL.

    The folder must load first, so nothing broken is published. ``token`` is used for this
    upload only: it is never printed, logged, written to disk or cached (no ``huggingface_hub.login``).
    """
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    folder = Path(folder)
    m = REPO_ID.match(repo_id or "")
    if not m or repo_id.startswith("hub:") or m.group(4):
        raise VAEError(f"{repo_id!r} is not a Hub repo id to push to; write it as org/name.")
    if not token:
        raise VAEError("Pushing needs a Hugging Face token with write access.")
    load_model(folder, device="cpu")             # refuse to publish something that does not load
    files = [f for f in PUSH_FILES if (folder / f).is_file()]
    if with_optimizer:
        missing = [f for f in RESUME_FILES if not (folder / f).is_file()]
        if missing:
            raise VAEError(f"{folder} has no {', '.join(missing)}; only a training run folder can be pushed "
                           "with its optimizer state.")
        files += list(RESUME_FILES)

    def scrub(text: str) -> str:                 # an error message must never carry the token
        return text.replace(token, "***")

    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=files,
                                 commit_message=message)
    except hf_errors.HfHubHTTPError as e:
        raise VAEError(scrub(f"The Hub refused the upload to {repo_id}: {str(e).splitlines()[0]}")) from None
    except OSError as e:
        raise VAEError(f"Could not reach the Hub to push {repo_id} ({type(e).__name__}); check the network.") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


# ---------------------------------------------------------------------------------------------
# Reading


def resolve_source(source: str | Path, revision: str | None = None) -> Path:
    """Turn a shipped name, a local folder, or a Hub repo id into a local folder."""
    s = str(source).strip()
    if not s:
        raise VAEError("No model given: name a shipped checkpoint, a local run folder, or a Hub repo id (org/name).")
    path = Path(s).expanduser()
    if path.parent.is_dir() and (path.parent / f".{path.name}.old").is_dir():
        recover_folder(path)                     # a crash fell between the two renames of a save
    if path.exists():
        if not path.is_dir():
            raise VAEError(f"{s} is a file; give the folder that holds config.json and model.safetensors.")
        return path
    shipped = CHECKPOINTS_DIR / s
    if re.fullmatch(r"[\w.-]+", s) and shipped.is_dir():
        return shipped
    m = REPO_ID.match(s)
    if m and not s.startswith((".", "/", "~")):
        repo_id = f"{m.group(2)}/{m.group(3)}"
        rev = revision or (m.group(4)[1:] if m.group(4) else None)
        return fetch_model_repo(repo_id, rev)
    if (path.parent.exists() and path.parent != Path(".")) or s.startswith((".", "/", "~")):
        raise VAEError(f"No folder at {s}; check the path (a run folder holds config.json and model.safetensors).")
    raise VAEError(f"{s!r} is not a shipped checkpoint ({', '.join(shipped_checkpoints()) or 'none found'}), "
                   "a local folder, or a Hub repo id of the form org/name[@revision].")


# Fetched first, to learn what kind of repo it is before any weights travel.
META_FILES = ("config.json", "model_index.json", "vae/config.json", "model_config.json", "README.md")


def fetch_model_repo(repo_id: str, revision: str | None = None) -> Path:
    """Fetch what loading a repo needs: its metadata first, then only the weights that will be read.

    A diffusers VAE (or a Stable Diffusion pipeline's ``vae/``) gets its config and safetensors
    weights only, so a pipeline's UNet and a ``.bin`` copy never download; a pythae repo gets
    nothing more, since its pickle is refused. The second fetch is pinned to the commit of the first.
    """
    meta = download_repo(repo_id, revision, META_FILES)
    commit = meta.name if meta.parent.name == "snapshots" else revision
    sub = diffusers_subfolder(meta)
    if sub is not None:
        prefix = f"{sub}/" if sub else ""
        return download_repo(repo_id, commit, [f"{prefix}config.json", f"{prefix}diffusion_pytorch_model.safetensors"])
    if is_pythae_folder(meta):
        return meta
    return download_repo(repo_id, commit)


HUB_REQUEST_TIMEOUT = 10.0      # seconds a single Hub request may wait for the server (connect or read)
HUB_FETCH_TIMEOUT = 120.0       # seconds a whole fetch may take before the app gives up on it


def _hub_timeouts() -> tuple[float, float]:
    """(per-request, whole-fetch) time-outs: VAE_EXPLORER_HUB_TIMEOUT / VAE_EXPLORER_HUB_FETCH_TIMEOUT."""
    def read(name, default):
        try:
            value = float(os.environ.get(name) or default)
        except ValueError:
            raise VAEError(f"{name}={os.environ[name]!r} is not a number of seconds; fix the server's environment.") from None
        return value if value > 0 else default
    return read("VAE_EXPLORER_HUB_TIMEOUT", HUB_REQUEST_TIMEOUT), read("VAE_EXPLORER_HUB_FETCH_TIMEOUT", HUB_FETCH_TIMEOUT)


def _check_remote_sizes(repo_id: str, revision: str | None, allow_patterns) -> None:
    """Refuse, before anything downloads, a repo whose wanted files add up to more than MAX_WEIGHTS_BYTES.

    Uses the Hub's file metadata; when it cannot be had (offline, an old server), the sizes
    are checked after the download instead.
    """
    import fnmatch

    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception:      # offline or refused: snapshot_download reports it with the right message
        return
    total = sum(int(getattr(f, "size", None) or 0) for f in (info.siblings or [])
                if any(fnmatch.fnmatch(f.rfilename, pat) for pat in allow_patterns))
    if total > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{repo_id} holds {total / 2**30:.1f} GiB of files to fetch; this server loads at most "
                       f"{MAX_WEIGHTS_BYTES / 2**30:.0f} GiB. Pick a smaller model.")


def _check_local_sizes(repo_id: str, local: Path) -> None:
    total = sum(p.stat().st_size for p in Path(local).rglob("*") if p.is_file())
    if total > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{repo_id} holds {total / 2**30:.1f} GiB of files; this server loads at most "
                       f"{MAX_WEIGHTS_BYTES / 2**30:.0f} GiB. Pick a smaller model.")


def download_repo(repo_id: str, revision: str | None = None, allow_patterns=None) -> Path:
    """Fetch a model repo's config, weights and card through huggingface_hub (its cache works offline).

    Each request waits at most VAE_EXPLORER_HUB_TIMEOUT seconds (default 10) and the whole fetch
    VAE_EXPLORER_HUB_FETCH_TIMEOUT (default 120); more than MAX_WEIGHTS_BYTES of files is refused,
    from the Hub's metadata before the download where it can be had. ``trust_remote_code`` is never used:
    nothing fetched is executed, only JSON and safetensors are read.
    """
    import concurrent.futures

    from huggingface_hub import constants as hf_constants
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hf_errors

    request_timeout, fetch_timeout = _hub_timeouts()
    # huggingface_hub reads HF_HUB_*_TIMEOUT from the environment once, at import: set its constants.
    hf_constants.HF_HUB_DOWNLOAD_TIMEOUT = request_timeout
    hf_constants.HF_HUB_ETAG_TIMEOUT = request_timeout
    if allow_patterns is None:
        allow_patterns = ["config.json", "*.safetensors", "README.md", "*.json", *[f"*{sfx}" for sfx in PICKLE_SUFFIXES]]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-fetch")
    try:
        if not hf_constants.HF_HUB_OFFLINE:
            _check_remote_sizes(repo_id, revision, list(allow_patterns))
        fut = pool.submit(snapshot_download, repo_id, revision=revision, repo_type="model",
                          allow_patterns=list(allow_patterns))
        try:
            local = fut.result(timeout=fetch_timeout)
        except concurrent.futures.TimeoutError:
            raise VAEError(f"The Hugging Face Hub did not deliver {repo_id!r} within {fetch_timeout:g} s; it may be slow "
                           "or unreachable. Try again later, or pick a shipped checkpoint or a local folder.") from None
    except hf_errors.RepositoryNotFoundError:
        raise VAEError(f"The Hub has no model repo {repo_id!r} (or it is private): check the spelling, "
                       "or set HF_TOKEN for a private repo.") from None
    except hf_errors.RevisionNotFoundError:
        raise VAEError(f"Repo {repo_id!r} has no revision {revision!r}; use a branch, tag or commit it has.") from None
    except hf_errors.LocalEntryNotFoundError:
        raise VAEError(f"Cannot reach the Hugging Face Hub and {repo_id!r} is not in the local cache: "
                       "connect to the network, or pick a shipped checkpoint or a local folder.") from None
    except hf_errors.HfHubHTTPError as e:
        raise VAEError(f"The Hub refused {repo_id!r}: {str(e).splitlines()[0]}") from None
    except (OSError, ValueError) as e:
        raise VAEError(f"Could not fetch {repo_id!r} from the Hub ({type(e).__name__}: {str(e).splitlines()[0]}); "
                       "check the network or use a local folder.") from None
    finally:
        pool.shutdown(wait=False)      # a fetch past its time-out finishes (or fails) on its own thread
    _check_local_sizes(repo_id, Path(local))
    return Path(local)


def shipped_checkpoints() -> list[str]:
    if not CHECKPOINTS_DIR.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS_DIR.iterdir() if (p / "config.json").is_file())


def read_config(folder: Path) -> dict:
    cfg_path = folder / "config.json"
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


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def diffusers_subfolder(folder: Path) -> str | None:
    """'' when ``folder`` holds a diffusers autoencoder, 'vae' for a Stable Diffusion pipeline's, else None."""
    from .models.diffusers_adapter import is_diffusers_config

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return "" if is_diffusers_config(_read_json(folder / "config.json")) else None
    if (folder / "vae" / "config.json").is_file() and is_diffusers_config(_read_json(folder / "vae" / "config.json")):
        return "vae"
    return None


def is_pythae_folder(folder: Path) -> bool:
    """pythae's BaseAE.save writes model_config.json + model.pt (a pickle), and no config.json."""
    folder = Path(folder)
    return (folder / "model_config.json").is_file() and not (folder / "config.json").is_file()


def pythae_refusal(folder: Path, source: str) -> VAEError:
    import shlex

    d = _read_json(Path(folder) / "model_config.json")
    d = d if isinstance(d, dict) else {}
    pickles = ["model.pt"] + [f"{part}.pkl" for part in ("encoder", "decoder") if d.get(f"uses_default_{part}") is False]
    return VAEError(f"{source} is a pythae {d.get('name', 'model')}: its weights are a Python pickle "
                    f"({', '.join(pickles)}), and unpickling a file can run any code hidden in it, so vae_core never "
                    "opens one while loading. If you trust the file, convert it once into a safetensors model folder "
                    f"and open that: python -m vae_core convert {shlex.quote(source)} converted-model")


def load_state(folder: Path, model: VAEBase) -> dict[str, torch.Tensor]:
    """Read model.safetensors and check every key, shape, dtype and value against the model."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise VAEError(f"{folder} holds only pickled weights ({', '.join(pickles)}). Loading a pickle can run "
                           "arbitrary code, so it is refused. If you trust the file, convert it yourself: in a separate "
                           "Python session load it with torch.load and write model.safetensors with "
                           "safetensors.torch.save_file, next to a config.json.")
        raise VAEError(f"{folder} has no model.safetensors; the run may not have finished its first checkpoint.")
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{weights} is larger than {MAX_WEIGHTS_BYTES >> 30} GiB; refusing to load it.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VAEError(f"{weights} is corrupt or truncated ({str(e).splitlines()[0]}); "
                       "re-download it or use an earlier checkpoint.") from None
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise VAEError(f"{weights} does not match its config.json: missing {missing[:5]}, unexpected {unexpected[:5]}.")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise VAEError(f"{weights}: {k} has shape {list(v.shape)} but the config needs {list(expected[k].shape)}.")
        if v.dtype != expected[k].dtype:
            raise VAEError(f"{weights}: {k} is {v.dtype} but the model needs {expected[k].dtype}.")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise VAEError(f"{weights}: {k} holds NaN or Inf values; this checkpoint is broken.")
    return state


def load_model(source: str | Path, device: str | torch.device | None = None, revision: str | None = None,
               image_size: int | None = None) -> VAEBase:
    """Open a model from a shipped name, a local Hub-layout folder, or a Hub repo id (org/name[@rev]).

    The config is validated before any tensor is allocated; weights load strictly. The model is
    returned in eval mode on ``device`` (default: cuda, then mps, then cpu).
    A diffusers AutoencoderKL / AutoencoderTiny (a repo such as stabilityai/sd-vae-ft-mse, or a
    pipeline's vae/ folder) opens through ``models.diffusers_adapter`` when diffusers is installed;
    ``image_size`` is then its working image side (default 128). A pythae model is refused: it is a pickle.
    """
    folder = resolve_source(source, revision)
    sub = diffusers_subfolder(folder)
    if sub is not None:
        from .models.diffusers_adapter import load_diffusers_vae
        commit = folder.name if folder.parent.name == "snapshots" else (revision or "")
        model = load_diffusers_vae(folder, sub, image_size=image_size, source=str(source), revision=commit)
        model.source = str(source)
        model.folder = folder
        return model.to(pick_device(device)).eval()
    if is_pythae_folder(folder):
        raise pythae_refusal(folder, str(source))
    config = config_from_dict(read_config(folder))
    if image_size is not None and tuple(config.in_shape[1:]) != (image_size, image_size):
        raise VAEError(f"This {config.model_type} model takes {config.in_shape[1]}x{config.in_shape[2]} images; "
                       "image_size can only be chosen for a diffusers VAE.")
    model = build_model(config)
    state = load_state(folder, model)
    model.load_state_dict(state, strict=True)
    model.source = str(source)
    model.folder = folder
    return model.to(pick_device(device)).eval()


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


def is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
