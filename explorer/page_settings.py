"""Every page's settings, declared once (explorer/controls.py says what a declaration drives).

A page draws its widgets from here (``controls.draw(PAGE, key, ctx)``), explorer.links writes
and reads links from here, and the app keeps each page's values across page switches from here.
Bounds that depend on the model or the data are functions ``f(ctx, state)``.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from vae_core.evaluation import anomaly
from vae_core.latent import class_style as style, codebook, explore, hierarchy as layers, projections as project
from vae_core.config import TrainConfig
from vae_core.data import app_datasets

from explorer import controls, handoff, limits, loaders, spots
from explorer.handoff import SOURCE                # how the destination pages name a code chosen on the latent map
from explorer.widgets import IMAGE_SOURCES         # where an image comes from: the dataset, an upload, a drawing
from explorer.controls import LinkError, Page, Setting

SPLITS = ("all", "train", "test")


# ---------------------------------------------------------------------------------------------
# What the bounds depend on


def data_len(ctx, s=None) -> int:
    return len(ctx.data) if ctx is not None and ctx.data is not None else 0


def last_image(ctx, s=None) -> int:
    return data_len(ctx) - 1


def last_class(ctx, s=None) -> int:
    """A conditional model's classes (-1: none, so a class does not apply)."""
    return ctx.model.num_classes - 1 if ctx is not None and ctx.model is not None and ctx.model.num_classes else -1


def units(ctx, s=None) -> int:
    return explore.num_units(ctx.model) if ctx is not None and ctx.model is not None else 0


def last_data_class(ctx, s=None) -> int:
    d = ctx.data if ctx is not None else None
    return int(d.labels.max()) if d is not None and d.labels is not None else -1


def layer_count(ctx, s=None) -> int:
    """Latent layers of a hierarchical VAE (0 for any other model)."""
    m = ctx.model if ctx is not None else None
    return len(layers.layer_names(m)) if m is not None and layers.is_hierarchical(m) else 0


def codebook_size(ctx, s=None) -> int:
    m = ctx.model if ctx is not None else None
    return m.config.codebook_size if m is not None and codebook.has_code_prior(m) else -1


def image_source_in_use(slot: str):
    """An image given by upload, drawing or the latent map: a link cannot carry it."""
    return lambda s: s.get(f"{slot}_source", IMAGE_SOURCES[0]) != IMAGE_SOURCES[0]


def image_settings(slot: str, param: str, what: str, default_index: int = 0) -> tuple[Setting, ...]:
    """The settings of one image picker (explorer.widgets.image_input draws them)."""
    return (Setting(f"{slot}_source", "choice", None, IMAGE_SOURCES[0], widget="radio",
                    options=lambda c, s: (*IMAGE_SOURCES, SOURCE),
                    left_out=f"{what} (an upload, a drawing or a code from the latent map: only a dataset "
                             "image travels in a link)", in_use=image_source_in_use(slot)),
            Setting(f"{slot}_index", "int", param, lambda c, s: min(default_index, max(0, last_image(c))), 0,
                    last_image, widget="number", in_use=lambda s: not image_source_in_use(slot)(s)))


def seed(key: str, param: str = "seed", top: int = 2**31 - 1) -> Setting:
    return Setting(key, "int", param, 0, 0, top, widget="number", label="Seed")


# ---------------------------------------------------------------------------------------------
# The sidebar (read before the page: the model and the data it is checked against)


def _shipped(ctx, s):
    return loaders.shipped_checkpoints()


def _datasets(ctx, s):
    return app_datasets()


REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
REVISION = re.compile(r"[\w][\w.\-/]{0,99}")


def _check_hub(raw: str) -> None:
    if not REPO_ID.fullmatch(raw):
        raise LinkError("hub must be a Hub repo id, org/name")
    # The model loader opens an existing local folder before it asks the Hub: a link's id must
    # not be one (nor inside one) on this server. Public mode's loader never looks there, so it
    # gives every id the same answer, whatever folders the server has.
    if not limits.settings().public and (Path(raw).exists() or Path(raw).parent.exists()):
        raise LinkError("hub must be a Hub repo id, and this one is also a path on the server")


def _check_revision(raw: str) -> None:
    if not REVISION.fullmatch(raw) or ".." in raw:
        raise LinkError("rev must be a Hub branch, tag or commit")


def _kind(kind: str):
    return lambda s: s.get("model_kind", "Shipped") == kind


