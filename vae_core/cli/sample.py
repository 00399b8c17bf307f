"""`sample`: a PNG grid of samples from the prior."""
from __future__ import annotations

import torch

from vae_core.cli.args import add_model_source
from vae_core.errors import VAEError
from vae_core.images import save_grid
from vae_core.loading import load_model


def add_parser(sub) -> None:
    s = sub.add_parser("sample", help="write a PNG grid of samples from the prior")
    add_model_source(s)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--nrow", type=int, default=None)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--label", type=int, default=None, help="class to sample, for a conditional model")
    s.add_argument("--scale", type=int, default=2, help="enlarge pixels this many times")
    s.add_argument("--out", default="samples.png")
    s.set_defaults(func=run)


def run(args) -> int:
    model = load_model(args.model_source, device=args.device, revision=args.revision)
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    if model.num_classes and args.label is None:
        raise VAEError(f"This conditional model needs --label (0..{model.num_classes - 1}).")
    with torch.inference_mode():
        x = model.sample(args.n, generator=gen, y=args.label, temperature=args.temperature)
    save_grid(x, args.out, nrow=args.nrow, scale=args.scale)
    print(f"wrote {args.n} samples to {args.out}")
    return 0
