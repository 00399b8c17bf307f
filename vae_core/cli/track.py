"""The tracking flags `train` and `sweep` share: --track (several at once), --experiment, --run-name."""
from __future__ import annotations

import argparse
from pathlib import Path

from vae_core.cli.args import name, say
from vae_core.errors import VAEError
from vae_core.training.trackers import DEFAULT_EXPERIMENT, DEFAULT_MLFLOW_URI, Tracking, TrackSpec, missing_package


def track_spec(text: str) -> TrackSpec:
    """An argparse type: a parsed --track value whose library is installed, or one line saying what to do."""
    try:
        spec = TrackSpec.parse(text)
    except VAEError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    missing = missing_package(spec.kind)
    if missing:
        raise argparse.ArgumentTypeError(missing)
    return spec


def add_tracking_flags(parser: argparse.ArgumentParser, experiment: str = DEFAULT_EXPERIMENT,
                       run_name: bool = True) -> None:
    g = parser.add_argument_group("tracking (optional extras: pip install 'vae-latent-explorer[tracking]')")
    g.add_argument("--track", type=track_spec, action="append", default=[], metavar="SINK",
                   help="log the run to tensorboard:DIR or mlflow:URI (default URI "
                        f"{DEFAULT_MLFLOW_URI}; http://host:port for a server); repeat for several")
    g.add_argument("--experiment", type=name, default=None,
                   help=f"MLflow experiment name (default: {experiment})")
    if run_name:
        g.add_argument("--run-name", type=name, default=None,
                       help="the run's name in TensorBoard and MLflow (default: the --out folder's name, else the time)")


def tracking_from_args(args, run_name: str | None = None, rank: int = 0) -> Tracking:
    """The run's trackers (none without --track, or on any process but rank 0 under torchrun); failures are
    told on stderr, once each."""
    out = getattr(args, "out", None)
    run_name = run_name or getattr(args, "run_name", None) or (Path(out).name if out else "")
    return Tracking(args.track if not rank else [], experiment=args.experiment or DEFAULT_EXPERIMENT, run_name=run_name, say=say)
