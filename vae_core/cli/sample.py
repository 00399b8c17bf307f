"""`sample`: a PNG grid of samples from the prior, its memory and time estimated before any is drawn."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from vae_core.io.files import atomic_file
from vae_core.cli import cost
from vae_core.cli.args import BIGGEST, add_cost_flags, add_model_source, check_new_file, image_file, real, whole
from vae_core.errors import VAEError
from vae_core.images import grid, to_pil
from vae_core.io.loading import load_model

PADDING = 2                  # images.grid's default padding between tiles, in pixels


def add_parser(sub, parents=()) -> None:
    s = sub.add_parser("sample", help="write a PNG grid of samples from the prior", parents=list(parents))
    add_model_source(s)
    s.add_argument("--n", type=whole(1, BIGGEST), default=64, help="samples to draw")
    s.add_argument("--nrow", type=whole(1, 10_000), default=None, help="samples per row (default: a square)")
    s.add_argument("--temperature", type=real(0, 100), default=1.0, help="scale of the prior draws")
    s.add_argument("--label", type=whole(0, BIGGEST), default=None, help="class to sample, for a conditional model")
    s.add_argument("--scale", type=whole(1, 64), default=2, help="enlarge pixels this many times")
    s.add_argument("--out", type=image_file, default="samples.png", help="image file to write (.png, .jpg, ...)")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_cost_flags(s)
    s.set_defaults(func=run, check=check)


def check(args) -> str | None:
    return check_new_file(args.out, "--out", overwrite=args.overwrite)


def estimate(args, model) -> cost.Estimate:
    """n decodes (timed on one), the float grid, and the enlarged 8-bit image."""
    c, h, w = model.config.in_shape
    nrow = args.nrow or max(1, math.ceil(math.sqrt(args.n)))
    rows = math.ceil(args.n / nrow)
    grid_pixels = (rows * (h + PADDING) + PADDING) * (nrow * (w + PADDING) + PADDING)
    memory = (args.n * (cost.decode_bytes(model) + c * h * w * cost.FLOAT) + grid_pixels * c * cost.FLOAT
              + 2 * grid_pixels * args.scale ** 2 * c)
    gen = torch.Generator(device=model.device).manual_seed(0)
    label = None if not model.num_classes else min(args.label or 0, model.num_classes - 1)
    seconds = args.n * cost.timed(lambda: model.sample(1, generator=gen, y=label), repeats=1)
    return cost.Estimate(f"{args.n:,} samples of {c}x{h}x{w} in a {scaled(grid_pixels, args.scale)} grid",
                         seconds, memory, "lower --n or --scale")


def scaled(pixels: int, scale: int) -> str:
    return f"{pixels * scale * scale / 1e6:,.1f}-megapixel"


def run(args) -> int:
    model = load_model(args.model_source, device=args.device, revision=args.revision)
    if model.num_classes and args.label is None:
        raise VAEError(f"This conditional model needs --label (0..{model.num_classes - 1}).")
    if model.num_classes and args.label >= model.num_classes:
        raise VAEError(f"--label {args.label} is not a class of this model; give 0..{model.num_classes - 1}.")
    cost.check(estimate(args, model), args, model.device)
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    with torch.inference_mode():
        x = model.sample(args.n, generator=gen, y=args.label, temperature=args.temperature)
    image = to_pil(grid(x, args.nrow), args.scale)
    del x
    fmt = Image.registered_extensions()[Path(args.out).suffix.lower()]
    atomic_file(Path(args.out).expanduser(), lambda tmp: image.save(tmp, format=fmt))
    print(f"wrote {args.n} samples to {args.out}")
    return 0
