"""How long the shipped checkpoints take to build: each one retrained from its own training_config.json.

    python -m bench.build_time                       # all seven (checkpoints/build.sh and build_dsprites.sh)
    python -m bench.build_time --only dsprites-beta4

Each model is trained as its build script trains it (same config, same precision, the CLI's
event loop), into a temporary folder, with the whole train() call timed: data, every epoch,
evaluations and checkpoints. The test ELBO it reaches is printed beside its model card's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vae_core import RunConfig, shipped_checkpoints, train
from vae_core.io.card import read_card_metrics
from vae_core.settings import checkpoints_dir


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="checkpoint names (default: all shipped)")
    args = ap.parse_args(argv)
    names = args.only or shipped_checkpoints()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| checkpoint | epochs | precision | build time (s) | test ELBO | card's ELBO |")
    print("|---|---:|---|---:|---:|---:|")
    totals = {"build.sh": 0.0, "build_dsprites.sh": 0.0}
    for name in names:
        folder = checkpoints_dir() / name
        config = RunConfig.from_dict(json.loads((folder / "training_config.json").read_text()))
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            last = None
            for ev in train(config, out_dir=Path(tmp) / name):
                if ev.kind == "epoch" and ev.eval is not None:
                    last = ev
            dt = time.perf_counter() - t
        totals["build_dsprites.sh" if name.startswith("dsprites") else "build.sh"] += dt
        card = read_card_metrics(folder).get("elbo", "")
        print(f"| {name} | {config.train.epochs} | {config.train.precision} | {dt:.0f} | {last.eval['elbo']:.1f} | "
              f"{card} |", flush=True)
    print("\n" + ", ".join(f"{k}: {v:.0f} s" for k, v in totals.items() if v))


if __name__ == "__main__":
    main()
