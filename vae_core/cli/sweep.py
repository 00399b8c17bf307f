"""`sweep`: a grid of small runs over beta and the latent size, side by side in one TensorBoard directory
and one MLflow experiment, each run named by its settings (``beta=0.5,latent=10``)."""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from vae_core.cli.args import add_field_flags, existing_file, field_owners, folder, model_fields, refuse
from vae_core.cli.train import build_run_config
from vae_core.cli.track import add_tracking_flags, tracking_from_args
from vae_core.config import TrainConfig, field_types
from vae_core.models import MODEL_TYPES
from vae_core.training.trackers import tracked_train

MAX_RUNS = 64                   # one sweep's grid: more is a cluster job, not a command


def number_list(kind: type, lo: float, hi: float):
    """An argparse type: comma-separated numbers of ``kind`` from ``lo`` to ``hi``, each once."""
    allowed = f"give comma-separated {'whole ' if kind is int else ''}numbers from {lo:g} to {hi:g}, e.g. 1,2,4"

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v.strip()) for v in text.split(","))
        except ValueError:
            raise refuse(text, allowed) from None
        if not values or any(not lo <= v <= hi for v in values) or len(set(values)) != len(values):
            raise refuse(text, allowed + " (each once)")
        return values
    parse.__name__ = "list"
    return parse


def add_parser(sub, parents=()) -> None:
    s = sub.add_parser("sweep", help="train a grid of runs over beta and the latent size into one tracker",
                       parents=list(parents),
                       description="Train one run for each pair of --beta and --latent values, every other "
                                   "setting shared (the train command's flags), each logged by --track under a "
                                   "name made of its settings, so TensorBoard's and MLflow's run comparisons "
                                   "show them side by side.")
    s.add_argument("--beta", type=number_list(float, 0.0, 1e3), required=True, help="KL weights, e.g. 0.5,1,2,4")
    s.add_argument("--latent", type=number_list(int, 1, 4096), required=True, help="latent sizes, e.g. 10,20")
    s.add_argument("--config", type=existing_file, help="YAML or JSON file with the shared 'model' and 'train' sections")
    s.add_argument("--model", choices=sorted(MODEL_TYPES), help="model family (default: mlp)")
    s.add_argument("--out", type=folder, help="also save each run's folder as OUT/<run name>")
    fields = {k: v for k, v in model_fields().items() if k != "latent_dim"}
    add_field_flags(s, fields, "model config (shared)", field_owners(cfg for cfg, _ in MODEL_TYPES.values()))
    add_field_flags(s, {k: v for k, v in field_types(TrainConfig).items() if k != "beta"},
                    "training config (shared)", field_owners([TrainConfig]))
    add_tracking_flags(s, experiment="sweep-<date>-<time>, one a sweep", run_name=False)   # runs are named by their settings
    s.set_defaults(func=run, check=check, resume=False)


def grid_names(args) -> list[tuple[float, int, str]]:
    return [(b, d, f"beta={b:g},latent={d}") for b, d in itertools.product(args.beta, args.latent)]


def check(args) -> str | None:
    runs = len(args.beta) * len(args.latent)
    if runs > MAX_RUNS:
        return f"the grid has {runs} runs, above the {MAX_RUNS} one sweep may train; give fewer values"
    if not args.track:
        return "a sweep needs somewhere to compare its runs: add --track tensorboard:DIR and/or --track mlflow:URI"
    taken = [n for _, _, n in grid_names(args) if args.out and (Path(args.out) / n).exists()]
    if taken:
        return f"--out {args.out} already holds {taken[0]}; give a new folder"
    return None


def run(args) -> int:
    if not args.experiment:
        args.experiment = time.strftime("sweep-%Y%m%d-%H%M%S")       # one experiment a sweep
    for beta, latent, run_name in grid_names(args):
        point = argparse.Namespace(**{**vars(args), "beta": beta, "latent_dim": latent})
        config = build_run_config(point)
        out = str(Path(args.out) / run_name) if args.out else None
        last, done = None, None
        for ev in tracked_train(config, tracking_from_args(args, run_name=run_name), out_dir=out):
            last = ev.eval or last
            done = ev
        elbo = f"held-out ELBO {last['elbo']:.2f}" if last and "elbo" in last else "no held-out ELBO"
        print(f"{run_name}: {done.message} after {done.step} steps in {done.elapsed:.1f} s, {elbo}"
              + (f"; saved to {out}" if out else ""))
    where = ", ".join(str(spec) for spec in args.track)
    print(f"{len(args.beta) * len(args.latent)} runs in experiment {args.experiment} of {where}")
    return 0
