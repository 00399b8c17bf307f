"""Training images to a good model, by learning rate and batch size: counted, not timed, so a busy machine
cannot move the numbers.

    python -m bench.images_to_quality 1e-3@128 3e-3@128 3e-3@64          # the 784-400-20 MLP on mnist-5k
    python -m bench.images_to_quality --family conv --images 48000 1e-3@128 3e-3@128

Each LR@BATCH trains vae_core's model (seed 0, fp32, torch's kernels, one thread) on the training split and,
about every 4,000 training images, scores it with bench.time_to_quality's judge (the single-sample test ELBO,
nats per image, fixed noise). Printed: the training images each setting needed to first reach -150, -130 and
-120 nats ("None": not within ``--images``), and its best score. The default learning rate (TrainConfig.lr)
was chosen from this table; README "Time to a good model" has it.
"""
from __future__ import annotations

import argparse

import torch

from bench.time_to_quality import judge_fn
from vae_core import RunConfig, TrainConfig
from vae_core.models import ConvConfig, MLPConfig
from vae_core.training.loop import init_model, train

THRESHOLDS = (-150.0, -130.0, -120.0)


def curve(family: str, lr: float, batch: int, images: int, dataset: str) -> list[tuple[int, float]]:
    """(training images seen, test ELBO) about every 4,000 images, up to ``images``."""
    model_cfg = MLPConfig(in_shape=(1, 28, 28)) if family == "mlp" else ConvConfig(in_shape=(1, 28, 28), latent_dim=20)
    cfg = RunConfig(model_cfg, TrainConfig(dataset=dataset, epochs=100_000, batch_size=batch, lr=lr, seed=0,
                                           eval_every=100_000, sample_every=0, kernels="torch", precision="fp32",
                                           checkpoint_seconds=86_400))
    judge = judge_fn(dataset, lambda m, x: (lambda q: (q.mu, q.logvar))(m.encode(x.view(len(x), 1, 28, 28))),
                     lambda m, z: m.decode_logits(z))
    model = init_model(cfg.model, 0)
    out = []
    events = train(cfg, model=model, log_every=max(1, 4000 // batch))
    for ev in events:
        if ev.kind == "step":
            out.append((ev.step * batch, judge(model)))
            if ev.step * batch >= images:
                events.close()
                break
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="+", metavar="LR@BATCH")
    ap.add_argument("--family", choices=("mlp", "conv"), default="mlp")
    ap.add_argument("--images", type=int, default=120_000, help="training images each setting sees")
    ap.add_argument("--dataset", default="mnist-5k")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{args.family} on {args.dataset}, seed 0, judged every ~4,000 training images")
    for spec in args.settings:
        lr, batch = spec.split("@")
        c = curve(args.family, float(lr), int(batch), args.images, args.dataset)
        first = [next((n for n, e in c if e >= t), None) for t in THRESHOLDS]
        print(f"{spec:>10}: images to " + ", ".join(f"{t:g}: {n}" for t, n in zip(THRESHOLDS, first))
              + f"; best {max(e for _, e in c):.2f} nats", flush=True)


if __name__ == "__main__":
    main()
