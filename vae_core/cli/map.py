"""`map`: encode a whole dataset in streamed batches and write a 2-D map to Parquet."""
from __future__ import annotations

import dataclasses
import math

from tqdm import tqdm

from vae_core.latent.bigmap import (ENCODE_BATCH, UMAP_FIT_POINTS, UMAP_MAX_ALL, Stream, encode_stream, map_dataset, open_stream,
                             write_parquet)
from vae_core.cli import cost
from vae_core.latent.projector import MAX_POINTS, projector_line, write_projector
from vae_core.cli.args import (add_cost_flags, add_model_source, check_new_file, data_file, folder, load_command_model, name,
                               whole)


def add_parser(sub, parents=()) -> None:
    m = sub.add_parser("map", help="encode a whole dataset in streamed batches and write a 2-D map to Parquet",
                       parents=list(parents),
                       description="Encode every image of a dataset (streamed: never the whole set as floats), map "
                                   "the posterior means to 2-D with PCA (exact, streamed) or UMAP (fitted on a "
                                   "subsample, the rest placed into it), and write one Parquet row per image: index, "
                                   "label and factors where known, x, y and the code z0..zD-1.")
    add_model_source(m)
    m.add_argument("--dataset", type=name, default="dsprites-full", help="any dataset name load_dataset takes")
    m.add_argument("--split", default="all", choices=["train", "test", "all"])
    m.add_argument("--method", default="pca", choices=["pca", "umap"])
    m.add_argument("--umap-strategy", default="subsample", choices=["subsample", "all"],
                   help="subsample: fit on --fit-points codes and place the rest into that map (default); "
                        "all: fit on every code (slower, at most 200,000)")
    m.add_argument("--fit-points", type=whole(10, UMAP_MAX_ALL), default=UMAP_FIT_POINTS, help="codes UMAP is fitted on (subsample strategy)")
    m.add_argument("--batch-size", type=whole(1, 65_536), default=ENCODE_BATCH, help="images encoded at once")
    m.add_argument("--threads", type=whole(0, 1024), default=0, help="torch threads (0: torch's choice)")
    m.add_argument("--out", type=data_file(".parquet"), required=True, help="Parquet file to write")
    m.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    m.add_argument("--tensorboard", type=folder, metavar="DIR", help="also write a TensorBoard Projector embedding "
                   f"(codes, labels, factors, a sprite of thumbnails; at most {MAX_POINTS:,} points) into DIR")
    m.add_argument("--quiet", action="store_true")
    add_cost_flags(m)
    m.set_defaults(func=run, check=check)


def check(args) -> str | None:
    return check_new_file(args.out, "--out", overwrite=args.overwrite)


def _open(args, h: int, c: int):
    """The dataset's stream; a progress bar only if its cache has to be built first."""
    building = []

    def build_progress(done: int, total: int) -> None:
        if not building:
            building.append(tqdm(total=total, unit="image", desc="building the dataset's cache (once)",
                                 disable=args.quiet))
        building[0].update(done - building[0].n)

    try:
        return open_stream(args.dataset, args.split, image_size=h, channels=c, progress=build_progress)
    finally:
        for bar in building:
            bar.close()


def estimate(args, model, stream) -> cost.Estimate:
    """Memory: one batch's encode and every code kept (with its 2-D position and its table row), refused
    before anything is timed if it cannot fit. Time: the first real batch encoded, times the batches."""
    c, h, w = model.config.in_shape
    d = math.prod(model.latent_shape)
    b = min(args.batch_size, stream.n)
    kept = stream.n * (d + 2) * cost.FLOAT * 3
    est = cost.Estimate(f"encoding {stream.n:,} images of {c}x{h}x{w} ({d}-D codes), then {args.method.upper()}",
                        0.0, b * (cost.decode_bytes(model) + c * h * w * cost.FLOAT) + kept,
                        "map a smaller dataset or split, or lower --batch-size")
    cost.check_memory(est, model.device)
    first = next(stream.chunks(b))
    probe = Stream(stream.name, len(first.index), lambda size: iter([first]), has_labels=stream.has_labels)
    one = cost.timed(lambda: encode_stream(model, probe, len(first.index)), repeats=1)
    return dataclasses.replace(est, seconds=math.ceil(stream.n / len(first.index)) * one)


def run(args) -> int:
    model = load_command_model(args)
    c, h, _ = model.config.in_shape
    stream = _open(args, h, c)
    cost.check(estimate(args, model, stream), args, model.device)
    with tqdm(total=100, unit="%", disable=args.quiet, bar_format="{l_bar}{bar}| {desc}") as bar:
        def progress(fraction: float, what: str) -> None:
            bar.set_description_str(what, refresh=False)
            bar.update(round(100 * fraction) - bar.n)

        result = map_dataset(model, stream, args.method, batch_size=args.batch_size,
                             umap_strategy=args.umap_strategy, fit_points=args.fit_points, seed=args.seed,
                             progress=progress)
    write_parquet(result, args.out)
    n, d = result.encoded.codes.shape
    print(f"wrote {n:,} codes ({d}-D) and their {args.method.upper()} positions to {args.out} "
          f"(encoded in {result.seconds['encode']:.1f} s, projected in {result.seconds['project']:.1f} s)")
    if args.tensorboard:
        print(projector_line(write_projector(result, stream, args.tensorboard, seed=args.seed, batch_size=args.batch_size)))
    return 0
