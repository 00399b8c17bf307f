"""The one place the command line formats what it found: training lines, evaluation and comparison
tables, the directions table, and the one-line messages for errors and cost estimates."""
from __future__ import annotations

import errno
from types import MappingProxyType

from vae_core.errors import VAEError
from vae_core.evaluation.metrics import mutual_information_note


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
    kind = f" as {e['scored_as']}" if "scored_as" in e else ""
    return (f"epoch {ev.epoch}: test ELBO{kind} {e['elbo']:.2f} nats (recon {e['recon']:.2f}, "
            f"KL {e['kl']:.2f}; nats per image, {e['n_images']:,} images){units}{codebook}")


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
        rows += [(f"log p(x|codes) + log p(codes) (nats){_kind(res)}", res["elbo"]),
                 ("  decoder log p(x|codes)", -res["recon"]), ("  code prior log p(codes)", -res["prior_code_nll"]),
                 ("  bits/dim", res["elbo_bits_per_dim"])]
    elif "elbo" in res:
        rows += [(f"ELBO, 1 sample per image (nats){_kind(res)}", res["elbo"]),
                 ("  reconstruction -log p(x|z) (nats)", res["recon"]), ("  KL (nats)", res["kl"])]
    else:
        rows.append(("reconstruction -log p(x|z) (nats)", res["recon"]))
    if "log_likelihood" in res:
        low, high = res["log_likelihood_ci95"]
        rows += [(f"IWAE log p(x), k={res['iwae_k']} (nats){_kind(res)}", res["log_likelihood"]),
                 ("  95% interval over images (nats)", f"[{low:.2f}, {high:.2f}] (se {res['log_likelihood_se']:.3f})"),
                 ("  bits/dim" + (", discretised" if "density" in res["scored_as"] else ""), res["bits_per_dim"])]
    if "active_units" in res:
        rows.append(("active units", f"{res['active_units']}/{res['latent_units']}"))
    if "mutual_information" in res:
        rows.append(("I(x; z) estimate (nats)", res["mutual_information"]))
        rows.append(("  " + mutual_information_note(res["mutual_information"], res["mutual_information_images"]), ""))
    rows.append(("reconstruction MSE", res["mse"]))
    rows += [(label, res[key]) for key, label in (*_QUALITY_ROWS, ("fid", f"FID (Inception, n={res.get('fid_n')})"))
             if key in res]
    rows += list(res.get("disentanglement", {}).items())
    return rows


def _kind(res: dict) -> str:
    """A likelihood figure's name suffix: what it scores (the grey-level cross-entropy, binarized images, ...)."""
    return f" [{res['scored_as']}]" if "scored_as" in res else ""


def which_images(split: str, res: dict) -> str:
    """Which images a figure is on: the split and, if they were binarized, with which seed."""
    seed = res.get("binarization_seed")
    return f"binarized {split} split with binarization seed {seed}" if seed is not None else f"{split} split"


def evaluation(source: str, dataset: str, split: str, res: dict) -> str:
    """evaluate's table: one metric a line, then what binarisation and the code prior mean, then warnings."""
    lines = [f"{source} on {dataset} ({which_images(split, res)}, {res['n_images']:,} images, seed {res['seed']})"]
    lines += [f"  {k:<60} {v:.4f}" if isinstance(v, float) else f"  {k:<60} {v}" for k, v in _evaluation_rows(res)]
    lines.append(f"  binarisation: {res['binarisation']}")
    if "estimator" in res:
        lines.append(f"  estimator: {res['estimator']}")
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
             f"  {'model':<28} {'parameters':>11} {'ELBO':>9} {'IWAE log p(x)':>14} {'bits/dim':>9}  scored as"]
    lines += [f"  {r['model'][-28:]:<28} {fmt(r['parameters']):>11} {fmt(r['elbo']):>9} "
              f"{fmt(r['log_likelihood']):>14} {r['bits_per_dim'] or 0:>9.4f}  {r.get('scored_as') or ''}" for r in rows]
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


# ---------------------------------------------------------------------------------------------
# Failures: every exception a command can end with, as one line and an exit status


HUB_ADVICE = MappingProxyType({401: "the token was refused: check that the variable --token-env names holds a valid Hub token",
              403: "the token may not write there: use a token with write access to that namespace",
              404: "the Hub has no such repo or namespace: check the spelling of org/name",
              409: "the Hub reports a conflict (the repo may be busy): try again in a minute",
              413: "the upload is too large for the Hub: push without --with-optimizer, or a smaller model",
              429: "the Hub is rate-limiting this machine: wait a few minutes and try again"})
NETWORK_ERRORS = frozenset({"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError",
                  "TransportError", "ConnectionError", "Timeout", "ProxyError", "RemoteProtocolError"})


def _chain(e: BaseException):
    """``e`` and the exceptions it was raised from or while handling (a library's message may wrap a Hub error)."""
    seen = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _is_network(e: BaseException) -> bool:
    """An HTTP client's failure to reach a server (httpx, httpx2, requests), or the Hub switched off."""
    return any(cls.__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3") and cls.__name__ in
               NETWORK_ERRORS for cls in type(e).__mro__)


def _first(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def _whole(e: BaseException) -> str:
    """A library message in full, on one line."""
    return " ".join(str(e).split()) or type(e).__name__


def hub_failure(e: BaseException) -> tuple[str, str] | None:
    """(kind, what it means and what to do) for a Hub failure anywhere in ``e``'s chain, or None.
    kind: "offline" (HF_HUB_OFFLINE), "status" (the Hub answered an HTTP error), "network" (no answer)."""
    for err in _chain(e):
        kind = type(err).__name__
        if kind == "OfflineModeIsEnabled":
            return "offline", ("the Hub is switched off here (HF_HUB_OFFLINE is set): unset HF_HUB_OFFLINE to reach "
                               "it, or use a shipped checkpoint or a local folder")
        status = getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(status, int) and any("HTTP" in c.__name__ for c in type(err).__mro__):
            return "status", f"the Hub answered {status}: {HUB_ADVICE.get(status, 'try again later')}"
        if _is_network(err):
            return "network", (f"cannot reach the Hugging Face Hub ({kind}): check the network connection, or "
                               "HF_ENDPOINT if it is set; shipped checkpoints and local folders work offline")
    return None


def failure(e: BaseException) -> tuple[str, int]:
    """The one line (without "error: ") and the exit status a command ends with when ``e`` stops it:
    2 for what the user can fix (bad input, the Hub, the disk, memory), 1 for anything unexpected."""
    hub = hub_failure(e)
    if isinstance(e, VAEError):                 # the library said what failed; the Hub's answer says why
        why = f" Why: {hub[1]}." if hub and hub[0] != "network" else ""
        return _whole(e) + why, 2
    if hub:
        return hub[1][0].upper() + hub[1][1:] + ".", 2
    if isinstance(e, OSError):
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        if e.errno == errno.ENOSPC:
            return f"The disk is full{where}; nothing was written. Free some space or choose another place.", 2
        return f"{e.strerror or _first(e)}{where}; check the path and its permissions.", 2
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "alloc" in str(e).lower()):
        return "Ran out of memory; ask for less (fewer images, samples or a smaller --batch-size).", 2
    return f"unexpected {type(e).__name__}: {_first(e)} (run again with --debug for the traceback)", 1
