"""What every command's arguments share: a parser whose every error is one line, the `type=` functions
that check each value when it is parsed (whole numbers in a range, finite numbers, files to write,
folders that are ours to replace), the flags made from config dataclasses, and a model source's flags.

A bad value is refused before any work starts, with one line that names the flag, the value and what is
allowed, and exit status 2."""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

import torch
from PIL import Image

from vae_core.io.run_folder import MANIFEST, MODEL_FILES, PRIOR_FILES, RESUME_FILES, TRAINING_FILES
from vae_core.io.files import read_json
from vae_core.config import TrainConfig, field_types
from vae_core.errors import VAEError
from vae_core.io.hub import check_revision
from vae_core.images import ALLOWED_FORMATS
from vae_core.io.loading import load_model
from vae_core.models import MODEL_TYPES
from vae_core.training.snapshots import FILE as SNAPSHOTS_FILE

BIGGEST = 2 ** 31 - 1                     # no count a command takes is larger; beyond it, sizes overflow
CONFIG_FLOAT = 1e6                        # no config weight or rate is larger (a config's own bounds come first)
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,2})?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Everything a vae_core model folder may hold (a run's, a converted model's): beside these, a folder
# without a checksums.json holds nothing of ours.
OUR_FILES = frozenset((*MODEL_FILES, *TRAINING_FILES, *RESUME_FILES, *PRIOR_FILES, MANIFEST, SNAPSHOTS_FILE))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose error is the one line "error: argument --flag: what is wrong", status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {' '.join(message.split())}\n")


def refuse(value: str, allowed: str) -> argparse.ArgumentTypeError:
    shown = value if len(value) <= 60 else value[:57] + "..."
    return argparse.ArgumentTypeError(f"{shown!r} is not allowed; {allowed}")


def whole(lo: int = 0, hi: int = BIGGEST, what: str = ""):
    """A whole number from ``lo`` to ``hi``."""
    allowed = ("give a whole number" + (f" from {lo:,} to {hi:,}" if lo > -BIGGEST else "")) + what

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise refuse(text, allowed) from None
        if not lo <= value <= hi:
            raise refuse(text, allowed)
        return value
    parse.__name__ = "whole number"
    return parse


def real(lo: float = -math.inf, hi: float = math.inf, *, above: bool = False, what: str = ""):
    """A finite number from ``lo`` (or above it, with ``above``) to ``hi``; NaN and infinities are refused."""
    low = f"above {lo:g}" if above else f"from {lo:g}"
    allowed = ("give a finite number" + (f" {low}" if math.isfinite(lo) else "")
               + (f" to {hi:g}" if math.isfinite(hi) else "") + what)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise refuse(text, allowed) from None
        if not math.isfinite(value) or value < lo or value > hi or (above and value == lo):
            raise refuse(text, allowed)
        return value
    parse.__name__ = "number"
    return parse


def name(text: str) -> str:
    """A non-empty name on one line (a dataset, a model source, a message)."""
    if not text.strip() or "\n" in text or "\x00" in text:
        raise refuse(text, "give a non-empty name on one line")
    return text


def device(text: str) -> str:
    if not DEVICE.fullmatch(text):
        raise refuse(text, "give auto, cpu, cuda, cuda:N or mps")
    return text


def revision(text: str) -> str:
    try:
        check_revision(text)
    except VAEError:
        raise refuse(text, "give a branch, a tag or a commit (letters, digits, '.', '_', '-' and '/')") from None
    return text


def env_name(text: str) -> str:
    if not ENV_NAME.fullmatch(text):
        raise refuse(text, "give the name of an environment variable (letters, digits and '_')")
    return text


def existing_file(text: str) -> str:
    """A file to read: it exists and is a file."""
    name(text)
    p = Path(text).expanduser()
    if not p.is_file():
        raise refuse(text, "give a file that exists" + (" (this is a folder)" if p.is_dir() else ""))
    return text


