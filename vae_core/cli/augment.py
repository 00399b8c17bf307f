"""`augment`: images drawn from each image's posterior, written as an image folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from vae_core.latent.augment import (MANIFEST, MAX_PER_IMAGE, augment_dataset, augment_images, check_request,
                              with_originals, write_image_folder)
from vae_core.cli import cost
from vae_core.cli.args import (add_cost_flags, add_model_source, folder, load_command_model, name, real, say,
                               whole)
from vae_core.data import load_dataset

BATCH = 256                  # augment_dataset's images per batch
PROBE = 8                    # images the estimate's draws are timed on


def add_parser(sub, parents=()) -> None:
    a = sub.add_parser("augment", help="write images drawn from each image's posterior, as an image folder",
                       parents=list(parents),
                       description="Draw new images near each image of a dataset: z = mu + scale * std * eps from its "
                                   "posterior (or, for a conditional model, z = scale * eps from the prior with its "
                                   "class), decoded. The folder has one subfolder per class, so "
                                   "load_dataset('folder:OUT', 'all') reads them back with their labels.")
    add_model_source(a)
    a.add_argument("--dataset", type=name, default="mnist-5k")
    a.add_argument("--split", default="train", choices=["train", "test", "all"])
    a.add_argument("--labels-per-class", type=whole(0, 1_000_000), default=0,
                   help="augment only a seeded, class-balanced subset of this many images per class (0: all)")
    a.add_argument("--per-image", type=whole(1, MAX_PER_IMAGE), default=10, help="new images drawn for each image")
    a.add_argument("--scale", type=real(0, 10), default=1.0,
                   help="how far from the posterior mean to draw, in posterior standard deviations (0: reconstruct)")
    a.add_argument("--mode", default="posterior", choices=["posterior", "prior"],
                   help="prior: a conditional model's fresh styles of each image's class")
    a.add_argument("--with-originals", action="store_true", help="write the source images too")
    a.add_argument("--threads", type=whole(0, 1024), default=0, help="torch threads (0: torch's choice)")
    a.add_argument("--out", type=folder, required=True,
                   help="folder to write (a new one, or one augment wrote before)")
    a.add_argument("--overwrite", action="store_true",
                   help="replace --out even if augment did not write it (everything in it is deleted)")
    a.add_argument("--quiet", action="store_true")
    add_cost_flags(a)
    a.set_defaults(func=run, check=check)


def _foreign(out: Path) -> bool:
    """Whether ``out`` exists and is not a folder augment wrote (its manifest) nor an empty one."""
    return out.exists() and not (out.is_dir() and ((out / MANIFEST).is_file() or not any(out.iterdir())))


def check(args) -> str | None:
    out = Path(args.out).expanduser()
    if args.overwrite or not _foreign(out):
        return None
    kind = "a file" if not out.is_dir() else f"a folder (it has no {MANIFEST})"
    return (f"--out {args.out} already exists and was not written by augment: it is {kind}; give a new folder, "
            "or pass --overwrite to replace it and everything in it")


def estimate(args, model, data) -> cost.Estimate:
    """Every draw (timed on PROBE images), the new images held as bytes until written, and one batch's decodes."""
    c, h, w = model.config.in_shape
    n = len(data) * args.per_image
    probe = min(PROBE, len(data))
    x, y = next(data.batches(probe, with_labels=bool(model.num_classes), limit=probe))
    gen = torch.Generator(device=model.device).manual_seed(0)
    per_draw = cost.timed(lambda: augment_images(model, x, y, 1, args.scale, args.mode, gen), repeats=1) / probe
    kept = (n + (len(data) if args.with_originals else 0)) * c * h * w * 2      # the set, and its copy when joined
    batch = min(BATCH, len(data)) * args.per_image * (cost.decode_bytes(model) + c * h * w * cost.FLOAT)
    return cost.Estimate(f"{len(data):,} images x {args.per_image} draws ({n:,} new {c}x{h}x{w} images)",
                         n * per_draw, kept + batch, "lower --per-image or --labels-per-class")


def run(args) -> int:
    model = load_command_model(args)
    c, h, _ = model.config.in_shape
    data = load_dataset(args.dataset, args.split, image_size=h, channels=c)
    if args.labels_per_class:
        data, _ = data.labelled_subset(args.labels_per_class, args.seed)
    check_request(len(data), args.per_image, args.scale, args.mode, model)
    cost.check(estimate(args, model, data), args, model.device)
    with tqdm(total=len(data), unit="img", desc="drawing", disable=args.quiet) as bar:
        new = augment_dataset(model, data, args.per_image, args.scale, args.mode, seed=args.seed,
                              progress=lambda done, n: bar.update(done - bar.n))
    out_set = with_originals(data, new) if args.with_originals else new
    manifest = {"model": args.model_source, "dataset": args.dataset, "split": args.split, "mode": args.mode,
                "scale": args.scale, "per_image": args.per_image, "seed": args.seed,
                "labels_per_class": args.labels_per_class, "with_originals": args.with_originals}
    out = Path(args.out).expanduser()
    if args.overwrite and _foreign(out):           # asked for: what was there goes only now, the images ready
        say(f"note: --overwrite: replacing {args.out}")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    with tqdm(total=len(out_set), unit="img", desc="writing", disable=args.quiet) as bar:
        write_image_folder(out_set, args.out, manifest, progress=lambda done, n: bar.update(done - bar.n))
    print(f"wrote {len(out_set):,} images ({len(new):,} drawn, {args.mode}, scale {args.scale:g}) to {args.out}; "
          f"read them with load_dataset('folder:{args.out}', 'all')")
    return 0
