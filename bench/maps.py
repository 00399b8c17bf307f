"""Maps that scale: the neighbour search, UMAP and t-SNE, each beside what it replaced or competes with.

    python -m bench.maps                  # everything, 2 interleaved repeats (a few minutes on 2 cores)
    python -m bench.maps --repeats 3
    python -m bench.maps --only tsne      # or knn, umap, raster

Codes: the 5,000 posterior means of the shipped mnist-mlp on mnist-5k (20-D); 20,000 and 50,000
are those tiled with a little noise (bench.app_latency.tiled), as the app has no larger labelled set.
Every time is the best of the interleaved repeats (the least disturbed on a shared machine) with
the median beside it. "Extra memory" is the process's peak resident memory during the call above
its resident memory before it (Linux: /proc/self/clear_refs resets the peak). "CPU" is the process's
CPU time during the call (all threads): on a shared machine the wall time grows with the load, the
CPU time much less; a one-thread call's wall time on an idle machine is about its CPU time. Trustworthiness
(scikit-learn, 10 neighbours) is computed on 2,000 of the points. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.app_latency import codes_5k, tiled

TRUST_POINTS = 2_000


# ---------------------------------------------------------------------------------------------
# Measuring time and peak memory


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measured(fn, *args, **kwargs):
    """(result, seconds, extra peak MB, CPU seconds) of one call."""
    try:
        Path("/proc/self/clear_refs").write_text("5")           # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
    except OSError:
        before = None
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    extra = (_status_kb("VmHWM") - before) / 1024 if before is not None else float("nan")
    return out, dt, extra, cpu


def interleaved(fns: dict, repeats: int) -> dict:
    """name -> (last result, [seconds], [extra MB], [CPU seconds]); each repeat runs every fn once, in turn."""
    res = {k: (None, [], [], []) for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            out, dt, extra, cpu = measured(fn)
            res[name] = (out, res[name][1] + [dt], res[name][2] + [extra], res[name][3] + [cpu])
    return res


def fmt_times(ts) -> str:
    return f"{min(ts):.2f} s (median {statistics.median(ts):.2f})"


def fmt_cpu(cs) -> str:
    return f"{min(cs):.2f} s"


def trust(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    sel = np.random.default_rng(0).choice(len(x), min(TRUST_POINTS, len(x)), replace=False)
    return trustworthiness(x[sel], np.asarray(y)[sel], n_neighbors=10)


# ---------------------------------------------------------------------------------------------
# What the library did before (kept here only as the baseline)


def knn_before(codes, k: int, chunk: int = 2048):
    """vae_core.latent.projections.knn as it was: 2,048-row chunks, |a|^2 - 2ab + |b|^2 in separate (chunk, N) temporaries."""
    x = torch.from_numpy(np.asarray(codes, np.float32))
    sq = x.pow(2).sum(1)
    idx, dist = [], []
    for s in range(0, len(x), chunk):
        rows = torch.arange(s, min(s + chunk, len(x)))
        d2 = sq[rows, None] - 2 * x[rows] @ x.T + sq[None]
        d2[torch.arange(len(rows)), rows] = -1.0
        v, i = d2.topk(k, dim=1, largest=False)
        idx.append(i.to(torch.int32))
        dist.append(v.clamp_min_(0).sqrt_())
    return torch.cat(idx).numpy(), torch.cat(dist).numpy()


def tsne_before(x, perplexity=30.0, seed=0):
    """vae_core.latent.projections.tsne as it was: scikit-learn's Barnes-Hut t-SNE."""
    from sklearn.manifold import TSNE

    return TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(x)


def tsne_opentsne_defaults(x, seed=0):
    """openTSNE with its own defaults: its neighbour search, 250 + 500 iterations, FFT gradients, on
    as many threads as ours."""
    import torch
    from openTSNE import TSNE

    return np.asarray(TSNE(negative_gradient_method="fft", random_state=seed, n_jobs=torch.get_num_threads()).fit(x))