SIDEBAR = Page("sidebar", (
    Setting("model_shipped", "choice", "model", options=_shipped, in_use=_kind("Shipped"),
            implies=MappingProxyType({"model_kind": "Shipped"})),
    Setting("model_hub", "text", "hub", in_use=_kind("Hub"), implies=MappingProxyType({"model_kind": "Hub"}),
            validate=_check_hub),
    Setting("model_revision", "text", "rev", in_use=_kind("Hub"), validate=_check_revision),
    Setting("dataset", "choice", "data", options=_datasets),
    Setting("split", "choice", "split", options=SPLITS),
))

# ---------------------------------------------------------------------------------------------
# The pages

SAMPLE = Page("sample", (
    Setting("sample_count", "int", "n", 36, 1, 100, widget="slider", label="Count"),
    Setting("sample_temperature", "float", "t", 1.0, 0.1, 2.0, 0.05, widget="slider", label="Temperature (scale of z)"),
    seed("sample_seed"),
    Setting("sample_draw", "int", "draw", 0, 0, 10**6),
    Setting("sample_class", "int", "class", 0, 0, last_class, widget="select"),
    Setting("sample_top_k", "int", "topk", 0, 0, codebook_size, widget="slider"),
    # a hierarchical VAE's inspector: a temperature per layer, and the resample-one-layer grid
    Setting("sample_layer_temperature_", "vector", "layers", 1.0, 0.0, 2.0, 0.05, count=layer_count),
    Setting("sample_resample_layer", "int", "rl", lambda c, s: max(0, layer_count(c) - 1), 0,
            lambda c, s: layer_count(c) - 1, widget="select"),
    Setting("sample_resample_rows", "int", "rr", 4, 1, 8, widget="slider", label="Rows"),
    Setting("sample_resample_cols", "int", "rc", 8, 2, 10, widget="slider", label="Columns"),
))

TRAVERSE_RANGE = 4.0          # slider range, in prior standard deviations
TRAVERSE_BASES = ("Dataset image", "Random sample", "Zero")
TRAVERSE_STEPS = 9            # traversal columns: a row of readable tiles across the page
TRAVERSE_PLANE = 10           # the latent plane's side, in tiles
DIRECTION_KINDS = MappingProxyType({
    "Principal": "the principal axes of 1,000 encoded images, largest variance first",
    "Local": "where the decoded image changes most at the code above (the top singular vectors of the decoder's "
             "Jacobian there)",
    "Factor": "how the mean code moves as each ground-truth factor grows (the codes regressed on the factors)",
    "Class A - B": "class A's mean code minus class B's"})


def traverse_bases(ctx, s) -> list[str]:
    """The base codes Traverse offers: a selection's, where it has one (its images, or a code sent here)."""
    sent = ctx is not None and handoff.receive("traverse", ctx.model_key) is not None
    return list(TRAVERSE_BASES) + ([SOURCE] if s.get("traverse_from") or sent else [])


def direction_kinds(ctx, s) -> list[str]:
    data = ctx.data if ctx is not None else None
    return ((["Principal"] if data is not None else []) + ["Local"] +
            (["Factor"] if data is not None and data.factors is not None else []) +
            (["Class A - B"] if data is not None and data.labels is not None else []))


def layer_size(ctx, s) -> int:
    """The units of the layer the traversal shows (0 for a model without layers)."""
    n = layer_count(ctx)
    return ctx.model.layer_sizes[min(max(int(s.get("traverse_layer") or 0), 0), n - 1)] if n else 0


def class_follows(key: str, param: str = "class") -> tuple[Setting, ...]:
    """A conditional model's class that follows the chosen image until the user picks one: only a
    picked class travels in a link (and a link's class counts as picked)."""
    return (Setting(key, "int", param, 0, 0, last_class, widget="select",
                    in_use=lambda s: bool(s.get(f"{key}_chosen")), implies=MappingProxyType({f"{key}_chosen": True})),
            Setting(f"{key}_chosen", "bool"))


