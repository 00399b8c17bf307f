"""`convert`: a pythae model (a pickle) into a safetensors model folder."""
from __future__ import annotations

from vae_core.convert import convert_pythae


def add_parser(sub) -> None:
    c = sub.add_parser("convert", help="convert a pythae model (a pickle) into a safetensors model folder",
                       description="Convert a model saved by pythae (model_config.json + model.pt) into a vae_core "
                                   "folder. Run it only on a file you trust: model.pt is read as tensors only, and "
                                   "fully unpickled (which can run code) only with --trust-pickle.")
    c.add_argument("source", help="pythae model folder, or a Hub repo id org/name[@rev]")
    c.add_argument("out", help="folder to write (Hub layout: config.json, model.safetensors, README.md)")
    c.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    c.add_argument("--trust-pickle", action="store_true",
                   help="if model.pt holds more than tensors, unpickle it fully: this runs any code in it")
    c.add_argument("--in-shape", nargs=3, type=int, metavar=("C", "H", "W"),
                   help="image shape, when pythae's input_dim is flat (e.g. [784])")
    c.set_defaults(func=run)


def run(args) -> int:
    result = convert_pythae(args.source, args.out, i_trust_this_file=args.trust_pickle, revision=args.revision,
                            in_shape=tuple(args.in_shape) if args.in_shape else None)
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.folder} ({result.model_type}, latent {result.latent_dim}); "
          f"open it with: python -m vae_core sample {result.folder}")
    return 0
