"""`experiment`: semi-supervised learning (M1, M2) and augmentation experiments, as a table."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from vae_core.evaluation import experiments as ex
from vae_core.latent.augment import MAX_PER_IMAGE
from vae_core.io.files import atomic_file
from vae_core.cli.args import check_new_file, data_file, device, existing_file, name, real, whole
from vae_core.errors import VAEError


def add_parser(sub, parents=()) -> None:
    x = sub.add_parser("experiment", help="semi-supervised learning (M1, M2) and augmentation experiments",
                       parents=list(parents),
                       description="Run an experiment and print its table of test accuracy (mean and standard "
                                   "deviation over seeds). See vae_core/evaluation/experiments.py for what each arm does.")
    x.add_argument("which", choices=["semi-supervised", "augmentation"])
    x.add_argument("--dataset", type=name, default="mnist-5k")
    x.add_argument("--labels-per-class", type=whole(1, 1_000_000), nargs="+", default=None,
                   help="semi-supervised: 10 100 by default; augmentation: one number, 10 by default")
    x.add_argument("--seeds", type=whole(0, 2 ** 63 - 1), nargs="+", default=[0, 1, 2])
    x.add_argument("--epochs", type=whole(1, 100_000), default=50, help="semi-supervised: epochs of the M1 VAE and of M2")
    x.add_argument("--hidden-dims", type=whole(1, 65_536), nargs="+", default=[500], help="semi-supervised: hidden layers")
    x.add_argument("--latent-dim", type=whole(1, 4096), default=50, help="semi-supervised: latent size of M1 and M2")
    x.add_argument("--alpha", type=real(0, 1e6), default=0.1, help="semi-supervised: M2's classification weight")
    x.add_argument("--model", dest="model_source", type=name, default="mnist-mlp",
                   help="augmentation: the VAE that draws (trained without labels, so none leak)")
    x.add_argument("--per-image", type=whole(1, MAX_PER_IMAGE), default=10, help="augmentation: draws per labelled image")
    x.add_argument("--scales", type=real(0, 10), nargs="+", default=[0.0, 0.5, 1.0, 2.0], help="augmentation: scales")
    x.add_argument("--mode", default="posterior", choices=["posterior", "prior"], help="augmentation: what to draw")
    x.add_argument("--classifier-steps", type=whole(1, 10_000_000), default=1000, help="Adam steps of every small classifier")
    x.add_argument("--threads", type=whole(0, 1024), default=0, help="torch threads (0: torch's choice)")
    x.add_argument("--device", type=device, default=None)
    x.add_argument("--json", type=data_file(".json"), help="also write every run's result to this JSON file")
    x.add_argument("--from-json", type=existing_file, help="print the table of a results file written by --json, without running")
    x.add_argument("--quiet", action="store_true", help="only the table")
    x.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    x.set_defaults(func=run, check=check)


def check(args) -> str | None:
    return check_new_file(args.json, "--json", overwrite=args.overwrite)


def setup_for(args):
    """The experiment's setup dataclass, from the flags."""
    classifier = ex.ClassifierSetup(steps=args.classifier_steps)
    if args.which == "semi-supervised":
        return ex.SemiSupervisedSetup(dataset=args.dataset, labels_per_class=tuple(args.labels_per_class or (10, 100)),
                                      seeds=tuple(args.seeds), epochs=args.epochs,
                                      hidden_dims=tuple(args.hidden_dims), latent_dim=args.latent_dim,
                                      alpha=args.alpha, classifier=dataclasses.replace(
                                          classifier, hidden_dims=tuple(args.hidden_dims)),
                                      threads=args.threads, device=args.device or "auto")
    return ex.AugmentationSetup(dataset=args.dataset, model=args.model_source,
                                labels_per_class=(args.labels_per_class or [10])[0], per_image=args.per_image,
                                scales=tuple(args.scales), mode=args.mode, seeds=tuple(args.seeds),
                                classifier=classifier, device=args.device or "cpu")


def run(args) -> int:
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text()) if Path(args.from_json).is_file() else None
        if not isinstance(saved, dict) or not saved.get("rows"):
            raise VAEError(f"{args.from_json} is not a results file written by --json; run the experiment first.")
        print(ex.report(args.which, saved["rows"]))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    setup = setup_for(args)
    if args.which == "semi-supervised":
        rows = ex.semi_supervised_experiment(setup, log)
    else:
        rows = ex.augmentation_experiment(setup, log)
    print(ex.report(args.which, rows))
    if args.json:
        text = json.dumps({"setup": dataclasses.asdict(setup), "rows": rows}, indent=2)
        atomic_file(Path(args.json), lambda tmp: tmp.write_text(text))
    return 0
