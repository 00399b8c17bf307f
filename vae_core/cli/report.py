"""The one place the command line formats what it found: training lines, evaluation and comparison
tables, the directions table, and the one-line messages for errors and cost estimates."""
from __future__ import annotations


def step_postfix(ev) -> dict[str, str]:
    """The progress bar's losses and speed for a training step."""
    return ({k: f"{v:.3g}" for k, v in ev.losses.items() if k != "kl_weight"}
            | {"img/s": f"{ev.images_per_s:,.0f}"})


def epoch_line(ev) -> str:
    """One line per finished epoch: held-out ELBO by parts, active units, accuracy, codebook use."""
    e = ev.eval
    units = f", active units {e['active_units']}/{e['latent_units']}" if "active_units" in e else ""
    units += f", accuracy {e['accuracy']:.1%}" if "accuracy" in e else ""
    codebook = ""
    if "perplexity" in ev.losses:
        restarted = int(ev.losses.get("dead_codes_restarted", 0))
        codebook = (f"; codebook {ev.losses['codebook_usage']:.0%} used over the epoch (perplexity "
                    f"{ev.losses['perplexity']:.1f})" + (f", {restarted} dead codes re-initialised"
                                                         if restarted else ""))
    return (f"epoch {ev.epoch}: test ELBO {e['elbo']:.2f} (recon {e['recon']:.2f}, "
            f"KL {e['kl']:.2f}){units}{codebook}")


def prior_epoch_line(ev) -> str:
    e = ev.eval
    return (f"epoch {ev.epoch}: code NLL per grid, train {e['train_nll']:.2f}, held-out "
            f"{e['test_nll']:.2f} (independent frequencies: {e['frequency_nll']:.2f})")


_QUALITY_ROWS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("classifier_frechet_distance", "classifier Frechet distance"),
                 ("reference_frechet_distance", "  real-vs-real floor"), ("precision", "sample precision"),
                 ("recall", "sample recall"), ("codebook_usage", "codebook usage"), ("perplexity", "perplexity"))


def _evaluation_rows(res: dict) -> list[tuple[str, object]]:
    rows = []
    if "code_prior" in res:
        rows += [("log p(x|codes) + log p(codes) (nats)", res["elbo"]),
                 ("  decoder log p(x|codes)", -res["recon"]), ("  code prior log p(codes)", -res["prior_code_nll"]),
                 ("  bits/dim", res["elbo_bits_per_dim"])]
    elif "elbo" in res:
        rows += [("test ELBO (nats)", res["elbo"]), ("  reconstruction", res["recon"]), ("  KL", res["kl"])]
    else:
        rows.append(("reconstruction -log p(x|z) (nats)", res["recon"]))
    if "log_likelihood" in res:
        rows += [(f"IWAE log p(x), k={res['iwae_k']} (nats)", res["log_likelihood"]),
                 ("  bits/dim", res["bits_per_dim"])]
    if "active_units" in res:
        rows.append(("active units", f"{res['active_units']}/{res['latent_units']}"))
    if "mutual_information" in res:
        rows.append(("I(x; z) estimate (nats)", res["mutual_information"]))
    rows.append(("reconstruction MSE", res["mse"]))
    rows += [(label, res[key]) for key, label in (*_QUALITY_ROWS, ("fid", f"FID (Inception, n={res.get('fid_n')})"))
             if key in res]
    rows += list(res.get("disentanglement", {}).items())
    return rows


def evaluation(source: str, dataset: str, split: str, res: dict) -> str:
    """evaluate's table: one metric a line, then what binarisation and the code prior mean, then warnings."""
    lines = [f"{source} on {dataset} ({split}, {res['n_images']} images)"]
    lines += [f"  {k:<36} {v:.4f}" if isinstance(v, float) else f"  {k:<36} {v}" for k, v in _evaluation_rows(res)]
    lines.append(f"  binarisation: {res['binarisation']}")
    if "code_prior" in res:
        lines.append(f"  a VQ-VAE's posterior is one code grid, so log p(x) >= log p(x|codes) + log p(codes) under "
                     f"its {res['code_prior']} code prior: this ELBO is its log-likelihood bound (no IWAE applies)")
    if "compare" in res:
        lines.append(res["compare"]["table"])
    lines += [f"warning: {w}" for w in res["warnings"]]
    return "\n".join(lines)


def comparison(rows: list[dict], *, ours: str, theirs: str, n_images: int, dataset: str, split: str, seed: int,
               iwae_k: int) -> tuple[str, float | None]:
    """evaluate --compare's table beside the evaluated model, and the log-likelihood gain (None without IWAE)."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}" if isinstance(v, float) else f"{v:,}"
    lines = [f"\nBeside {theirs}, on the same {n_images} images of {dataset} ({split}), seed {seed}, IWAE k={iwae_k}:",
             f"  {'model':<28} {'parameters':>11} {'ELBO':>9} {'IWAE log p(x)':>14} {'bits/dim':>9}"]
    lines += [f"  {r['model'][-28:]:<28} {fmt(r['parameters']):>11} {fmt(r['elbo']):>9} "
              f"{fmt(r['log_likelihood']):>14} {r['bits_per_dim'] or 0:>9.4f}" for r in rows]
    gap = None
    if rows[0]["log_likelihood"] is not None and rows[1]["log_likelihood"] is not None:
        gap = rows[0]["log_likelihood"] - rows[1]["log_likelihood"]
        lines.append(f"  {ours}'s IWAE log p(x) is {abs(gap):.2f} nats "
                     f"{'higher (better)' if gap >= 0 else 'lower (worse)'} than {theirs}'s")
    return "\n".join(lines), gap


def directions(source: str, dataset: str, split: str, seed: int, res: dict) -> str:
    """directions' table: each direction's best-aligned factor, its |cos| and stability."""
    lines = [f"{source} on {dataset} ({split}): {res['images']} images, seed {seed}; "
             f"|cos| of a random direction: {res['chance']:.2f}",
             f"{'kind':<10} {'direction':<18} {'best factor':<12} {'|cos|':>6} {'stability':>9}  detail"]
    for r in res["rows"]:
        stab = "" if r["stability"] is None else f"{r['stability']:.2f}"
        lines.append(f"{r['kind']:<10} {r['name']:<18} {r['best_factor']:<12} {r['cosine']:>6.2f} {stab:>9}  "
                     f"{r['detail']}")
    lines.append("factor regression directions (the references): " + ", ".join(
        f"{r['name']} ({r['detail']}, stability {r['stability']:.2f})" for r in res["references"]))
    lines.append(f"local directions from {res['local_method']}")
    return "\n".join(lines)

