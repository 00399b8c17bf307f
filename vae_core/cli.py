"""`python -m vae_core train | train-prior | evaluate | sample | directions | push | convert | augment | map |
experiment`.

Every config field is a flag (--latent-dim 2, --hidden-dims 512 256, --kl-anneal linear, ...)
and can also come from a YAML or JSON file (--config run.yaml); flags win over the file.
Problems a user can fix print one line and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

from .config import TrainConfig, field_types, from_dict
from .errors import VAEError



def _model_fields() -> dict[str, object]:
    from .models import MODEL_TYPES
    fields: dict[str, object] = {}
    for cfg_cls, _ in MODEL_TYPES.values():
        fields.update(field_types(cfg_cls))
    return fields


def _add_field_flags(parser: argparse.ArgumentParser, fields: dict[str, object], title: str) -> None:
    group = parser.add_argument_group(title)
    for name, hint in fields.items():
        flag = "--" + name.replace("_", "-")
        kw: dict = {"default": None, "dest": name}
        if get_origin(hint) is Literal:
            kw.update(choices=list(get_args(hint)))
        elif hint is bool:
            kw.update(action=argparse.BooleanOptionalAction)
        elif get_origin(hint) is tuple:
            kw.update(nargs="+", type=int, metavar="N")
        elif hint in (int, float, str):
            kw.update(type=hint)
        group.add_argument(flag, **kw)


def _read_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise VAEError(f"Config file {path} does not exist.")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml
            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except Exception as e:   # yaml and json raise several types; all mean "malformed"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VAEError(f"Config file {path} is malformed ({first}); fix its syntax.") from None
    if not isinstance(d, dict):
        raise VAEError(f"Config file {path} must hold a mapping with 'model' and/or 'train' sections.")
    return d


def build_run_config(args: argparse.Namespace):
    """Defaults < config file < flags. Shapes and class counts default to the dataset's."""
    from .data import load_dataset
    from .models import MODEL_TYPES
    from .io.run_folder import RunConfig

    file = _read_config_file(args.config) if args.config else {}
    extra = set(file) - {"model", "train"}
    if extra:
        raise VAEError(f"Config file {args.config} has unknown section(s) {sorted(extra)}; use 'model' and 'train'.")
    model_d = dict(file.get("model") or {})
    train_d = dict(file.get("train") or {})
    if args.model:
        model_d["model_type"] = args.model
    model_d.setdefault("model_type", "mlp")
    kind = model_d["model_type"]
    if kind not in MODEL_TYPES:
        raise VAEError(f"Unknown model type {kind!r}; choose one of {sorted(MODEL_TYPES)}.")
    own = field_types(MODEL_TYPES[kind][0])
    for name in _model_fields():
        v = getattr(args, name, None)
        if v is None:
            continue
        if name not in own:
            raise VAEError(f"--{name.replace('_', '-')} does not apply to model type {kind!r}.")
        model_d[name] = list(v) if isinstance(v, list) else v
    for name in field_types(TrainConfig):
        v = getattr(args, name, None)
        if v is not None:
            train_d[name] = v
    probe = RunConfig.from_dict({"model": {"model_type": kind}, "train": train_d}).train
    told_classes = kind in ("cvae", "m2")          # the families whose class count is the dataset's
    if "in_shape" not in model_d or (told_classes and "num_classes" not in model_d):
        data = load_dataset(probe.dataset, "train", image_size=probe.image_size)
        model_d.setdefault("in_shape", list(data.shape))
        if told_classes:
            model_d.setdefault("num_classes", data.num_classes)
    return RunConfig.from_dict({"model": model_d, "train": train_d})