# ---------------------------------------------------------------------------------------------


def bench_knn(sets: dict, repeats: int) -> list[str]:
    from vae_core.latent import projections as project

    lines = ["| points | before: 2,048-row chunks | extra memory | now: 512-row fused addmm | extra memory | "
             "same neighbours | speed-up |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, x in sets.items():
        r = interleaved({"before": lambda: knn_before(x, 15), "now": lambda: project.knn(x, 15)}, repeats)
        same = float((r["before"][0][0] == r["now"][0][0]).mean())
        lines.append(f"| {n:,} | {fmt_times(r['before'][1])} | {max(r['before'][2]):.0f} MB | "
                     f"{fmt_times(r['now'][1])} | {max(r['now'][2]):.0f} MB | {same:.2%} | "
                     f"{min(r['before'][1]) / min(r['now'][1]):.1f}x |")
    # The approximate alternative: pynndescent's NN-descent (what umap-learn uses by default), warm.
    from pynndescent import NNDescent

    x = sets[max(sets)]
    NNDescent(x[:2000], n_neighbors=15, n_jobs=1, random_state=0)       # compile its numba code first
    exact = project.knn(x, 15)[0]
    r = interleaved({"nnd": lambda: NNDescent(x, n_neighbors=15, n_jobs=1, random_state=0).neighbor_graph,
                     "exact": lambda: project.knn(x, 15)}, repeats)
    approx = r["nnd"][0][0]
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(approx, exact)])
    lines += ["", f"Approximate search at {max(sets):,} points: pynndescent (warm, 1 thread) "
                  f"{fmt_times(r['nnd'][1])} with recall {recall:.3f}, against the exact search's "
                  f"{fmt_times(r['exact'][1])}; vae_core.latent.projections.neighbours uses NN-descent above "
                  f"{project.EXACT_KNN_MAX:,} points."]
    return lines


def bench_umap(sets: dict, repeats: int) -> list[str]:
    import umap as umap_learn

    from vae_core.latent import projections as project

    project.warm_up()
    lines = ["| points | vae_core UMAP (warm) | CPU | extra memory | trustworthiness |", "|---:|---:|---:|---:|---:|"]
    for n, x in sets.items():
        r = interleaved({"ours": lambda: project.umap(x)}, repeats)
        lines.append(f"| {n:,} | {fmt_times(r['ours'][1])} | {fmt_cpu(r['ours'][3])} | {max(r['ours'][2]):.0f} MB | "
                     f"{trust(x, r['ours'][0]):.4f} |")
    x = sets[20_000]

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return umap_learn.UMAP().fit_transform(x)
    theirs()                                                      # umap-learn's own warm-up: its first call
    r = interleaved({"umap-learn": theirs, "ours": lambda: project.umap(x)}, repeats)
    a, b = min(r["umap-learn"][1]), min(r["ours"][1])
    lines += ["", "| 20,000 points, warm | time | CPU | extra memory | trustworthiness |", "|---|---:|---:|---:|---:|",
              f"| umap-learn defaults (NN-descent, spectral init, 200 epochs, all cores) | "
              f"{fmt_times(r['umap-learn'][1])} | {fmt_cpu(r['umap-learn'][3])} | {max(r['umap-learn'][2]):.0f} MB | "
              f"{trust(x, r['umap-learn'][0]):.4f} |",
              f"| vae_core.latent.projections.umap (exact neighbours, PCA init, {project.umap_epochs(len(x))} epochs, "
              f"1 thread) | {fmt_times(r['ours'][1])} | {fmt_cpu(r['ours'][3])} | {max(r['ours'][2]):.0f} MB | "
              f"{trust(x, r['ours'][0]):.4f} |",
              "", f"vae_core / umap-learn, best runs: {b / a:.2f} (below 1: faster)"]
    return lines


