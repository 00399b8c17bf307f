"""Datasets: every source yields an ImageSet of uint8 images (N, C, H, W).

One file a source: ``builtin`` (mnist-5k, digits), ``dsprites`` (rendered from its factor grid),
``hub_parquet`` (``hf:org/name``), ``folder`` (``folder:PATH``); ``decode`` reads image files
safely; ``binarize`` draws Bernoulli images from grey levels; ``packed`` keeps binary images
(dSprites) a bit a pixel; ``registry`` holds the one table of named sets and ``load_dataset``. Each set has a fixed, seeded train/test split (a Hub
dataset uses its own test split where it has one).
"""
from .binarize import TEST_BINARIZATION_SEED, bernoulli_draw, binarized, binarized_set
from .dsprites import (DSPRITES_FACTOR_NAMES, DSPRITES_N, DSPRITES_SHAPES, DSPRITES_SIZES, build_dsprites_cache,
                       dsprites_factor_indices, dsprites_factor_values, dsprites_factors, dsprites_index,
                       dsprites_subset_indices, render_dsprites)
from .hub_parquet import parse_hf_spec
from .imageset import ImageSet, Progress, Split, class_balanced_indices, conform, seeded_indices, split_indices
from .packed import PackedImages
from .registry import DATASETS, DatasetSpec, app_datasets, load_dataset

__all__ = ["DATASETS", "TEST_BINARIZATION_SEED", "bernoulli_draw", "binarized", "binarized_set", "class_balanced_indices", "DSPRITES_FACTOR_NAMES", "DSPRITES_N", "DSPRITES_SHAPES", "DSPRITES_SIZES", "DatasetSpec",
           "ImageSet", "PackedImages", "Progress", "Split", "app_datasets", "build_dsprites_cache", "conform",
           "dsprites_factor_indices", "dsprites_factor_values", "dsprites_factors", "dsprites_index",
           "dsprites_subset_indices", "load_dataset", "parse_hf_spec", "render_dsprites", "seeded_indices",
           "split_indices"]
