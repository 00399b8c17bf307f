"""`convert`: a pythae model (a pickle) into a safetensors model folder."""
from __future__ import annotations

from vae_core.cli.args import check_replaceable, folder, name, revision, whole
from vae_core.io.convert import convert_pythae


def add_parser(sub, parents=()) -> None:
    c = sub.add_parser("convert", help="convert a pythae model (a pickle) into a safetensors model folder",
                       parents=list(parents),
                       description="Convert a model saved by pythae (model_config.json + model.pt) into a vae_core "
                                   "folder. Run it only on a file you trust: model.pt is read as tensors only, and "
                                   "fully unpickled (which can run code) only with --trust-pickle.")
    c.add_argument("source", type=name, help="pythae model folder, or a Hub repo id org/name[@rev]")
    c.add_argument("out", type=folder, help="folder to write (Hub layout: config.json, model.safetensors, README.md)")
    c.add_argument("--revision", type=revision, help="Hub revision (branch, tag or commit)")
    c.add_argument("--trust-pickle", action="store_true",
                   help="if model.pt holds more than tensors, unpickle it fully: this runs any code in it")
    c.add_argument("--in-shape", nargs=3, type=whole(1, 4096), metavar=("C", "H", "W"),
                   help="image shape, when pythae's input_dim is flat (e.g. [784])")
    c.add_argument("--overwrite", action="store_true",
                   help="replace OUT even if it is not a model folder of ours (everything in it is deleted)")
    c.set_defaults(func=run, check=check)


def check(args) -> str | None:
    return check_replaceable(args.out, "OUT", overwrite=args.overwrite, what="convert")


def run(args) -> int:
    result = convert_pythae(args.source, args.out, i_trust_this_file=args.trust_pickle, revision=args.revision,
                            in_shape=tuple(args.in_shape) if args.in_shape else None)
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.folder} ({result.model_type}, latent {result.latent_dim}); "
          f"open it with: python -m vae_core sample {result.folder}")
    return 0
