"""The run-folder format: what a model folder holds, how it is written, and how it is read back.

A folder is a Hub-layout model repo: ``config.json`` (the model config), ``model.safetensors``
(the weights) and ``README.md`` (the model card), with ``samples.png``; a training run adds
``training_config.json``, ``optimizer.safetensors`` and ``trainer_state.json`` so it can resume.
Nothing is ever pickled: safetensors and JSON only. Every folder is written beside its final
place and swapped in (``write_run_folder``), so a crash never leaves half a checkpoint.

This module reads and writes local folders only; ``hub`` fetches and publishes them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import VAEError
from ..models import VAEBase
from ..models.vq_prior import CodePriorConfig, CodeTransformer
from ..training.optim import FusedAdam
from ..settings import MAX_HEADER_BYTES, MAX_JSON_BYTES, MAX_WEIGHTS_BYTES

LIBRARY_NAME = "vae-latent-explorer"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")
MODEL_FILES = ("config.json", "model.safetensors", "README.md", "samples.png")
TRAINING_FILES = ("training_config.json",)
RESUME_FILES = ("optimizer.safetensors", "trainer_state.json")
PRIOR_CONFIG, PRIOR_WEIGHTS = "prior_config.json", "prior.safetensors"
PRIOR_FILES = (PRIOR_CONFIG, PRIOR_WEIGHTS)        # a VQ-VAE's code prior, trained after it (train-prior)
# The sha256 of every other file of the folder, written last: a flipped byte is caught on load and resume.
MANIFEST = "checksums.json"
HASH_CHUNK = 1 << 20


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
    ``recover_folder`` puts it back if a crash falls between the two renames. The whole swap holds
    the folder's lock (``.NAME.lock`` beside it), so two saves to one name, in one process or
    two, take turns and never remove each other's temporary folders.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(dest):
        _recover(dest)
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


@contextlib.contextmanager
def folder_lock(dest: Path):
    """An exclusive lock on the folder ``dest`` (an flock on ``.NAME.lock`` beside it), held while
    the folder is swapped or recovered. Where the lock file cannot be made (a read-only place,
    where nothing can be swapped anyway), it goes on unlocked."""
    dest = Path(dest)
    try:
        fd = os.open(dest.parent / f".{dest.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                           # closing the file releases the lock


def recover_folder(dest: Path) -> None:
    """Undo an interrupted swap: if only the moved-aside copy exists, it is the last good one.
    Leftover temporary folders of writers that died are removed (under the lock, so no live
    writer's folder is touched)."""
    dest = Path(dest)
    if not (dest.parent / f".{dest.name}.old").exists() and not any(dest.parent.glob(f".{dest.name}.tmp-*")):
        return
    with folder_lock(dest):
        _recover(dest)


def _recover(dest: Path) -> None:
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
                     run_config: dict | None = None, optimizer: torch.optim.Optimizer | FusedAdam | None = None,
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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


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


def zip_folder(folder: str | Path) -> bytes:
    """A zip of a model folder's files inside one folder of the same name: unzipped, it opens with
    ``load_model("NAME")`` (a run trained in the app travels this way in public mode)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                zf.write(p, f"{folder.name}/{p.name}")
    return buf.getvalue()


def save_pretrained(model: VAEBase, folder: str | Path, card: str | None = None) -> Path:
    """Save a model as a Hub-layout folder, atomically."""
    return write_run_folder(folder, model, card=card)


# ---------------------------------------------------------------------------------------------
# What kind of folder is this?


def read_json(path: Path):
    """A small JSON file's content, or None when it is missing, too large, or not JSON."""
    try:
        return load_json(path)
    except VAEError:
        return None


def load_json(path: Path):
    """A JSON file of a model folder, or a VAEError (never a traceback) for anything a hostile file can
    hold: more than MAX_JSON_BYTES, bad UTF-8 or JSON, nesting too deep to parse, integers too long."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise VAEError(f"{path} is {path.stat().st_size / 2**20:.0f} MB, more than a model folder's JSON "
                           f"file may be ({MAX_JSON_BYTES >> 20} MB); it is not one vae_core can use.")
        return json.loads(path.read_bytes())
    except RecursionError:
        raise VAEError(f"{path} is nested too deeply to be a model's config; it is not one vae_core can use.") from None
    except (ValueError, UnicodeDecodeError) as e:    # JSONDecodeError, and integers of more than 4,300 digits
        raise VAEError(f"{path} is not valid JSON ({str(e).splitlines()[0][:120]}); restore it from the run "
                       "that wrote it.") from None
    except OSError as e:
        raise VAEError(f"{path} cannot be read ({e.strerror or type(e).__name__}).") from None


def diffusers_subfolder(folder: Path) -> str | None:
    """'' when ``folder`` holds a diffusers autoencoder, 'vae' for a Stable Diffusion pipeline's, else None."""
    from ..models.diffusers_adapter import is_diffusers_config

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
    d = load_json(cfg_path)
    if not isinstance(d, dict):
        raise VAEError(f"{cfg_path} holds a JSON {type(d).__name__}, not the mapping of fields a model config is.")
    if isinstance(d.get("_class_name"), str) and d["_class_name"].startswith("Autoencoder"):
        raise VAEError(f"{folder} holds a diffusers {d['_class_name']}; open it with load_model, "
                       "which goes through the diffusers adapter.")
    return d


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
    return _finite_state(weights)


def _finite_state(weights: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (its header already checked), refusing a corrupt file or a NaN/Inf value."""
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VAEError(f"{weights} is corrupt or truncated ({str(e).splitlines()[0]}); "
                       "re-download it or use an earlier checkpoint.") from None
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise VAEError(f"{weights}: {k} holds NaN or Inf values; this checkpoint is broken.")
    return state


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
    prior.load_state_dict(_finite_state(weights), strict=True)
    return prior.eval()


_DTYPES = MappingProxyType({"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
                           "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool})


def read_header(weights: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, safetensors dtype)} from a safetensors file's header, without reading a tensor."""
    weights = Path(weights)
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{weights} is larger than {MAX_WEIGHTS_BYTES >> 30} GiB; refusing to load it.")
    try:
        with open(weights, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"a header of {n:,} bytes in a file of {size:,}")
            header = json.loads(fh.read(n))
        out = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape, dtype = tuple(int(d) for d in entry["shape"]), str(entry["dtype"])
            out[name] = (shape, dtype)
        return out
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError, struct.error) as e:
        raise VAEError(f"{weights} is corrupt or truncated ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                       "re-download it or use an earlier checkpoint.") from None


def check_header(weights: Path, model: torch.nn.Module, config_name: str = "config.json") -> None:
    """Every key, shape and dtype of the file's header against ``model`` (which may live on the meta
    device: nothing is allocated), so a mismatched or oversized file is refused before it is read.
    A VAE is checked on the weights model.safetensors holds (``vae_state_dict``: a VQ-VAE's code prior
    has its own file, checked against ``config_name`` prior_config.json)."""
    header = read_header(weights)
    expected = model.vae_state_dict() if isinstance(model, VAEBase) else model.state_dict()
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise VAEError(f"{weights} does not match its {config_name}: missing {missing[:5]}, "
                       f"unexpected {[n[:60] for n in unexpected[:5]]}.")
    for k, (shape, dtype) in header.items():
        if shape != tuple(expected[k].shape):
            raise VAEError(f"{weights}: {k} has shape {list(shape)[:8]} but the config needs {list(expected[k].shape)}.")
        if _DTYPES.get(dtype) != expected[k].dtype:
            raise VAEError(f"{weights}: {k} is {_DTYPES.get(dtype, dtype)} but the model needs {expected[k].dtype}.")


def read_card_metrics(folder: Path) -> dict[str, str]:
    """The metrics table of a model card, as text, for display."""
    card = Path(folder) / "README.md"
    if not card.is_file() or card.stat().st_size > MAX_JSON_BYTES:     # a card is text for people, never megabytes
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


def optimizer_to_files(opt: torch.optim.Optimizer | FusedAdam) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{name}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer | FusedAdam, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


__all__ = ["LIBRARY_NAME", "MODEL_FILES", "PICKLE_SUFFIXES", "PRIOR_FILES", "RESUME_FILES", "TRAINING_FILES",
           "add_code_prior", "atomic_file", "load_code_prior", "write_prior_files",
           "atomic_folder", "diffusers_subfolder", "fsync_write", "is_pythae_folder", "load_state", "model_card",
           "optimizer_from_files", "optimizer_to_files", "pythae_refusal", "read_card_metrics", "read_config",
           "read_json", "read_trained_on", "recover_folder", "save_pretrained", "write_model_files",
           "write_run_folder"]