def cmd_train(args) -> int:
    import torch.distributed as dist
    from tqdm import tqdm

    from .training.loop import train
    from .io.run_folder import load_run_config

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        import torch
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if args.resume and args.out and not _any_flags(args):
        config = load_run_config(args.out)
    else:
        config = build_run_config(args)
        if args.resume and args.out and args.epochs is not None:
            saved = load_run_config(args.out)
            config = dataclasses.replace(saved, train=dataclasses.replace(saved.train, epochs=args.epochs))
    bar = None
    try:
        for ev in train(config, out_dir=args.out, resume=args.resume):
            if rank:
                continue
            if ev.kind == "start":
                bar = tqdm(total=ev.total_steps, initial=ev.step, unit="step", dynamic_ncols=True,
                           disable=args.quiet)
                tqdm.write(ev.message) if not args.quiet else None
            elif ev.kind == "step":
                bar.update(ev.step - bar.n)
                bar.set_postfix({k: f"{v:.3g}" for k, v in ev.losses.items() if k != "kl_weight"}
                                | {"img/s": f"{ev.images_per_s:,.0f}"})
            elif ev.kind == "epoch" and ev.eval and not args.quiet:
                e = ev.eval
                units = f", active units {e['active_units']}/{e['latent_units']}" if "active_units" in e else ""
                units += f", accuracy {e['accuracy']:.1%}" if "accuracy" in e else ""
                codebook = ""
                if "perplexity" in ev.losses:
                    restarted = int(ev.losses.get("dead_codes_restarted", 0))
                    codebook = (f"; codebook {ev.losses['codebook_usage']:.0%} used over the epoch (perplexity "
                                f"{ev.losses['perplexity']:.1f})" + (f", {restarted} dead codes re-initialised"
                                                                     if restarted else ""))
                tqdm.write(f"epoch {ev.epoch}: test ELBO {e['elbo']:.2f} nats (recon {e['recon']:.2f}, "
                           f"KL {e['kl']:.2f}; nats per image, {e['n_images']:,} images){units}{codebook}")
            elif ev.kind == "done":
                if bar:
                    bar.close()
                where = f"; saved to {args.out}" if args.out else ""
                print(f"{ev.message} after {ev.step} steps in {ev.elapsed:.1f} s{where}")
    finally:
        if bar:
            bar.close()
        if dist.is_initialized():
            dist.barrier()      # rank 0 may still be writing the last checkpoint
            dist.destroy_process_group()
    return 0


def _any_flags(args) -> bool:
    names = set(_model_fields()) | set(field_types(TrainConfig)) | {"model", "config"}
    return any(getattr(args, n, None) is not None for n in names)


def cmd_train_prior(args) -> int:
    from tqdm import tqdm

    from .training.prior import ARCH_FIELDS, PriorTrainConfig, train_prior

    cfg = from_dict(PriorTrainConfig, {f.name: getattr(args, f.name) for f in dataclasses.fields(PriorTrainConfig)
                                       if getattr(args, f.name) is not None})
    arch = {name: getattr(args, name) for name in ARCH_FIELDS if getattr(args, name) is not None}
    bar = None
    try:
        for ev in train_prior(args.run_dir, arch, cfg):
            if ev.kind == "start":
                bar = tqdm(total=ev.total_steps, unit="step", dynamic_ncols=True, disable=args.quiet)
                tqdm.write(ev.message) if not args.quiet else None
            elif ev.kind == "step":
                bar.update(ev.step - bar.n)
                bar.set_postfix({"nll": f"{ev.losses['nll']:.2f}", "grids/s": f"{ev.images_per_s:,.0f}"})
            elif ev.kind == "epoch" and not args.quiet:
                e = ev.eval
                tqdm.write(f"epoch {ev.epoch}: code NLL per grid, train {e['train_nll']:.2f}, held-out "
                           f"{e['test_nll']:.2f} (independent frequencies: {e['frequency_nll']:.2f})")
            elif ev.kind == "done":
                if bar:
                    bar.close()
                print(f"{ev.message}; saved to {args.run_dir}")
    finally:
        if bar:
            bar.close()
    return 0


