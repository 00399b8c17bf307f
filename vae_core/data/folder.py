"""A local folder of images: ``folder:PATH`` (or the path of an existing folder).

Images directly in class subfolders get that class; a folder without subfolders is unlabelled.
Files are read in sorted order, each through the safe decoder; unreadable ones are skipped and
counted in the set's warnings.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..errors import VAEError
from ..settings import DEFAULT_MAX_IMAGES, MAX_IMAGE_BYTES
from .decode import ImageCollector
from .imageset import ImageSet, Progress, Split, check_split, take_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")


def _folder_files(root: Path) -> tuple[list[tuple[Path, str | None]], tuple[str, ...]]:
    """Image files under ``root``, sorted, each with its class: the immediate subfolder's name."""
    def images_under(d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(root).parts))

    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                           and images_under(d)))
    if classes:
        files = [(p, c) for c in classes for p in images_under(root / c)]
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        return files + [(p, None) for p in sorted(loose)], classes
    return [(p, None) for p in images_under(root)], ()


def load_folder(path: str, split: Split, image_size: int, channels: int, max_images: int | None,
                progress: Progress | None) -> ImageSet:
    """One split of the images under ``path``; labels from the class subfolders, if there are any."""
    check_split(split)
    if not str(path).strip():
        raise VAEError("folder: needs the path of a folder of images, e.g. folder:./my-images.")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise VAEError(f"No folder at {path}; give a folder of images (one subfolder per class, if labelled).")
    root = root.resolve()
    files, classes = _folder_files(root)
    notes = []
    loose = [p for p, c in files if c is None]
    if classes and loose:
        notes.append(f"{len(loose)} images directly in {root} belong to no class folder and were skipped.")
        files = [(p, c) for p, c in files if c is not None]
    if not files:
        raise VAEError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    cap = int(max_images or DEFAULT_MAX_IMAGES)
    if len(files) > cap:
        notes.append(f"Read the first {cap:,} of {len(files):,} images (max_images), in sorted order.")
        files = files[:cap]
    full = _decode_folder(root, files, classes, image_size, channels, progress)
    full = dataclasses.replace(full, warnings=tuple(notes) + full.warnings)
    return take_split(full, split)


def _decode_folder(root: Path, files: list[tuple[Path, str | None]], classes: tuple[str, ...], image_size: int,
                   channels: int, progress: Progress | None) -> ImageSet:
    collector = ImageCollector(image_size, channels)
    labels, failed = [], []
    for i, (path, cls) in enumerate(files):
        try:
            size = os.path.getsize(path)
            if size > MAX_IMAGE_BYTES:
                raise VAEError(f"larger than {MAX_IMAGE_BYTES >> 20} MB")
            with open(path, "rb") as fh:
                collector.add(fh.read())
            labels.append(classes.index(cls) if cls is not None else 0)
        except (VAEError, OSError) as e:
            failed.append(f"{Path(path).relative_to(root)}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        if progress is not None and (i % 256 == 255 or i == len(files) - 1):
            progress(i + 1, len(files))
    if not collector.arrays:
        raise VAEError(f"None of the {len(files)} images in {root} could be read; the first: {failed[0]}")
    images, notes = collector.finish()
    if failed:
        notes.insert(0, f"Skipped {len(failed)} unreadable of {len(files)} files, e.g. {failed[0]}")
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64) if classes else None,
                    class_names=classes, name=f"folder:{root}", warnings=tuple(notes))
