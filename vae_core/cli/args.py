"""What every command's arguments share: the flags made from config dataclasses, a model source's flags."""
from __future__ import annotations

import argparse
from typing import Literal, get_args, get_origin

import torch

from vae_core.config import TrainConfig, field_types
from vae_core.loading import load_model
from vae_core.models import MODEL_TYPES


def model_fields() -> dict[str, object]:
    """Every model family's config fields, each once (the train command's model flags)."""
    fields: dict[str, object] = {}
    for cfg_cls, _ in MODEL_TYPES.values():
        fields.update(field_types(cfg_cls))
    return fields


def add_field_flags(parser: argparse.ArgumentParser, fields: dict[str, object], title: str) -> None:
    """A flag per config field: --latent-dim for latent_dim, choices for a Literal, --x/--no-x for a bool."""
    group = parser.add_argument_group(title)
    for name, hint in fields.items():
        flag = "--" + name.replace("_", "-")
        kw: dict = {"default": None, "dest": name}
        if get_origin(hint) is Literal:
            kw.update(choices=list(get_args(hint)))
        elif hint is bool:
            kw.update(action=argparse.BooleanOptionalAction)
        elif get_origin(hint) is tuple:
            kw.update(nargs="+", type=int, metavar="N")
        elif hint in (int, float, str):
            kw.update(type=hint)
        group.add_argument(flag, **kw)


def any_config_flags(args: argparse.Namespace) -> bool:
    """Whether any model or training config flag (or --model, --config) was given."""
    names = set(model_fields()) | set(field_types(TrainConfig)) | {"model", "config"}
    return any(getattr(args, n, None) is not None for n in names)


def add_model_source(sp: argparse.ArgumentParser) -> None:
    """The model a command reads: a shipped name, a folder or a Hub repo, and how to open it."""
    sp.add_argument("model_source", help="shipped checkpoint name, run folder, or Hub repo id org/name[@rev]")
    sp.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    sp.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    sp.add_argument("--seed", type=int, default=0)


def load_command_model(args: argparse.Namespace):
    """The model a command reads (``--threads`` applied first), from a shipped name, a folder or the Hub."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return load_model(args.model_source, device=args.device, revision=args.revision)