def cmd_evaluate(args) -> int:
    from tqdm import tqdm

    from .data import load_dataset
    from .io.loading import load_model
    from .evaluation.metrics import collapse_warnings, evaluate_model, mutual_information_estimate, mutual_information_note

    model = load_model(args.model_source, device=args.device, revision=args.revision)
    c, h, w = model.config.in_shape
    data = load_dataset(args.dataset, args.split, image_size=h, channels=c)
    with tqdm(total=len(data), unit="img", disable=args.quiet or args.json, desc="evaluating") as bar:
        res = evaluate_model(model, data, batch_size=args.batch_size, iwae_k=args.iwae_k, seed=args.seed,
                             progress=lambda done, n: bar.update(done - bar.n))
    if "kl_per_dim" in res:
        res["mutual_information"] = mutual_information_estimate(model, data, seed=args.seed)
        res["mutual_information_images"] = min(len(data), 1000)       # the estimator's default n
    res["warnings"] = collapse_warnings(res)
    if args.quality:
        from .evaluation.quality import reconstruction_quality, sample_quality
        res.update(reconstruction_quality(model, data))
        if data.labels is not None:
            train_data = load_dataset(args.dataset, "train", image_size=h, channels=c)
            res.update(sample_quality(model, train_data, data, seed=args.seed))
    if args.fid:
        from .evaluation.quality import inception_fid
        fid = inception_fid(model, data, n=args.fid_samples, seed=args.seed,
                            weights_path=args.fid_weights)
        res.update({"fid": fid["fid"], "fid_n": fid["n"]})
    if args.compare:
        res["compare"] = _compare(args, model, res, data)
    if args.disentanglement:
        from .evaluation.disentanglement import evaluate_disentanglement
        with tqdm(total=6, desc="disentanglement", disable=args.quiet or args.json) as bar:
            res["disentanglement"] = {k: v for k, v in evaluate_disentanglement(
                model, seed=args.seed, scale=args.disentanglement_scale,
                progress=lambda name, i, n: (bar.set_postfix_str(name), bar.update(i - bar.n))).items()
                if not isinstance(v, list)}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.model_source} on {args.dataset} ({args.split} split, {res['n_images']:,} images, seed {args.seed})")
    rows = []
    if "code_prior" in res:
        rows += [("log p(x|codes) + log p(codes) (nats)", res["elbo"]),
                 ("  decoder log p(x|codes)", -res["recon"]), ("  code prior log p(codes)", -res["prior_code_nll"]),
                 ("  bits/dim", res["elbo_bits_per_dim"])]
    elif "elbo" in res:
        rows += [("ELBO, 1 sample per image (nats)", res["elbo"]),
                 ("  reconstruction -log p(x|z) (nats)", res["recon"]), ("  KL (nats)", res["kl"])]
    else:
        rows.append(("reconstruction -log p(x|z) (nats)", res["recon"]))
    if "log_likelihood" in res:
        rows += [(f"IWAE log p(x), k={res['iwae_k']} (nats)", res["log_likelihood"]),
                 ("  bits/dim", res["bits_per_dim"])]
    if "active_units" in res:
        rows.append(("active units", f"{res['active_units']}/{res['latent_units']}"))
    if "mutual_information" in res:
        rows.append(("I(x; z) estimate (nats)", res["mutual_information"]))
        rows.append(("  " + mutual_information_note(res["mutual_information"], res["mutual_information_images"]), ""))
    rows.append(("reconstruction MSE", res["mse"]))
    for key, label in (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("classifier_frechet_distance",
                       "classifier Frechet distance"), ("reference_frechet_distance", "  real-vs-real floor"),
                       ("precision", "sample precision"), ("recall", "sample recall"),
                       ("codebook_usage", "codebook usage"), ("perplexity", "perplexity"),
                       ("fid", f"FID (Inception, n={res.get('fid_n')})")):
        if key in res:
            rows.append((label, res[key]))
    for k, v in res.get("disentanglement", {}).items():
        rows.append((k, v))
    for k, v in rows:
        print(f"  {k:<36} {v:.4f}" if isinstance(v, float) else f"  {k:<36} {v}")
    print(f"  binarisation: {res['binarisation']}")
    if "code_prior" in res:
        print(f"  a VQ-VAE's posterior is one code grid, so log p(x) >= log p(x|codes) + log p(codes) under its "
              f"{res['code_prior']} code prior: this ELBO is its log-likelihood bound (no IWAE applies)")
    if "compare" in res:
        print(res["compare"]["table"])
    for warning in res["warnings"]:
        print(f"warning: {warning}")
    return 0


