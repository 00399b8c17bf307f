"""Does bf16 autocast hold? Every shipped MNIST config trained in fp32 and in bf16, same epochs, same seed.

    python -m bench.precision_check                 # all five (about 10 minutes on 2 idle cores)
    python -m bench.precision_check --only mnist-mlp

``precision="auto"`` trains in bf16 where the hardware has native bf16 only because this holds:
after the same epochs, the held-out ELBO (the test split, the evaluation a run does after its last
epoch) is within TOLERANCE_NATS of fp32's on every shipped MNIST configuration. Each config is
read from the checkpoint's own training_config.json. Prints a table, with the images/s of each.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch

from vae_core import RunConfig, shipped_checkpoints, train
from vae_core.device import native_bf16, pick_device
from vae_core.settings import checkpoints_dir

TOLERANCE_NATS = 0.5


def run(config: RunConfig, precision: str) -> tuple[float, float]:
    """(held-out ELBO after the last epoch, training images/s)."""
    cfg = dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision, device="auto",
                                                                sample_every=0, eval_every=config.train.epochs))
    last = None
    for ev in train(cfg, log_every=1_000_000):
        if ev.kind == "epoch" and ev.eval is not None:
            last = ev
    return last.eval["elbo"], last.step * cfg.train.batch_size / last.elapsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="checkpoint names (default: every shipped mnist-* one)")
    args = ap.parse_args(argv)
    names = args.only or [n for n in shipped_checkpoints() if n.startswith("mnist")]
    device = pick_device("auto")
    print(f"device {device} (native bf16: {native_bf16(device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; tolerance {TOLERANCE_NATS} nats\n")
    print("| config | epochs | fp32 ELBO | bf16 ELBO | bf16 - fp32 | holds | fp32 images/s | bf16 images/s |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    ok = True
    for name in names:
        config = RunConfig.from_dict(json.loads((checkpoints_dir() / name / "training_config.json").read_text()))
        e32, s32 = run(config, "fp32")
        e16, s16 = run(config, "bf16")
        holds = abs(e16 - e32) <= TOLERANCE_NATS
        ok &= holds
        print(f"| {name} | {config.train.epochs} | {e32:.2f} | {e16:.2f} | {e16 - e32:+.2f} | "
              f"{'yes' if holds else 'NO'} | {s32:,.0f} | {s16:,.0f} |", flush=True)
    print(f"\nbf16 {'holds' if ok else 'does NOT hold'} on every config checked.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