def existing_folder(text: str) -> str:
    """A folder to read: it exists and is a folder."""
    name(text)
    p = Path(text).expanduser()
    if not p.is_dir():
        raise refuse(text, "give a folder that exists" + (" (this is a file)" if p.exists() else ""))
    return text


def _writable_place(text: str, what: str) -> Path:
    """``text`` as a path whose nearest existing ancestor is a folder this process may write into (the
    missing folders between are made when the file is written)."""
    name(text)
    p = Path(text).expanduser()
    above = p.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise refuse(text, f"{above} is a file, not a folder; give a {what} in a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise refuse(text, f"the folder {above} is read-only here; give a {what} in a folder you may write to")
    return p


def image_file(text: str) -> str:
    """An image file to write: not a folder, in a writable place, with an image format's extension."""
    p = _writable_place(text, "file to write")
    if p.is_dir():
        raise refuse(text, "that is a folder; give a file name such as grid.png")
    known = Image.registered_extensions()
    suffixes = sorted(s for s, fmt in known.items() if fmt in ALLOWED_FORMATS)
    if p.suffix.lower() not in suffixes:
        raise refuse(text, f"give a file name ending in one of {', '.join(suffixes)}")
    return text


def data_file(suffix: str):
    """A file to write with ``suffix`` (e.g. .parquet, .json): not a folder, in a writable place."""
    def parse(text: str) -> str:
        p = _writable_place(text, "file to write")
        if p.is_dir():
            raise refuse(text, f"that is a folder; give a file name ending in {suffix}")
        if p.suffix.lower() != suffix:
            raise refuse(text, f"give a file name ending in {suffix}")
        return text
    parse.__name__ = f"{suffix} file"
    return parse


def folder(text: str) -> str:
    """A folder to write: not an existing file, in a writable place."""
    p = _writable_place(text, "folder to write")
    if p.exists() and not p.is_dir():
        raise refuse(text, "that is a file; give a folder (a new one, or one this command wrote)")
    return text


def foreign_entries(path: Path) -> list[str]:
    """What ``path`` holds that vae_core did not write: every entry not listed in its checksums.json (its
    writer lists every file it wrote there), or, without one, not one of a model folder's own names."""
    manifest = read_json(path / MANIFEST) if (path / MANIFEST).is_file() else None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    ours = set(files) | {MANIFEST} if isinstance(files, dict) else OUR_FILES
    return sorted(p.name for p in path.iterdir() if p.name not in ours)


def check_replaceable(path: str | None, flag: str, *, overwrite: bool, what: str) -> str | None:
    """Why the folder at ``path`` may not be replaced by ``what`` (None when it may): it is not a folder of
    ours, or it holds something we did not write. ``--overwrite`` lifts it."""
    p = Path(path).expanduser() if path else None
    if p is None or overwrite or not p.exists():
        return None
    if not p.is_dir():
        return f"{flag} {path} is a file, not a folder; give a folder (or pass --overwrite to replace the file)"
    foreign = foreign_entries(p)
    if not foreign or not any(p.iterdir()):
        return None
    if not (p / "config.json").is_file():
        return (f"{flag} {path} is a folder that {what} did not write (it holds {', '.join(foreign[:3])}); "
                "give a new folder, or pass --overwrite to replace it and everything in it")
    return (f"{flag} {path} holds {', '.join(foreign[:3])}, which {what} did not write and saving would delete; "
            "move it out, or pass --overwrite")


def check_new_file(path: str | None, flag: str, *, overwrite: bool) -> str | None:
    """Why the file at ``path`` may not be written (None when it may): it exists and --overwrite was not given."""
    if path and not overwrite and Path(path).expanduser().exists():
        return f"{flag} {path} already exists; give a new file name, or pass --overwrite to replace it"
    return None


def model_fields() -> dict[str, object]:
    """Every model family's config fields, each once (the train command's model flags)."""
    fields: dict[str, object] = {}
    for cfg_cls, _ in MODEL_TYPES.values():
        fields.update(field_types(cfg_cls))
    return fields


def _config_field(cls, field: str, hint):
    """A config flag's value, checked when parsed by the config class's own validation (its one home for
    bounds): the class's defaults with this one value, refused only when the complaint names the field."""
    base = (whole(-BIGGEST, BIGGEST) if hint is int else real(-CONFIG_FLOAT, CONFIG_FLOAT) if hint is float
            else lambda text: [whole(1, BIGGEST)(text)] if hint is not str else name(text))

    def parse(text: str):
        value = base(text)
        try:
            dataclasses.replace(cls(), **{field: value if not isinstance(value, list) else tuple(value)}).validate()
        except VAEError as e:
            if field in str(e):
                raise refuse(text, str(e).removeprefix(f"{cls.__name__}: ").removeprefix(f"{cls.__name__}."))
        except Exception:              # the defaults alone do not make a valid config: checked when built
            pass
        return value if not isinstance(value, list) else value[0]
    parse.__name__ = getattr(base, "__name__", "value")
    return parse


def add_field_flags(parser: argparse.ArgumentParser, fields: dict[str, object], title: str,
                    owners: dict[str, type] | None = None) -> None:
    """A flag per config field: --latent-dim for latent_dim, choices for a Literal, --x/--no-x for a bool.
    Numbers are whole or finite when parsed, and checked by the config class that ``owners`` names for them."""
    group = parser.add_argument_group(title)
    for field, hint in fields.items():
        flag = "--" + field.replace("_", "-")
        kw: dict = {"default": None, "dest": field}
        owner = (owners or {}).get(field)
        if get_origin(hint) is Literal:
            kw.update(choices=list(get_args(hint)))
        elif hint is bool:
            kw.update(action=argparse.BooleanOptionalAction)
        elif get_origin(hint) is tuple:
            kw.update(nargs="+", metavar="N", type=_config_field(owner, field, list) if owner else whole(1, BIGGEST))
        elif owner is not None and hint in (int, float, str):
            kw.update(type=_config_field(owner, field, hint))
        elif hint in (int, float, str):
            kw.update(type={int: whole(-BIGGEST, BIGGEST), float: real(), str: name}[hint])
        group.add_argument(flag, **kw)


def field_owners(classes) -> dict[str, type]:
    """Each field's first class among ``classes`` (config dataclasses): the one that checks its values."""
    owners: dict[str, type] = {}
    for cls in classes:
        for field in field_types(cls):
            owners.setdefault(field, cls)
    return owners


def any_config_flags(args: argparse.Namespace) -> bool:
    """Whether any model or training config flag (or --model, --config) was given."""
    names = set(model_fields()) | set(field_types(TrainConfig)) | {"model", "config"}
    return any(getattr(args, n, None) is not None for n in names)


def add_model_source(sp: argparse.ArgumentParser) -> None:
    """The model a command reads: a shipped name, a folder or a Hub repo, and how to open it."""
    sp.add_argument("model_source", type=name, help="shipped checkpoint name, run folder, or Hub repo id org/name[@rev]")
    sp.add_argument("--revision", type=revision, help="Hub revision (branch, tag or commit)")
    sp.add_argument("--device", type=device, default=None, help="cpu, cuda, mps (default: the best available)")
    sp.add_argument("--seed", type=whole(0, 2 ** 63 - 1), default=0)


def add_cost_flags(sp: argparse.ArgumentParser) -> None:
    """--yes and --max-seconds: how a command whose cost grows with its arguments is allowed to run long."""
    sp.add_argument("--yes", action="store_true",
                    help="run even when the estimate is above the time a command runs without asking")
    sp.add_argument("--max-seconds", type=real(0, 10 ** 7, above=True), default=None,
                    help="refuse to start when the estimated time is above this many seconds")


def load_command_model(args: argparse.Namespace):
    """The model a command reads (``--threads`` applied first), from a shipped name, a folder or the Hub."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return load_model(args.model_source, device=args.device, revision=args.revision)


def say(line: str) -> None:
    """A note for the person at the terminal (stderr, so --json output stays clean)."""
    print(line, file=sys.stderr, flush=True)
