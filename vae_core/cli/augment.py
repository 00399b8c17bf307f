"""`augment`: images drawn from each image's posterior, written as an image folder."""
from __future__ import annotations

from tqdm import tqdm

from vae_core.augment import augment_dataset, check_request, with_originals, write_image_folder
from vae_core.cli.args import add_model_source, load_command_model
from vae_core.data import load_dataset


def add_parser(sub) -> None:
    a = sub.add_parser("augment", help="write images drawn from each image's posterior, as an image folder",
                       description="Draw new images near each image of a dataset: z = mu + scale * std * eps from its "
                                   "posterior (or, for a conditional model, z = scale * eps from the prior with its "
                                   "class), decoded. The folder has one subfolder per class, so "
                                   "load_dataset('folder:OUT', 'all') reads them back with their labels.")
    add_model_source(a)
    a.add_argument("--dataset", default="mnist-5k")
    a.add_argument("--split", default="train", choices=["train", "test", "all"])
    a.add_argument("--labels-per-class", type=int, default=0,
                   help="augment only a seeded, class-balanced subset of this many images per class (0: all)")
    a.add_argument("--per-image", type=int, default=10, help="new images drawn for each image")
    a.add_argument("--scale", type=float, default=1.0,
                   help="how far from the posterior mean to draw, in posterior standard deviations (0: reconstruct)")
    a.add_argument("--mode", default="posterior", choices=["posterior", "prior"],
                   help="prior: a conditional model's fresh styles of each image's class")
    a.add_argument("--with-originals", action="store_true", help="write the source images too")
    a.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    a.add_argument("--out", required=True, help="folder to write (a new one, or one augment wrote before)")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=run)


def run(args) -> int:
    model = load_command_model(args)
    c, h, _ = model.config.in_shape
    data = load_dataset(args.dataset, args.split, image_size=h, channels=c)
    if args.labels_per_class:
        data, _ = data.labelled_subset(args.labels_per_class, args.seed)
    check_request(len(data), args.per_image, args.scale, args.mode, model)
    with tqdm(total=len(data), unit="img", desc="drawing", disable=args.quiet) as bar:
        new = augment_dataset(model, data, args.per_image, args.scale, args.mode, seed=args.seed,
                              progress=lambda done, n: bar.update(done - bar.n))
    out_set = with_originals(data, new) if args.with_originals else new
    manifest = {"model": args.model_source, "dataset": args.dataset, "split": args.split, "mode": args.mode,
                "scale": args.scale, "per_image": args.per_image, "seed": args.seed,
                "labels_per_class": args.labels_per_class, "with_originals": args.with_originals}
    with tqdm(total=len(out_set), unit="img", desc="writing", disable=args.quiet) as bar:
        write_image_folder(out_set, args.out, manifest, progress=lambda done, n: bar.update(done - bar.n))
    print(f"wrote {len(out_set):,} images ({len(new):,} drawn, {args.mode}, scale {args.scale:g}) to {args.out}; "
          f"read them with load_dataset('folder:{args.out}', 'all')")
    return 0
