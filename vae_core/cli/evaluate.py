"""`evaluate`: test ELBO, IWAE log-likelihood, active units, reconstruction error, and optional extras."""
from __future__ import annotations

import dataclasses
import json
import math

import torch
from tqdm import tqdm

from vae_core.cli import report
from vae_core.cli import cost
from vae_core.cli.args import BIGGEST, add_cost_flags, add_model_source, existing_file, name, real, whole
from vae_core.data import TEST_BINARIZATION_SEED, binarized_set, load_dataset
from vae_core.data.binarize import CHUNK_IMAGES_VALUES
from vae_core.errors import VAEError
from vae_core.io.loading import load_model
from vae_core.evaluation.metrics import collapse_warnings, evaluate_model, iwae_log_likelihood, mutual_information_estimate
from vae_core.evaluation.quality import inception_fid, reconstruction_quality, sample_quality


def add_parser(sub, parents=()) -> None:
    e = sub.add_parser("evaluate", help="test ELBO, IWAE log-likelihood, active units, reconstruction error",
                       parents=list(parents))
    add_model_source(e)
    e.add_argument("--dataset", type=name, default="mnist-5k")
    e.add_argument("--split", default="test", choices=["train", "test", "all"])
    e.add_argument("--iwae-k", type=whole(0, BIGGEST), default=5000,
                   help="importance samples for the IWAE log-likelihood (0: skip it; the app uses fewer)")
    e.add_argument("--binarized", action="store_true",
                   help="score one fixed stochastic binarization of the images (each pixel 1 with probability its "
                        "grey level; --binarize-seed): log p(x) of binary images, as binarized-MNIST papers report")
    e.add_argument("--binarize-seed", type=whole(0, 2 ** 63 - 1), default=TEST_BINARIZATION_SEED,
                   help=f"the seed of that binarization (default {TEST_BINARIZATION_SEED}: every model scored on the "
                        "same binary images)")
    e.add_argument("--batch-size", type=whole(1, 65_536), default=250)
    e.add_argument("--quality", action="store_true",
                   help="add PSNR/SSIM and sample quality in a small classifier's feature space")
    e.add_argument("--fid", action="store_true",
                   help="add the real FID (Inception-v3 via torch-fidelity: pip install -r requirements-fid.txt)")
    e.add_argument("--fid-samples", type=whole(2, 1_000_000), default=10_000,
                   help="images on each side of the FID (default 10000)")
    e.add_argument("--fid-weights", type=existing_file, default=None, help="a local copy of torch-fidelity's Inception weights (offline)")
    e.add_argument("--disentanglement", action="store_true",
                   help="add beta-VAE, FactorVAE, MIG, SAP, DCI and modularity on dSprites")
    e.add_argument("--disentanglement-scale", type=real(0, 100, above=True), default=1.0,
                   help="scale of the metrics' sample counts (1.0: disentanglement_lib's defaults)")
    e.add_argument("--compare", metavar="MODEL", type=name, default=None,
                   help="also evaluate MODEL on the same images with the same seed and k, and print both side by side")
    e.add_argument("--json", action="store_true", help="print every metric as JSON")
    e.add_argument("--quiet", action="store_true")
    add_cost_flags(e)
    e.set_defaults(func=run)


def _extras(args, model, data, res: dict, h: int, c: int) -> None:
    # Imported here: scipy.stats and sklearn cost every command ~1 s of start-up (a `train` too) for this one use.
    from vae_core.evaluation.disentanglement import evaluate_disentanglement
    """--quality, --fid, --compare and --disentanglement, added to ``res``."""
    if args.quality:
        res.update(reconstruction_quality(model, data))
        if data.labels is not None:
            train_data = load_dataset(args.dataset, "train", image_size=h, channels=c)
            res.update(sample_quality(model, train_data, data, seed=args.seed))
    if args.fid:
        fid = inception_fid(model, data, n=args.fid_samples, seed=args.seed, weights_path=args.fid_weights)
        res.update({"fid": fid["fid"], "fid_n": fid["n"]})
    if args.compare:
        res["compare"] = compare(args, model, res, data)
    if args.disentanglement:
        with tqdm(total=6, desc="disentanglement", disable=args.quiet or args.json) as bar:
            res["disentanglement"] = {k: v for k, v in evaluate_disentanglement(
                model, seed=args.seed, scale=args.disentanglement_scale,
                progress=lambda name, i, n: (bar.set_postfix_str(name), bar.update(i - bar.n))).items()
                if not isinstance(v, list)}


IWAE_CHUNK_VALUES = 2 ** 24  # metrics.iwae_log_likelihood's default: values of one chunk of samples
BINARIZE_CHUNK_BYTES = 2 * cost.FLOAT * CHUNK_IMAGES_VALUES   # data.binarized's temporaries: uniforms and grey levels