def _compare(args, model, res: dict, data) -> dict:
    """The same evaluation of ``args.compare`` on the same images, with the same seed and k, as a table
    beside the evaluated model: parameters, ELBO, IWAE log p(x) and its difference."""
    from .io.loading import load_model
    from .evaluation.metrics import evaluate_model

    other = load_model(args.compare, device=args.device)
    if tuple(other.config.in_shape) != tuple(model.config.in_shape):
        raise VAEError(f"--compare needs a model of the same image shape; {args.compare} takes "
                       f"{list(other.config.in_shape)}, {args.model_source} takes {list(model.config.in_shape)}.")
    theirs = evaluate_model(other, data, batch_size=args.batch_size, iwae_k=args.iwae_k, seed=args.seed)
    rows = []
    for name, m, r in ((args.model_source, model, res), (args.compare, other, theirs)):
        rows.append({"model": name, "parameters": sum(p.numel() for p in m.parameters()),
                     "elbo": r.get("elbo"), "log_likelihood": r.get("log_likelihood"),
                     "bits_per_dim": r.get("bits_per_dim")})
    fmt = lambda v: "-" if v is None else f"{v:.2f}" if isinstance(v, float) else f"{v:,}"
    lines = [f"\nBeside {args.compare}, on the same {res['n_images']} images of {args.dataset} ({args.split}), "
             f"seed {args.seed}, IWAE k={args.iwae_k}:",
             f"  {'model':<28} {'parameters':>11} {'ELBO':>9} {'IWAE log p(x)':>14} {'bits/dim':>9}"]
    lines += [f"  {r['model'][-28:]:<28} {fmt(r['parameters']):>11} {fmt(r['elbo']):>9} "
              f"{fmt(r['log_likelihood']):>14} {r['bits_per_dim'] or 0:>9.4f}" for r in rows]
    gap = None
    if rows[0]["log_likelihood"] is not None and rows[1]["log_likelihood"] is not None:
        gap = rows[0]["log_likelihood"] - rows[1]["log_likelihood"]
        lines.append(f"  {args.model_source}'s IWAE log p(x) is {abs(gap):.2f} nats "
                     f"{'higher (better)' if gap >= 0 else 'lower (worse)'} than {args.compare}'s")
    return {"models": rows, "log_likelihood_gain": gap, "table": "\n".join(lines)}


def cmd_sample(args) -> int:
    import torch

    from .io.loading import load_model
    from .images import save_grid

    model = load_model(args.model_source, device=args.device, revision=args.revision)
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    if model.num_classes and args.label is None:
        raise VAEError(f"This conditional model needs --label (0..{model.num_classes - 1}).")
    with torch.inference_mode():
        x = model.sample(args.n, generator=gen, y=args.label, temperature=args.temperature)
    save_grid(x, args.out, nrow=args.nrow, scale=args.scale)
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def cmd_directions(args) -> int:
    from .latent.directions import dataset_alignment
    from .io.loading import load_model

    model = load_model(args.model_source, device=args.device, revision=args.revision)
    c, h, w = model.config.in_shape
    data = load_dataset_for(args, h, c)
    res = dataset_alignment(model, data, n=args.n, seed=args.seed, k=args.k, local_codes=args.local_codes)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.model_source} on {args.dataset} ({args.split}): {res['images']} images, seed {args.seed}; "
          f"|cos| of a random direction: {res['chance']:.2f}")
    print(f"{'kind':<10} {'direction':<18} {'best factor':<12} {'|cos|':>6} {'stability':>9}  detail")
    for r in res["rows"]:
        stab = "" if r["stability"] is None else f"{r['stability']:.2f}"
        print(f"{r['kind']:<10} {r['name']:<18} {r['best_factor']:<12} {r['cosine']:>6.2f} {stab:>9}  {r['detail']}")
    print("factor regression directions (the references): " + ", ".join(
        f"{r['name']} ({r['detail']}, stability {r['stability']:.2f})" for r in res["references"]))
    print(f"local directions from {res['local_method']}")
    return 0


def load_dataset_for(args, image_size: int, channels: int):
    from .data import load_dataset

    return load_dataset(args.dataset, args.split, image_size=image_size, channels=channels)


def cmd_push(args) -> int:
    from .io.push import push_to_hub

    token = os.environ.get(args.token_env)
    if not token:
        raise VAEError(f"Set the {args.token_env} environment variable to a Hub token with write access.")
    url = push_to_hub(args.run_dir, args.repo_id, token, private=args.private, with_optimizer=args.with_optimizer,
                      message=args.message)
    print(f"pushed {args.run_dir} to {url}")
    return 0


def cmd_convert(args) -> int:
    from .io.convert import convert_pythae

    result = convert_pythae(args.source, args.out, i_trust_this_file=args.trust_pickle, revision=args.revision,
                            in_shape=tuple(args.in_shape) if args.in_shape else None)
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.folder} ({result.model_type}, latent {result.latent_dim}); "
          f"open it with: python -m vae_core sample {result.folder}")
    return 0


def _command_model(args):
    """The model a command reads (``--threads`` applied first), from a shipped name, a folder or the Hub."""
    import torch

    from .io.loading import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    return load_model(args.model_source, device=args.device, revision=args.revision)