TRAVERSE = Page("traverse", (
    Setting("traverse_from", "indices", "from", left_out="the base code's selection of {n:,} images (a link carries "
            "at most 200; select fewer on the map to share it)"),
    Setting("traverse_base", "choice", "base", TRAVERSE_BASES[0], options=traverse_bases, widget="radio",
            label="Base code"),
    Setting("traverse_index", "int", "i", 0, 0, last_image, widget="number", label="Image index"),
    seed("traverse_seed"),
    *class_follows("traverse_class"),
    Setting("traverse_z", "vector", "z", 0.0, -TRAVERSE_RANGE, TRAVERSE_RANGE, 0.05, count=units),
    Setting("traverse_dir_kind", "choice", "dir", lambda c, s: direction_kinds(c, s)[0], options=direction_kinds,
            widget="radio", label="Move along"),
    Setting("traverse_dir_a", "int", "da", 0, 0, last_data_class, widget="select", label="Class A"),
    Setting("traverse_dir_b", "int", "db", lambda c, s: min(1, max(0, last_data_class(c))), 0, last_data_class,
            widget="select", label="Class B"),
    Setting("traverse_dir", "vector", "d", 0.0, -TRAVERSE_RANGE, TRAVERSE_RANGE, 0.1),
    Setting("traverse_rows", "int", "rows", lambda c, s: min(8, units(c)), 1, units, widget="slider",
            label="Rows (top units)"),
    Setting("traverse_cols", "int", "cols", 7, 3, TRAVERSE_STEPS, 2, widget="slider",
            label="Columns (values from -3 to 3)"),
    Setting("traverse_manifold", "int", "plane", TRAVERSE_PLANE, 3, TRAVERSE_PLANE, widget="slider", label="Grid size"),
    Setting("traverse_layer", "int", "layer", 0, 0, lambda c, s: layer_count(c) - 1, widget="radio"),
    Setting("traverse_layer_rows", "int", "lrows", lambda c, s: min(6, layer_size(c, s)), 1, layer_size,
            widget="slider", label="Rows (the layer's top units)"),
))

INTERPOLATE_STEPS = 24
INTERPOLATE = Page("interpolate", (
    *image_settings("interp_a", "a", "image A", 0),
    *image_settings("interp_b", "b", "image B", 1),
    *image_settings("interp_c", "c", "image C", 2),
    *class_follows("interp_decode_class"),
    Setting("interp_steps", "int", "steps", 10, 2, INTERPOLATE_STEPS, widget="slider", label="Steps"),
    Setting("interp_method", "choice", "path", "linear", options=("linear", "spherical"), widget="radio", label="Path",
            help="Spherical (slerp) keeps the norm of the code near that of a typical Gaussian draw."),
    Setting("interp_attr_to", "int", "to", lambda c, s: min(1, max(0, last_data_class(c))), 0, last_data_class,
            widget="select", label="Towards class"),
    Setting("interp_attr_from", "int", "away", 0, 0, last_data_class, widget="select", label="Away from class"),
    Setting("interp_attr_alpha", "float", "strength", 1.0, -2.0, 2.0, 0.1, widget="slider", label="Strength"),
))

MAP_METHODS = MappingProxyType({"PCA": "pca", "t-SNE": "tsne", "UMAP": "umap"})
MAP_CODES_2D = "Codes (2-D latent)"


def map_colours(data) -> list[str]:
    """The Latent map's "Colour by" choices for a dataset."""
    if data is None:
        return ["none"]
    return (["label"] if data.labels is not None else []) + list(data.factor_names) + ["none"]


def _map_points(ctx, s=None) -> int:
    """The Points slider's top: the dataset, or the server's budget of a PCA map (raster included)."""
    return min(data_len(ctx), limits.settings().max_points("pca"))


def _map_methods(ctx, s) -> list[str]:
    return ([MAP_CODES_2D] if ctx.model is not None and ctx.model.latent_shape == (2,) else []) + list(MAP_METHODS)


def _perplexity_top(ctx, s) -> float:
    n = s.get("map_points") or _map_points(ctx)
    return max(1.0, min(50.0, float(int(project.max_perplexity(int(n))))))


def _tiles(i):
    return spots.FIELD_TILES[i]