def estimate(args, model, data) -> cost.Estimate:
    """Memory: one batch's chunk of importance samples at the model's widest decode, refused before anything
    is timed if it cannot fit. Time: one real batch evaluated, and one real chunk of its importance samples,
    each timed once and multiplied by the batches and chunks the job has. --binarized adds the binary copy of
    the images (uint8) and the binarizer's temporaries to the memory; its time, a uniform draw a pixel, is
    far below one batch's and left out."""
    n, k, b = len(data), args.iwae_k, min(args.batch_size, len(data))
    binary = getattr(args, "binarized", False)
    with torch.inference_mode():
        x, y = next(data.batches(1, model.device, with_labels=bool(model.num_classes), limit=1))
        iwae = k > 0 and model.encode(x, y).logvar is not None and model.as_codebook() is None  # as evaluate_model
    chunk = max(1, min(k, IWAE_CHUNK_VALUES // (b * math.prod(model.config.in_shape)))) if iwae else 1
    what = (f"evaluating {n:,} " + ("binarized " if binary else "") + "images"
            + (f" with IWAE k={k:,} ({n * k:,} decodes)" if iwae else ""))
    what += f" and the disentanglement metrics at scale {args.disentanglement_scale:g}" if args.disentanglement else ""
    binary_copy = n * math.prod(model.config.in_shape) + BINARIZE_CHUNK_BYTES if binary else 0  # uint8
    est = cost.Estimate(what, 0.0, 2 * b * chunk * cost.decode_bytes(model) + binary_copy,
                        "lower --iwae-k" + (" or --disentanglement-scale" if args.disentanglement else "")
                        + " or --batch-size")
    cost.check_memory(est, model.device)
    batch = cost.timed(lambda: evaluate_model(model, data, batch_size=b, max_images=b), repeats=1)
    seconds = math.ceil(n / b) * batch
    if iwae:
        gen = torch.Generator(device=model.device).manual_seed(0)
        x, y = next(data.batches(b, model.device, with_labels=bool(model.num_classes), limit=b))
        with torch.inference_mode():
            post = model.encode(x, y)
        one_chunk = cost.timed(lambda: iwae_log_likelihood(model, x, y, post, chunk, gen), repeats=1)
        seconds += math.ceil(n / b) * math.ceil(k / chunk) * one_chunk
    seconds *= 2 if args.compare else 1
    if args.disentanglement:
        from vae_core.evaluation.disentanglement import images_needed
        seconds += images_needed(scale=args.disentanglement_scale) * batch / b
    return dataclasses.replace(est, seconds=seconds)


def run(args) -> int:
    model = load_model(args.model_source, device=args.device, revision=args.revision)
    c, h, w = model.config.in_shape
    data = load_dataset(args.dataset, args.split, image_size=h, channels=c)
    if args.binarized:
        _check_binarizable(model, args.model_source)
    cost.check(estimate(args, model, data), args, model.device)
    if args.binarized:
        data = binarized_set(data, args.binarize_seed)
    with tqdm(total=len(data), unit="img", disable=args.quiet or args.json, desc="evaluating") as bar:
        res = evaluate_model(model, data, batch_size=args.batch_size, iwae_k=args.iwae_k, seed=args.seed,
                             progress=lambda done, n: bar.update(done - bar.n))
    if "kl_per_dim" in res:
        res["mutual_information"] = mutual_information_estimate(model, data, seed=args.seed)
        res["mutual_information_images"] = min(len(data), 1000)       # the estimator's default n
    res["seed"] = args.seed
    res["warnings"] = collapse_warnings(res)
    _extras(args, model, data, res, h, c)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(report.evaluation(args.model_source, args.dataset, args.split, res))
    return 0


def _check_binarizable(model, source: str) -> None:
    """--binarized scores 0/1 images: only a Bernoulli likelihood gives them a probability."""
    if model.config.likelihood != "bernoulli":
        raise VAEError(f"--binarized scores binary images with a Bernoulli likelihood; {source}'s likelihood is "
                       f"{model.config.likelihood!r}, whose bits/dim are already discretised: evaluate it without "
                       "--binarized.")


def compare(args, model, res: dict, data) -> dict:
    """The same evaluation of ``args.compare`` on the same images, with the same seed and k, as a table
    beside the evaluated model: parameters, ELBO, IWAE log p(x) and its difference."""
    other = load_model(args.compare, device=args.device)
    if args.binarized:
        _check_binarizable(other, args.compare)
    if tuple(other.config.in_shape) != tuple(model.config.in_shape):
        raise VAEError(f"--compare needs a model of the same image shape; {args.compare} takes "
                       f"{list(other.config.in_shape)}, {args.model_source} takes {list(model.config.in_shape)}.")
    theirs = evaluate_model(other, data, batch_size=args.batch_size, iwae_k=args.iwae_k, seed=args.seed)
    rows = [{"model": name, "parameters": sum(p.numel() for p in m.parameters()), "elbo": r.get("elbo"),
             "log_likelihood": r.get("log_likelihood"), "bits_per_dim": r.get("bits_per_dim"),
             "scored_as": r.get("scored_as")}
            for name, m, r in ((args.model_source, model, res), (args.compare, other, theirs))]
    table, gap = report.comparison(rows, ours=args.model_source, theirs=args.compare, n_images=res["n_images"],
                                   dataset=args.dataset, split=report.which_images(args.split, res), seed=args.seed,
                                   iwae_k=args.iwae_k)
    return {"models": rows, "log_likelihood_gain": gap, "table": table}
