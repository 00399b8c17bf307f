"""`python -m vae_core train | train-prior | evaluate | sample | directions | push | convert | augment | map |
experiment`: a module per command (its flags and what it runs), ``args`` for what they share, ``report``
for how results are printed.

Every config field is a flag (--latent-dim 2, --hidden-dims 512 256, --kl-anneal linear, ...)
and can also come from a YAML or JSON file (--config run.yaml); flags win over the file.
Problems a user can fix print one line and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from vae_core.cli import augment, convert, directions, evaluate, experiment, push, sample, train, train_prior
from vae_core.cli import map as map_command
from vae_core.cli.train import build_run_config
from vae_core.errors import VAEError

COMMANDS = (train, train_prior, evaluate, sample, directions, push, convert, augment, map_command, experiment)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vae_core", description="Train, evaluate, sample and publish VAEs.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except VAEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130


__all__ = ["build_run_config", "main", "make_parser"]