def cmd_augment(args) -> int:
    from tqdm import tqdm

    from .latent.augment import augment_dataset, check_request, with_originals, write_image_folder
    from .data import load_dataset

    model = _command_model(args)
    c, h, _ = model.config.in_shape
    data = load_dataset(args.dataset, args.split, image_size=h, channels=c)
    if args.labels_per_class:
        data, _ = data.labelled_subset(args.labels_per_class, args.seed)
    check_request(len(data), args.per_image, args.scale, args.mode, model)
    with tqdm(total=len(data), unit="img", desc="drawing", disable=args.quiet) as bar:
        new = augment_dataset(model, data, args.per_image, args.scale, args.mode, seed=args.seed,
                              progress=lambda done, n: bar.update(done - bar.n))
    out_set = with_originals(data, new) if args.with_originals else new
    manifest = {"model": args.model_source, "dataset": args.dataset, "split": args.split, "mode": args.mode,
                "scale": args.scale, "per_image": args.per_image, "seed": args.seed,
                "labels_per_class": args.labels_per_class, "with_originals": args.with_originals}
    with tqdm(total=len(out_set), unit="img", desc="writing", disable=args.quiet) as bar:
        write_image_folder(out_set, args.out, manifest, progress=lambda done, n: bar.update(done - bar.n))
    print(f"wrote {len(out_set):,} images ({len(new):,} drawn, {args.mode}, scale {args.scale:g}) to {args.out}; "
          f"read them with load_dataset('folder:{args.out}', 'all')")
    return 0


def cmd_experiment(args) -> int:
    import torch

    from .evaluation import experiments as ex

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text()) if Path(args.from_json).is_file() else None
        if not isinstance(saved, dict) or not saved.get("rows"):
            raise VAEError(f"{args.from_json} is not a results file written by --json; run the experiment first.")
        print(ex.report(args.which, saved["rows"]))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    classifier = ex.ClassifierSetup(steps=args.classifier_steps)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    if args.which == "semi-supervised":
        setup = ex.SemiSupervisedSetup(dataset=args.dataset, labels_per_class=tuple(args.labels_per_class or (10, 100)),
                                       seeds=tuple(args.seeds), epochs=args.epochs,
                                       hidden_dims=tuple(args.hidden_dims), latent_dim=args.latent_dim,
                                       alpha=args.alpha, classifier=dataclasses.replace(
                                           classifier, hidden_dims=tuple(args.hidden_dims)),
                                       threads=args.threads, device=args.device or "auto")
        rows = ex.semi_supervised_experiment(setup, log)
    else:
        setup = ex.AugmentationSetup(dataset=args.dataset, model=args.model_source,
                                     labels_per_class=(args.labels_per_class or [10])[0], per_image=args.per_image,
                                     scales=tuple(args.scales), mode=args.mode, seeds=tuple(args.seeds),
                                     classifier=classifier, device=args.device or "cpu")
        rows = ex.augmentation_experiment(setup, log)
    print(ex.report(args.which, rows))
    if args.json:
        from .io.files import atomic_file

        text = json.dumps({"setup": dataclasses.asdict(setup), "rows": rows}, indent=2)
        atomic_file(Path(args.json), lambda tmp: tmp.write_text(text))
    return 0


