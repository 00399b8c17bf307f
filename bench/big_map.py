"""Maps of a whole large dataset (vae_core.latent.bigmap, `python -m vae_core map`), each beside its baseline.

    python -m bench.big_map                       # both parts (about 10 minutes on a loaded 2-core machine)
    python -m bench.big_map --only pca            # all 737,280 dSprites encoded + PCA, streamed vs in memory
    python -m bench.big_map --only umap --codes map.parquet   # UMAP of 100,000 codes: subsample vs all

pca: `python -m vae_core map dsprites-beta4 --dataset dsprites-full --method pca` in a child process,
timed with its peak resident memory (getrusage of the child), beside the baseline that loads the set
into memory (load_dataset, 3 GB of uint8) and encodes it with explore.encode_dataset. The dSprites
disk cache is built first (once) so neither pays for it. CPU seconds (user + system) are printed
beside wall seconds: on a shared machine the wall time depends on the load, printed with each run.

umap: 100,000 codes (a seeded sample of the pca part's Parquet, or --codes), mapped by fitting UMAP on a
subsample of 20,000 (or --fit-points) and placing the rest, against fitting all 100,000 (NN-descent
neighbours). Trustworthiness (scikit-learn, 10 neighbours) on the same 5,000 of the points.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRUST_POINTS = 5_000
UMAP_POINTS = 100_000


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


def child(code: str) -> dict:
    """Run python code in a child process: wall s, CPU s (user + sys) and peak RSS (MB) of that child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"child failed:\n{r.stderr[-2000:]}")
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_mb": after.ru_maxrss / 1024, "out": r.stdout.strip(), "load": load()}


STREAMED = """
from vae_core.cli import main
raise SystemExit(main(["map", "dsprites-beta4", "--dataset", "dsprites-full", "--method", "pca",
                       "--out", {out!r}, "--quiet"]))
"""

IN_MEMORY = """
import torch
from vae_core import load_dataset, load_model
from vae_core.latent.explore import encode_dataset
from vae_core.latent.projections import principal_axes
model = load_model("dsprites-beta4", device="cpu")
data = load_dataset("dsprites-full", "all")
codes = encode_dataset(model, data, batch_size=2048).double()
x = codes - codes.mean(0)
print((x @ principal_axes(x.T @ x)).shape)
"""


def bench_pca(out: Path, baseline: bool) -> None:
    from vae_core.data.dsprites import build_dsprites_cache

    build_dsprites_cache()                    # once, outside both timings
    rows = [("streamed: `python -m vae_core map ... --method pca`", child(STREAMED.format(out=str(out))))]
    if baseline:
        rows.append(("baseline: load_dataset + encode_dataset + PCA in memory", child(IN_MEMORY)))
    print("\n| all 737,280 dSprites, dsprites-beta4, encode + PCA | wall | CPU (user+sys) | peak memory | load |")
    print("|---|---:|---:|---:|---|")
    for name, r in rows:
        print(f"| {name} | {r['wall']:.1f} s | {r['cpu']:.1f} s | {r['peak_mb']:,.0f} MB | {r['load']} |")
    if baseline:
        s, b = rows[0][1], rows[1][1]
        print(f"\nstreamed / in memory: wall {s['wall'] / b['wall']:.2f}x, peak memory {s['peak_mb'] / b['peak_mb']:.2f}x")
    print(f"\n{rows[0][1]['out']}")


def trust(x: np.ndarray, y: np.ndarray, sel: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(x[sel], y[sel], n_neighbors=10))


def bench_umap(codes_path: Path, fit_points: int, include_all: bool) -> None:
    import pyarrow.parquet as pq

    from vae_core.latent import bigmap
    from vae_core.latent.projections import warm_up

    table = pq.read_table(codes_path)
    zs = [c for c in table.column_names if c.startswith("z") and c[1:].isdigit()]
    codes = np.stack([table[c].to_numpy() for c in zs], 1).astype(np.float32)
    rng = np.random.default_rng(0)
    codes = codes[np.sort(rng.choice(len(codes), min(UMAP_POINTS, len(codes)), replace=False))]
    sel = np.sort(rng.choice(len(codes), TRUST_POINTS, replace=False))
    warm_up()                                  # numba's compilation is not what is measured
    print(f"\n| UMAP of {len(codes):,} codes ({codes.shape[1]}-D) | time | trustworthiness | load |")
    print("|---|---:|---:|---|")
    runs = [(f"fit {fit_points:,}, place the rest", "subsample")] + ([("fit all", "all")] if include_all else [])
    times = {}
    for name, strategy in runs:
        t = time.perf_counter()
        pos = bigmap.big_umap(codes, strategy, fit_points=fit_points)
        times[strategy] = time.perf_counter() - t
        print(f"| {name} | {times[strategy]:.1f} s | {trust(codes, pos, sel):.3f} | {load()} |", flush=True)
    if include_all:
        print(f"\nsubsample / all: time {times['subsample'] / times['all']:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["pca", "umap"])
    p.add_argument("--codes", help="a Parquet written by `vae_core map` (default: the pca part's)")
    p.add_argument("--fit-points", type=int, default=20_000)
    p.add_argument("--no-baseline", action="store_true", help="skip the in-memory PCA and UMAP-on-all runs")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.codes) if args.codes else Path(tmp) / "map.parquet"
        if args.only in (None, "pca"):
            bench_pca(out, not args.no_baseline)
        if args.only in (None, "umap"):
            bench_umap(out, args.fit_points, not args.no_baseline)


if __name__ == "__main__":
    main()