LATENT_MAP = Page("latent_map", (
    Setting("map_points", "int", "points", lambda c, s: min(_map_points(c), 5000),
            lambda c, s: min(100, data_len(c)), _map_points, lambda c, s: max(1, min(100, _map_points(c) - 100)),
            widget="slider", label="Points"),
    Setting("map_method", "choice", "method", lambda c, s: _map_methods(c, s)[0], options=_map_methods,
            widget="radio", label="Projection"),
    Setting("map_colour", "choice", "colour", lambda c, s: map_colours(c.data)[0],
            options=lambda c, s: map_colours(c.data), widget="select", label="Colour by"),
    Setting("map_perplexity", "float", "perplexity", lambda c, s: min(30.0, _perplexity_top(c, s)), 1.0,
            _perplexity_top, 1.0, widget="slider", label="Perplexity"),
    Setting("map_neighbors", "int", "neighbors", 15, 5, 50, widget="slider", label="Neighbours"),
    Setting("map_min_dist", "float", "min_dist", 0.1, 0.0, 0.99, 0.01, widget="slider", label="Minimum distance"),
    Setting("map_pick", "indices", "pick", "", widget="text", label="Or show images by index",
            left_out="the selection of {n:,} images (a link carries at most 200; select fewer to share them)"),
    Setting("map_selected", "indices", "sel",
            left_out="the selection of {n:,} images (a link carries at most 200; select fewer to share them)"),
    Setting("map_spot_class", "int", "spotclass", 0, 0, last_class, widget="select"),
    Setting("map_field", "bool", "field", False, widget="toggle", label="Decoded field",
            help="Images decoded on a grid of spots, over the prior's log-density at the codes the map's spots "
                 "stand for."),
    Setting("map_field_tiles", "int", "tiles", lambda c, s: _tiles(2), lambda c, s: _tiles(0), lambda c, s: _tiles(1),
            widget="slider", label="Images a side"),
    # a shown image and its neighbours fit a row of readable tiles in 3/5 of the page: at most 5 neighbours
    Setting("map_k", "int", "k", 4, 1, 5, widget="slider", label="Nearest neighbours in latent space"),
    Setting("map_page", "int", None, 1, 1, None, widget="number"),
    # the spot decoded on the map (explorer.spots draws it): kept across pages; a link does not carry it
    Setting("map_spot_x", "float", None, widget="number", left_out="the spot decoded on the map",
            in_use=lambda s: s.get("map_spot_x") is not None and s.get("map_spot_y") is not None),
    Setting("map_spot_y", "float", None, widget="number"),
))

ANALYZE_DSPRITES = ("shape", "scale", "orientation", "posX", "posY")
ANALYSES = MappingProxyType({"units": "Latent units", "factors": "Factors", "anomalies": "Anomalies",
                             "recon": "Reconstructions", "disentanglement": "Disentanglement",
                             "directions": "Directions and factors", "layers": "Layers", "codebook": "Codebook"})


def analyses(ctx, s=None) -> list[str]:
    """The analyses the Analyze page offers for this model and dataset."""
    a, data, model = ANALYSES, ctx.data, ctx.model
    factors = data is not None and data.factors is not None
    own = [] if model is None else [a["layers"]] if layers.is_hierarchical(model) else \
        [a["codebook"]] if codebook.is_vq(model) else []
    return ([a["units"], a["anomalies"], a["recon"]] + ([a["factors"], a["directions"]] if factors else []) +
            ([a["disentanglement"]] if factors and data.factor_names == ANALYZE_DSPRITES else []) + own)


def _default_analyses(ctx, s) -> list[str]:
    offered = analyses(ctx)
    return [a for a in (ANALYSES["units"], ANALYSES["layers"], ANALYSES["codebook"], ANALYSES["recon"]) if a in offered]


def _score_kinds(ctx, s):
    return anomaly.score_kinds(ctx.model)[0] if ctx.model is not None else ()


def _anomaly_classes(ctx, s):
    d = ctx.data
    return ["(none)"] + (list(d.class_names) if d is not None and d.labels is not None and d.class_names else [])


