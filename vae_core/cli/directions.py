"""`directions`: how principal, local and attribute directions align with a dataset's true factors."""
from __future__ import annotations

import json

from vae_core.cli import report
from vae_core.cli.args import add_model_source, name, whole
from vae_core.data import load_dataset
from vae_core.latent.directions import dataset_alignment
from vae_core.io.loading import load_model


def add_parser(sub, parents=()) -> None:
    d = sub.add_parser("directions", help="how principal, local and attribute directions align with a "
                                          "dataset's ground-truth factors (dSprites)", parents=list(parents))
    add_model_source(d)
    d.add_argument("--dataset", type=name, default="dsprites")
    d.add_argument("--split", default="test", choices=["train", "test", "all"])
    d.add_argument("--n", type=whole(2, 1_000_000), default=2000, help="images to encode (a fixed random subset)")
    d.add_argument("--k", type=whole(1, 64), default=3, help="principal and local directions to report")
    d.add_argument("--local-codes", type=whole(1, 10_000), default=16, help="codes the local directions are averaged over")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=run)


def run(args) -> int:
    model = load_model(args.model_source, device=args.device, revision=args.revision)
    c, h, w = model.config.in_shape
    data = load_dataset(args.dataset, args.split, image_size=h, channels=c)
    res = dataset_alignment(model, data, n=args.n, seed=args.seed, k=args.k, local_codes=args.local_codes)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(report.directions(args.model_source, args.dataset, args.split, args.seed, res))
    return 0