def bench_tsne(x: np.ndarray, repeats: int) -> list[str]:
    from vae_core.latent import projections as project

    project.tsne(x[:500])                                         # imports paid once
    r = interleaved({"sklearn": lambda: tsne_before(x), "openTSNE": lambda: tsne_opentsne_defaults(x),
                     "ours": lambda: project.tsne(x)}, repeats)
    import torch

    it = project.TSNE_EARLY_ITERATIONS + project.TSNE_ITERATIONS
    how = f"Barnes-Hut at angle {project.TSNE_THETA}" if len(x) < project.TSNE_BH_BELOW else "FFT"
    rows = [("before: scikit-learn (Barnes-Hut, 1,000 iterations)", "sklearn"),
            ("openTSNE defaults (FFT, 750 iterations)", "openTSNE"),
            (f"now: vae_core.latent.projections.tsne (openTSNE {how} on exact neighbours, {it} iterations, "
             f"{torch.get_num_threads()} threads)", "ours")]
    lines = [f"| t-SNE, {len(x):,} points | time | CPU | extra memory | trustworthiness |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | {fmt_times(r[k][1])} | {fmt_cpu(r[k][3])} | {max(r[k][2]):.0f} MB | "
              f"{trust(x, r[k][0]):.4f} |"
              for label, k in rows]
    lines += ["", f"speed-up over scikit-learn, best runs: {min(r['sklearn'][1]) / min(r['ours'][1]):.1f}x"]
    return lines


def bench_raster(c5, repeats: int) -> list[str]:
    """The Latent map above its WebGL budget: the server-drawn raster (explorer/raster.py) beside the
    WebGL figure the page would otherwise send (explorer.figures.latent_map), each built and
    serialised to the JSON the browser receives."""
    from explorer import figures, raster
    from vae_core.latent import projections as project

    labels5k = np.random.default_rng(0).integers(0, 10, len(c5))
    lines = ["| points | WebGL figure: build + JSON | sent | raster: shade + PNG + JSON | sent |",
             "|---:|---:|---:|---:|---:|"]
    raster.figure(project.pca(c5.numpy()), labels=labels5k)                   # datashader's numba compiled once
    for n in (25_000, 200_000, 737_280):
        pts = project.pca(tiled(c5, n).numpy(), max_points=n)
        labels = np.resize(labels5k, n)
        ids = np.arange(n)
        fns = {"raster": lambda: raster.figure(pts, labels=labels).to_json()}
        if n <= 200_000:
            fns["webgl"] = lambda: figures.latent_map(pts, ids, labels=labels).to_json()
        r = interleaved(fns, repeats)
        web = (f"{fmt_times(r['webgl'][1])} | {len(r['webgl'][0]) / 2**20:.1f} MB" if "webgl" in r
               else "not tried | -")
        lines.append(f"| {n:,} | {web} | {fmt_times(r['raster'][1])} | {len(r['raster'][0]) / 2**10:.0f} kB |")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=["knn", "umap", "tsne", "raster"])
    args = ap.parse_args(argv)
    c5 = codes_5k()
    sets = {n: np.ascontiguousarray(tiled(c5, n).numpy(), dtype=np.float32) for n in (5_000, 20_000, 50_000)}
    sets[5_000] = c5.numpy()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; codes of mnist-mlp (20-D); "
          f"best of {args.repeats} interleaved runs (median beside it)\n")
    if args.only in (None, "knn"):
        print("\n".join(["### Exact 15 nearest neighbours", ""] + bench_knn(sets, args.repeats)) + "\n")
    if args.only in (None, "umap"):
        print("\n".join(["### UMAP", ""] + bench_umap(sets, args.repeats)) + "\n")
    if args.only in (None, "tsne"):
        print("\n".join(["### t-SNE", ""] + bench_tsne(sets[5_000], args.repeats)) + "\n")
    if args.only in (None, "raster"):
        print("\n".join(["### The density raster", ""] + bench_raster(c5, args.repeats)) + "\n")


if __name__ == "__main__":
    main()
