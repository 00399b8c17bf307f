"""`python -m vae_core train | train-prior | evaluate | sample | directions | push | convert | augment | map |
experiment | sweep`: a module per command (its flags, the checks that need several of them, what it runs),
``args`` for what they share and every value's check, ``cost`` for estimates before long jobs, ``report``
for how results and failures are printed.

Every config field is a flag (--latent-dim 2, --hidden-dims 512 256, --kl-anneal linear, ...)
and can also come from a YAML or JSON file (--config run.yaml); flags win over the file.
A bad value, or any problem a user can fix, prints one line and exits with status 2, never a traceback;
anything unexpected prints one line and exits with status 1 (--debug shows its traceback).
"""
from __future__ import annotations

import argparse
import sys

from vae_core.cli import augment, convert, directions, evaluate, experiment, push, report, sample, train, train_prior
from vae_core.cli import map as map_command
from vae_core.cli import sweep
from vae_core.cli.args import Parser
from vae_core.cli.train import build_run_config

COMMANDS = (train, train_prior, evaluate, sample, directions, push, convert, augment, map_command, experiment, sweep)


def make_parser() -> argparse.ArgumentParser:
    debug = Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an unexpected error")
    p = Parser(prog="python -m vae_core", description="Train, evaluate, sample and publish VAEs.", parents=[debug])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub, parents=[debug])
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed arguments, every value and every pair of them checked (a SystemExit(2) with one line if not)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    problem = args.check(args) if hasattr(args, "check") else None
    if problem:
        parser.error(problem)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except SystemExit as e:                     # --help (0), or a bad value already told in one line (2)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        line, status = report.failure(e)
        print(f"error: {line}", file=sys.stderr)
        return status


__all__ = ["build_run_config", "main", "make_parser", "parse"]