ANALYZE = Page("analyze", (
    Setting("an_pick", "choices", "show", _default_analyses, options=analyses, widget="multiselect", label="Analyses"),
    Setting("an_n", "choice", "n", 1000, options=(250, 500, 1000, 2000, 5000), widget="select_slider",
            label="Images to analyse"),
    seed("an_seed", top=10_000),
    Setting("an_recon_count", "int", "recon", 16, 4, 32, 4, widget="slider", label="Images"),
    Setting("an_threshold", "float", "threshold", 95.0, 50.0, 99.9, 0.1, widget="slider",
            label="Threshold (percentile of the scores)"),
    Setting("an_iwae_k", "choice", "iwae", 0, options=(0, 10, 50, 100, 500), widget="select_slider",
            label="IWAE samples for log p(x) (0: skip)"),
    Setting("an_score_kind", "choice", "score", lambda c, s: _score_kinds(c, s)[0], options=_score_kinds,
            widget="select", label="Score"),
    Setting("an_anomaly_class", "choice", "anomaly", "(none)", options=_anomaly_classes, widget="select",
            label="Class to treat as the anomaly"),
    Setting("an_dis_scale", "choice", "scale", 0.02, options=(0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            widget="select_slider", label="Share of disentanglement_lib's sample counts",
            help="1.0 is the library's defaults (10,000 points; several minutes on a CPU)."),
    Setting("an_cb_index", "int", "cb", 0, 0, last_image, widget="number", label="Dataset image"),
    Setting("an_cb_edited", "int", None, left_out="the code grid's edits", in_use=lambda s: bool(s.get("an_cb_edited"))),
))


def unit_sample(model, state=None) -> tuple[int, int]:
    """(n, seed) of the images every page measures "some images" on (Traverse's KL per unit, Analyze's units):
    Analyze's "Images to analyse" and seed, within the image budget; the images are ``data.seeded_subset(n, seed)``."""
    n, seed = (controls.value(ANALYZE, key, state) for key in ("an_n", "an_seed"))
    n, seed = (ANALYZE[k].default if v is None else int(v) for k, v in (("an_n", n), ("an_seed", seed)))
    return min(n, limits.settings().max_images(model)), seed


CLASSES_GIVEN = ("the predicted class", "its label")


def _style_rows(ctx, s=None) -> int:
    """The Class & style grid's most styles for this model's classes."""
    k = ctx.model.num_classes if ctx is not None and ctx.model is not None else 0
    return max(1, min(12, style.MAX_GRID_IMAGES // max(1, k or 1)))


CLASSES = Page("classes", (
    Setting("classes_styles", "int", "styles", lambda c, s: min(_style_rows(c), max(1, 60 // max(1, -~last_class(c)))),
            1, _style_rows, widget="slider", label="Styles"),
    Setting("classes_temperature", "float", "t", 1.0, 0.1, 2.0, 0.05, widget="slider", label="Temperature (scale of z)"),
    seed("classes_seed"),
    *image_settings("style_src", "i", "the image"),
    Setting("classes_given", "choice", "given", CLASSES_GIVEN[0], options=CLASSES_GIVEN, widget="radio",
            label="Read the style given"),
))

AUGMENT_FROM = ("posterior", "prior")
AUGMENT = Page("augment", (
    *image_settings("aug_src", "i", "the image"),
    Setting("aug_scale", "float", "spread", 1.0, 0.0, 3.0, 0.1, widget="slider", label="Spread (posterior std devs)",
            help="How far from the posterior mean to draw: z = mu + spread x std x eps."),
    Setting("aug_count", "int", "n", 16, 1, 64, widget="slider", label="Images"),
    seed("aug_seed"),
    Setting("aug_mode", "choice", "from", AUGMENT_FROM[0], options=AUGMENT_FROM, widget="radio", label="Draw from"),
))

TRAIN_FAMILIES = MappingProxyType({"mlp": "MLP", "conv": "Convolutional", "cvae": "Conditional (MLP)", "vq": "VQ-VAE"})
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def _max_epochs(ctx, s) -> int:
    return limits.settings().max_epochs


def _train_datasets(ctx, s):
    return limits.settings().datasets()


TRAIN = Page("train", (
    Setting("train_dataset", "choice", None, lambda c, s: _train_datasets(c, s)[0], options=_train_datasets,
            widget="select", label="Dataset"),
    Setting("train_family", "choice", None, "mlp", options=tuple(TRAIN_FAMILIES), widget="select", label="Model family"),
    Setting("train_latent", "int", None, 8, 1, 64, widget="number", label="Latent size",
            help="The code's dimension (a VQ-VAE: the size of each code vector)."),
    Setting("train_epochs", "int", None, lambda c, s: min(10, _max_epochs(c, s)), 1, _max_epochs, widget="number"),
    Setting("train_beta", "float", None, 1.0, 0.0, 20.0, 0.1, widget="number", label="Beta (KL weight)"),
    Setting("train_anneal", "choice", None, "none", options=("none", "linear", "cyclical"), widget="select",
            label="KL annealing"),
    Setting("train_lr", "choice", None, TrainConfig.lr, options=LEARNING_RATES, widget="select_slider",
            label="Learning rate"),
), note="the training settings and the run (a link opens Train with its defaults; a run stays in its session)")

PAGES = MappingProxyType({p.name: p for p in (SAMPLE, TRAVERSE, INTERPOLATE, LATENT_MAP, TRAIN, ANALYZE, CLASSES,
                                              AUGMENT)})