def cmd_map(args) -> int:
    from tqdm import tqdm

    from .latent.bigmap import map_dataset, open_stream, write_parquet

    model = _command_model(args)
    c, h, _ = model.config.in_shape
    building = []                                     # a bar only if a cache has to be built

    def build_progress(done: int, total: int) -> None:
        if not building:
            building.append(tqdm(total=total, unit="image", desc="building the dataset's cache (once)",
                                 disable=args.quiet))
        building[0].update(done - building[0].n)

    try:
        stream = open_stream(args.dataset, args.split, image_size=h, channels=c, progress=build_progress)
    finally:
        for bar in building:
            bar.close()
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
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vae_core", description="Train, evaluate, sample and publish VAEs.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (every config field is a flag)",
                       description="Train a VAE. Flags override --config; the run folder gets a Hub-layout "
                                   "checkpoint after every epoch.")
    t.add_argument("--config", help="YAML or JSON file with 'model' and 'train' sections")
    from .models import MODEL_TYPES
    t.add_argument("--model", choices=sorted(MODEL_TYPES), help="model family (default: mlp)")
    t.add_argument("--out", help="run folder to write (Hub layout)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_field_flags(t, {k: v for k, v in _model_fields().items()}, "model config")
    _add_field_flags(t, field_types(TrainConfig), "training config")
    t.set_defaults(func=cmd_train)

    from .models.vq_prior import CodePriorConfig
    from .training.prior import ARCH_FIELDS, PriorTrainConfig
    tp = sub.add_parser("train-prior", help="fit an autoregressive prior over a trained VQ-VAE's codes",
                        description="Train a causal transformer over the code grids of the VQ-VAE in RUN (its "
                                    "training split's codes) and add it to RUN (prior_config.json, "
                                    "prior.safetensors, a new model card and samples). load_model then samples "
                                    "from it, and evaluate reports log p(x|codes) + log p(codes).")
    tp.add_argument("run_dir", help="a VQ-VAE run folder written by train")
    tp.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_field_flags(tp, {k: v for k, v in field_types(CodePriorConfig).items() if k in ARCH_FIELDS},
                     f"prior architecture (defaults: {', '.join(f'{k} {getattr(CodePriorConfig(), k)}' for k in ARCH_FIELDS)})")
    _add_field_flags(tp, field_types(PriorTrainConfig), "prior training (defaults: " + ", ".join(
        f"{f.name} {f.default}" for f in dataclasses.fields(PriorTrainConfig)) + ")")
    tp.set_defaults(func=cmd_train_prior)

    def model_args(sp):
        sp.add_argument("model_source", help="shipped checkpoint name, run folder, or Hub repo id org/name[@rev]")
        sp.add_argument("--revision", help="Hub revision (branch, tag or commit)")
        sp.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
        sp.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("evaluate", help="test ELBO, IWAE log-likelihood, active units, reconstruction error")
    model_args(e)
    e.add_argument("--dataset", default="mnist-5k")
    e.add_argument("--split", default="test", choices=["train", "test", "all"])
    e.add_argument("--iwae-k", type=int, default=5000,
                   help="importance samples for the IWAE log-likelihood (0: skip it; the app uses fewer)")
    e.add_argument("--batch-size", type=int, default=250)
    e.add_argument("--quality", action="store_true",
                   help="add PSNR/SSIM and sample quality in a small classifier's feature space")
    e.add_argument("--fid", action="store_true",
                   help="add the real FID (Inception-v3 via torch-fidelity: pip install -r requirements-fid.txt)")
    e.add_argument("--fid-samples", type=int, default=10_000, help="images on each side of the FID (default 10000)")
    e.add_argument("--fid-weights", default=None, help="a local copy of torch-fidelity's Inception weights (offline)")
    e.add_argument("--disentanglement", action="store_true",
                   help="add beta-VAE, FactorVAE, MIG, SAP, DCI and modularity on dSprites")
    e.add_argument("--disentanglement-scale", type=float, default=1.0,
                   help="scale of the metrics' sample counts (1.0: disentanglement_lib's defaults)")
    e.add_argument("--compare", metavar="MODEL", default=None,
                   help="also evaluate MODEL on the same images with the same seed and k, and print both side by side")
    e.add_argument("--json", action="store_true", help="print every metric as JSON")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", help="write a PNG grid of samples from the prior")
    model_args(s)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--nrow", type=int, default=None)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--label", type=int, default=None, help="class to sample, for a conditional model")
    s.add_argument("--scale", type=int, default=2, help="enlarge pixels this many times")
    s.add_argument("--out", default="samples.png")
    s.set_defaults(func=cmd_sample)

    d = sub.add_parser("directions", help="how principal, local and attribute directions align with a "
                                          "dataset's ground-truth factors (dSprites)")
    model_args(d)
    d.add_argument("--dataset", default="dsprites")
    d.add_argument("--split", default="test", choices=["train", "test", "all"])
    d.add_argument("--n", type=int, default=2000, help="images to encode (a fixed random subset)")
    d.add_argument("--k", type=int, default=3, help="principal and local directions to report")
    d.add_argument("--local-codes", type=int, default=16, help="codes the local directions are averaged over")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_directions)

    u = sub.add_parser("push", help="upload a run folder to a Hub model repo")
    u.add_argument("run_dir")
    u.add_argument("repo_id", help="org/name")
    u.add_argument("--private", action="store_true")
    u.add_argument("--token-env", default="HF_TOKEN", help="environment variable that holds the token")
    u.add_argument("--with-optimizer", action="store_true", help="also upload the optimizer state for resuming")
    u.add_argument("--message", default="Upload VAE with vae_core")
    u.set_defaults(func=cmd_push)

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
    c.set_defaults(func=cmd_convert)

    a = sub.add_parser("augment", help="write images drawn from each image's posterior, as an image folder",
                       description="Draw new images near each image of a dataset: z = mu + scale * std * eps from its "
                                   "posterior (or, for a conditional model, z = scale * eps from the prior with its "
                                   "class), decoded. The folder has one subfolder per class, so "
                                   "load_dataset('folder:OUT', 'all') reads them back with their labels.")
    model_args(a)
    a.add_argument("--dataset", default="mnist-5k")
    a.add_argument("--split", default="train", choices=["train", "test", "all"])
    a.add_argument("--labels-per-class", type=int, default=0,
                   help="augment only a seeded, class-balanced subset of this many images per class (0: all)")
    a.add_argument("--per-image", type=int, default=10, help="new images drawn for each image")
    a.add_argument("--scale", type=float, default=1.0,
                   help="how far from the posterior mean to draw, in posterior standard deviations (0: reconstruct)")
    a.add_argument("--mode", default="posterior", choices=["posterior", "prior"],
                   help="prior: a conditional model's fresh styles of each image's class")
    a.add_argument("--with-originals", action="store_true", help="write the source images too")
    a.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    a.add_argument("--out", required=True, help="folder to write (a new one, or one augment wrote before)")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=cmd_augment)

    m = sub.add_parser("map", help="encode a whole dataset in streamed batches and write a 2-D map to Parquet",
                       description="Encode every image of a dataset (streamed: never the whole set as floats), map "
                                   "the posterior means to 2-D with PCA (exact, streamed) or UMAP (fitted on a "
                                   "subsample, the rest placed into it), and write one Parquet row per image: index, "
                                   "label and factors where known, x, y and the code z0..zD-1.")
    model_args(m)
    m.add_argument("--dataset", default="dsprites-full", help="any dataset name load_dataset takes")
    m.add_argument("--split", default="all", choices=["train", "test", "all"])
    m.add_argument("--method", default="pca", choices=["pca", "umap"])
    m.add_argument("--umap-strategy", default="subsample", choices=["subsample", "all"],
                   help="subsample: fit on --fit-points codes and place the rest into that map (default); "
                        "all: fit on every code (slower, at most 200,000)")
    m.add_argument("--fit-points", type=int, default=20_000, help="codes UMAP is fitted on (subsample strategy)")
    m.add_argument("--batch-size", type=int, default=2048, help="images encoded at once")
    m.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    m.add_argument("--out", required=True, help="Parquet file to write")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=cmd_map)

    x = sub.add_parser("experiment", help="semi-supervised learning (M1, M2) and augmentation experiments",
                       description="Run an experiment and print its table of test accuracy (mean and standard "
                                   "deviation over seeds). See vae_core/evaluation/experiments.py for what each arm does.")
    x.add_argument("which", choices=["semi-supervised", "augmentation"])
    x.add_argument("--dataset", default="mnist-5k")
    x.add_argument("--labels-per-class", type=int, nargs="+", default=None,
                   help="semi-supervised: 10 100 by default; augmentation: one number, 10 by default")
    x.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    x.add_argument("--epochs", type=int, default=50, help="semi-supervised: epochs of the M1 VAE and of M2")
    x.add_argument("--hidden-dims", type=int, nargs="+", default=[500], help="semi-supervised: hidden layers")
    x.add_argument("--latent-dim", type=int, default=50, help="semi-supervised: latent size of M1 and M2")
    x.add_argument("--alpha", type=float, default=0.1, help="semi-supervised: M2's classification weight")
    x.add_argument("--model", dest="model_source", default="mnist-mlp",
                   help="augmentation: the VAE that draws (trained without labels, so none leak)")
    x.add_argument("--per-image", type=int, default=10, help="augmentation: draws per labelled image")
    x.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0], help="augmentation: scales")
    x.add_argument("--mode", default="posterior", choices=["posterior", "prior"], help="augmentation: what to draw")
    x.add_argument("--classifier-steps", type=int, default=1000, help="Adam steps of every small classifier")
    x.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    x.add_argument("--device", default=None)
    x.add_argument("--json", help="also write every run's result to this JSON file")
    x.add_argument("--from-json", help="print the table of a results file written by --json, without running")
    x.add_argument("--quiet", action="store_true", help="only the table")
    x.set_defaults(func=cmd_experiment)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except VAEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
