"""`train`: every config field is a flag, and can come from a YAML or JSON file (--config); flags win."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from vae_core.cli import report
from vae_core.io.run_folder import MANIFEST
from vae_core.cli.args import (add_field_flags, any_config_flags, check_replaceable, existing_file,
                                field_owners, folder, model_fields, say)
from vae_core.config import TrainConfig, field_types
from vae_core.data import load_dataset
from vae_core.errors import VAEError
from vae_core.models import MODEL_TYPES
from vae_core.io.run_folder import RunConfig, load_run_config
from vae_core.training.trackers import tracked_train
from vae_core.cli.track import add_tracking_flags, tracking_from_args


def add_parser(sub, parents=()) -> None:
    t = sub.add_parser("train", help="train a model (every config field is a flag)", parents=list(parents),
                       description="Train a VAE. Flags override --config; the run folder gets a Hub-layout "
                                   "checkpoint at an epoch's end at most every --checkpoint-seconds, and at the end.")
    t.add_argument("--config", type=existing_file, help="YAML or JSON file with 'model' and 'train' sections")
    t.add_argument("--model", choices=sorted(MODEL_TYPES), help="model family (default: mlp)")
    t.add_argument("--out", type=folder, help="run folder to write (Hub layout)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not a run folder of ours (everything in it is deleted)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_field_flags(t, model_fields(), "model config", field_owners(cfg for cfg, _ in MODEL_TYPES.values()))
    add_field_flags(t, field_types(TrainConfig), "training config", field_owners([TrainConfig]))
    add_tracking_flags(t)
    t.set_defaults(func=run, check=check)


def check(args) -> str | None:
    """--out must be new, empty or a run folder of ours (nothing in it that we did not write)."""
    if args.resume and not args.out:
        return "--resume needs --out, the run folder to continue"
    return check_replaceable(args.out, "--out", overwrite=args.overwrite, what="train")


def read_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise VAEError(f"Config file {path} does not exist.")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except Exception as e:   # yaml and json raise several types; all mean "malformed"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VAEError(f"Config file {path} is malformed ({first}); fix its syntax.") from None
    if not isinstance(d, dict):
        raise VAEError(f"Config file {path} must hold a mapping with 'model' and/or 'train' sections.")
    return d


def build_run_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < config file < flags. Shapes and class counts default to the dataset's."""
    file = read_config_file(args.config) if args.config else {}
    extra = set(file) - {"model", "train"}
    if extra:
        raise VAEError(f"Config file {args.config} has unknown section(s) {sorted(extra)}; use 'model' and 'train'.")
    model_d = dict(file.get("model") or {})
    train_d = dict(file.get("train") or {})
    if args.model:
        model_d["model_type"] = args.model
    model_d.setdefault("model_type", "mlp")
    kind = model_d["model_type"]
    if kind not in MODEL_TYPES:
        raise VAEError(f"Unknown model type {kind!r}; choose one of {sorted(MODEL_TYPES)}.")
    own = field_types(MODEL_TYPES[kind][0])
    for name in model_fields():
        v = getattr(args, name, None)
        if v is None:
            continue
        if name not in own:
            raise VAEError(f"--{name.replace('_', '-')} does not apply to model type {kind!r}.")
        model_d[name] = list(v) if isinstance(v, list) else v
    for name in field_types(TrainConfig):
        v = getattr(args, name, None)
        if v is not None:
            train_d[name] = v
    probe = RunConfig.from_dict({"model": {"model_type": kind}, "train": train_d}).train
    told_classes = MODEL_TYPES[kind][0].conditional     # the families whose class count is the dataset's
    if "in_shape" not in model_d or (told_classes and "num_classes" not in model_d):
        data = load_dataset(probe.dataset, "train", image_size=probe.image_size)
        model_d.setdefault("in_shape", list(data.shape))
        if told_classes:
            model_d.setdefault("num_classes", data.num_classes)
    return RunConfig.from_dict({"model": model_d, "train": train_d})


def _join_process_group() -> int:
    """Under torchrun (WORLD_SIZE > 1) join the process group; this process's rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank() if dist.is_initialized() else 0


def run_config_for(args) -> RunConfig:
    """The config to train: the saved one on a bare --resume (with a new --epochs), else the flags'."""
    if args.resume and args.out and not any_config_flags(args):
        return load_run_config(args.out)
    config = build_run_config(args)
    if args.resume and args.out and args.epochs is not None:
        saved = load_run_config(args.out)
        config = dataclasses.replace(saved, train=dataclasses.replace(saved.train, epochs=args.epochs))
    return config


def run(args) -> int:
    rank = _join_process_group()
    config = run_config_for(args)
    if args.resume and not rank and not (Path(args.out) / MANIFEST).is_file():
        say(f"note: {args.out} has no {MANIFEST}, so its weights and optimizer state cannot be checked for damage "
            "before resuming (it was written before checksums, or the file was removed)")
    bar = None
    try:
        for ev in tracked_train(config, tracking_from_args(args, rank=rank), out_dir=args.out, resume=args.resume):
            if rank:
                continue
            if ev.kind == "start":
                bar = tqdm(total=ev.total_steps, initial=ev.step, unit="step", dynamic_ncols=True,
                           disable=args.quiet)
                tqdm.write(ev.message) if not args.quiet else None
            elif ev.kind == "step":
                bar.update(ev.step - bar.n)
                bar.set_postfix(report.step_postfix(ev))
            elif ev.kind == "epoch" and ev.eval and not args.quiet:
                tqdm.write(report.epoch_line(ev))
            elif ev.kind == "done":
                if bar:
                    bar.close()
                where = f"; saved to {args.out}" if args.out else ""
                print(f"{ev.message} after {ev.step} steps in {ev.elapsed:.1f} s{where}")
    finally:
        if bar:
            bar.close()
        if dist.is_initialized():
            dist.barrier()      # rank 0 may still be writing the last checkpoint
            dist.destroy_process_group()
    return 0
