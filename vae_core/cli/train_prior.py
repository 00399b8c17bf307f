"""`train-prior`: fit an autoregressive prior over a trained VQ-VAE's codes, into its run folder."""
from __future__ import annotations

import dataclasses

from tqdm import tqdm

from vae_core.cli import report
from vae_core.cli.args import add_field_flags, existing_folder
from vae_core.config import field_types, from_dict
from vae_core.models.vq_prior import CodePriorConfig
from vae_core.training.prior import ARCH_FIELDS, PriorTrainConfig, train_prior


def add_parser(sub, parents=()) -> None:
    tp = sub.add_parser("train-prior", help="fit an autoregressive prior over a trained VQ-VAE's codes",
                        parents=list(parents),
                        description="Train a causal transformer over the code grids of the VQ-VAE in RUN (its "
                                    "training split's codes) and add it to RUN (prior_config.json, "
                                    "prior.safetensors, a new model card and samples). load_model then samples "
                                    "from it, and evaluate reports log p(x|codes) + log p(codes).")
    tp.add_argument("run_dir", type=existing_folder, help="a VQ-VAE run folder written by train")
    tp.add_argument("--quiet", action="store_true", help="no progress bar")
    arch_defaults = ", ".join(f"{k} {getattr(CodePriorConfig(), k)}" for k in ARCH_FIELDS)
    add_field_flags(tp, {k: v for k, v in field_types(CodePriorConfig).items() if k in ARCH_FIELDS},
                    f"prior architecture (defaults: {arch_defaults})")
    add_field_flags(tp, field_types(PriorTrainConfig), "prior training (defaults: " + ", ".join(
        f"{f.name} {f.default}" for f in dataclasses.fields(PriorTrainConfig)) + ")")
    tp.set_defaults(func=run)


def run(args) -> int:
    cfg = from_dict(PriorTrainConfig, {f.name: getattr(args, f.name) for f in dataclasses.fields(PriorTrainConfig)
                                       if getattr(args, f.name) is not None})
    arch = {name: getattr(args, name) for name in ARCH_FIELDS if getattr(args, name) is not None}
    bar = None
    try:
        for ev in train_prior(args.run_dir, arch, cfg):
            if ev.kind == "start":
                bar = tqdm(total=ev.total_steps, unit="step", dynamic_ncols=True, disable=args.quiet)
                tqdm.write(ev.message) if not args.quiet else None
            elif ev.kind == "step":
                bar.update(ev.step - bar.n)
                bar.set_postfix({"nll": f"{ev.losses['nll']:.2f}", "grids/s": f"{ev.images_per_s:,.0f}"})
            elif ev.kind == "epoch" and not args.quiet:
                tqdm.write(report.prior_epoch_line(ev))
            elif ev.kind == "done":
                if bar:
                    bar.close()
                print(f"{ev.message}; saved to {args.run_dir}")
    finally:
        if bar:
            bar.close()
    return 0
