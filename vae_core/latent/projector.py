"""A latent map as a TensorBoard Projector embedding: the codes, their labels or factors, and a sprite of
the images, so ``tensorboard --logdir DIR`` shows the map (Projector tab) with a thumbnail per point.

Files written into DIR (each atomically): ``tensors.tsv`` (one code a row), ``metadata.tsv`` (a header, then
the image's label, class name, factors, index and its 2-D map position), ``sprite.png`` (the thumbnails in
a square grid, row by row in the rows' order) and ``projector_config.pbtxt`` that ties them together.

Within the Projector's limits: at most ``MAX_POINTS`` points (a seeded, evenly drawn subset of a larger
map), and a sprite no wider than ``SPRITE_MAX_SIDE`` pixels (thumbnails shrunk to fit).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import VAEError
from ..io.files import atomic_file
from .bigmap import ENCODE_BATCH, BigMap, Stream

MAX_POINTS = 10_000            # the Projector stays responsive in a browser up to about this many points
SPRITE_MAX_SIDE = 8192         # TensorBoard's limit on the sprite image's side, in pixels
CONFIG = "projector_config.pbtxt"
TENSORS, METADATA, SPRITE = "tensors.tsv", "metadata.tsv", "sprite.png"


@dataclasses.dataclass(frozen=True)
class ProjectorExport:
    folder: Path
    points: int                 # rows written (at most MAX_POINTS)
    total: int                  # points in the map
    thumb: tuple[int, int]      # (height, width) of one thumbnail in the sprite
    per_row: int                # thumbnails per sprite row (and rows)


def chosen_rows(total: int, max_points: int, seed: int) -> np.ndarray:
    """The map's rows to export: all, or a seeded sorted subset of ``max_points``."""
    if total <= max_points:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False))


def thumbnails(stream: Stream, wanted: np.ndarray, batch_size: int = ENCODE_BATCH) -> np.ndarray:
    """The images (uint8 (n, C, H, W)) whose dataset indices are ``wanted`` (sorted), read in streamed chunks."""
    found: list[np.ndarray] = []
    for chunk in stream.chunks(batch_size):
        keep = np.isin(chunk.index, wanted)
        if keep.any():
            found.append(np.asarray(chunk.images)[keep])
    return np.concatenate(found) if found else np.zeros((0, 1, 1, 1), np.uint8)


def sprite_image(images: np.ndarray, max_side: int = SPRITE_MAX_SIDE) -> tuple[Image.Image, tuple[int, int], int]:
    """The thumbnails (uint8 (n, C, H, W)) in a square grid at most ``max_side`` pixels wide, shrunk to fit;
    with the tile size (height, width) and the thumbnails per row."""
    n, c, h, w = images.shape
    per_row = max(1, math.ceil(math.sqrt(n)))
    scale = min(1.0, max_side / (per_row * max(h, w)))
    th, tw = max(1, int(h * scale)), max(1, int(w * scale))
    mode = "L" if c == 1 else "RGB"
    sheet = Image.new(mode, (per_row * tw, per_row * th), 255 if mode == "L" else (255, 255, 255))
    for i, img in enumerate(images):
        arr = img[0] if c == 1 else np.moveaxis(img[:3], 0, -1)
        tile = Image.fromarray(np.ascontiguousarray(arr), mode)
        if (th, tw) != (h, w):
            tile = tile.resize((tw, th), Image.BILINEAR)
        r, col = divmod(i, per_row)
        sheet.paste(tile, (col * tw, r * th))
    return sheet, (th, tw), per_row


def _cell(v) -> str:
    text = f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)
    return text.replace("\t", " ").replace("\n", " ")


def write_projector(bigmap: BigMap, stream: Stream, folder: str | Path, *, max_points: int = MAX_POINTS,
                    seed: int = 0, batch_size: int = ENCODE_BATCH) -> ProjectorExport:
    """Write ``bigmap`` (with the images from ``stream``, the set it was made from) as a Projector embedding."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    e = bigmap.encoded
    rows = chosen_rows(len(e.index), max_points, seed)
    index = e.index[rows]
    order = np.argsort(index, kind="stable")        # stream order: by dataset index
    rows, index = rows[order], index[order]
    images = thumbnails(stream, index, batch_size)
    if len(images) != len(rows):
        raise VAEError(f"{stream.name or 'The dataset'} gave {len(images)} of the map's {len(rows)} images; write the "
                       "projector from the same dataset and split the map was made from.")

    columns: dict[str, np.ndarray] = {}     # the first column is what the Projector labels points by
    if e.labels is not None:
        columns["label"] = e.labels[rows]
        if bigmap.class_names:
            columns["class_name"] = np.asarray(bigmap.class_names, dtype=object)[e.labels[rows]]
    for k, name in enumerate(bigmap.factor_names):
        columns[name] = e.factors[rows, k]
    columns["index"] = index
    columns[f"{bigmap.method}_x"], columns[f"{bigmap.method}_y"] = bigmap.positions[rows, 0], bigmap.positions[rows, 1]
    header = "\t".join(columns) + "\n"             # several columns, so the Projector expects a header row
    meta = header + "".join("\t".join(_cell(columns[c][i]) for c in columns) + "\n" for i in range(len(rows)))
    tensors = "".join("\t".join(f"{v:.6g}" for v in code) + "\n" for code in e.codes[rows])

    sheet, (th, tw), per_row = sprite_image(images)
    config = (f'embeddings {{\n  tensor_name: "latent codes ({bigmap.method} map)"\n  tensor_path: "{TENSORS}"\n'
              f'  metadata_path: "{METADATA}"\n  sprite {{\n    image_path: "{SPRITE}"\n'
              f"    single_image_dim: {tw}\n    single_image_dim: {th}\n  }}\n}}\n")
    atomic_file(folder / TENSORS, lambda tmp: tmp.write_text(tensors))
    atomic_file(folder / METADATA, lambda tmp: tmp.write_text(meta))
    atomic_file(folder / SPRITE, lambda tmp: sheet.save(tmp, format="PNG"))
    atomic_file(folder / CONFIG, lambda tmp: tmp.write_text(config))      # last: the embedding is whole once it is there
    return ProjectorExport(folder, len(rows), len(e.index), (th, tw), per_row)


def projector_line(export: ProjectorExport) -> str:
    """What the map command says after writing the embedding."""
    some = f"{export.points:,} of {export.total:,}" if export.points < export.total else f"all {export.total:,}"
    return (f"wrote a TensorBoard Projector embedding of {some} points (thumbnails {export.thumb[1]}x{export.thumb[0]}) "
            f"to {export.folder}; open it with: tensorboard --logdir {export.folder}  (Projector tab)")


__all__ = ["CONFIG", "MAX_POINTS", "METADATA", "ProjectorExport", "SPRITE", "SPRITE_MAX_SIDE", "TENSORS",
           "projector_line", "write_projector"]
