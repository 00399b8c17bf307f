"""Which inverse of a t-SNE or UMAP map lands closest to the true codes, on held-out points.

    python -m bench.map_inverse                       # mnist-mlp and mnist-conv, 3,000 images (minutes)
    python -m bench.map_inverse --models mnist-mlp --n 2000

For each model: encode n images of mnist-5k (posterior means), hold out 10% (seeded), fit the map
on the rest, and place the held-out codes on it with the map's own out-of-sample transform
(openTSNE's ``transform``, umap-learn's ``transform``). Each inverse is fitted on the training
pairs only and asked for the codes at the held-out points. The error is the mean squared error
as a share of the codes' total variance (vae_core.latent.inverse.held_out_error), so the baseline,
predicting the mean code everywhere, is 1.00; PCA's exact inverse is printed beside them for
scale (its error is the share of the variance in the dropped components). Times are the
fitting time of the inverse and its time per 1,000 spots.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import torch


def maps(codes: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> dict:
    """{method: (points of train, points of test, the fitted umap reducer or None)}."""
    import openTSNE
    import umap as umap_learn

    out = {}
    emb = openTSNE.TSNE(n_components=2, perplexity=30, initialization="pca", n_jobs=1, random_state=seed,
                        verbose=False).fit(codes[train])
    out["tsne"] = (np.asarray(emb, np.float32), np.asarray(emb.transform(codes[test]), np.float32), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap_learn.UMAP(n_neighbors=15, min_dist=0.1, init="pca", random_state=seed).fit(codes[train])
        out["umap"] = (reducer.embedding_.astype(np.float32), reducer.transform(codes[test]).astype(np.float32),
                       reducer)
    return out


def inverses(reducer) -> dict:
    from vae_core.latent import inverse

    found = {f"barycentre k={k}, 1/d²": (lambda p, c, k=k: inverse.NeighbourInverse(p, c, k=k, power=2.0))
             for k in (1, 5, 10, 20, 30)}
    found["barycentre k=10, 1/d (the app's)"] = lambda p, c: inverse.NeighbourInverse(p, c, k=10, power=1.0)
    found["MLP 2-256-256-D"] = lambda p, c: inverse.NetInverse(p, c)
    if reducer is not None:
        found["umap-learn inverse_transform"] = lambda p, c: (lambda q: torch.from_numpy(
            reducer.inverse_transform(np.asarray(q, np.float32))))
    return found


def measure(model_name: str, n: int, seed: int = 0):
    """Yields (model, map, inverse, error, fit seconds, ms per 1,000 spots), one row at a time."""
    from vae_core import load_dataset, load_model
    from vae_core.latent import explore, inverse

    model = load_model(model_name)
    data, _ = load_dataset("mnist-5k", "all").seeded_subset(n, seed=seed)
    codes = explore.encode_dataset(model, data).reshape(n, -1).numpy()
    order = np.random.default_rng(seed).permutation(n)
    test, train = np.sort(order[: n // 10]), np.sort(order[n // 10:])
    pca = inverse.PCAInverse(codes[train])
    pca_points = (torch.from_numpy(codes[test]) - pca.mean) @ pca.axes
    yield (model_name, "pca", "exact (dropped components at the mean)",
           inverse.held_out_error(codes[test], pca(pca_points)), 0.0, 0.0)
    for method, (p_train, p_test, reducer) in maps(codes, train, test, seed).items():
        for name, make in inverses(reducer).items():
            t0 = time.perf_counter()
            inv = make(p_train, codes[train])
            t1 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predicted = inv(p_test)
            t2 = time.perf_counter()
            yield (model_name, method, name, inverse.held_out_error(codes[test], predicted), t1 - t0,
                   1000 * (t2 - t1) / len(test))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mnist-mlp", "mnist-conv"])
    ap.add_argument("--n", type=int, default=3000, help="images encoded per model (10%% held out)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"Held-out code error of each inverse (MSE / total variance; predicting the mean code = 1.00), "
          f"{args.n // 10} held-out of {args.n} mnist-5k images:")
    print("| model | map | inverse | error | fit (s) | per 1,000 spots (ms) |")
    print("|---|---|---|---:|---:|---:|")
    best: dict = {}
    for name in args.models:
        for model, method, inv, err, fit_s, per_k in measure(name, args.n):
            print(f"| {model} | {method} | {inv} | {err:.3f} | {fit_s:.2f} | {per_k:.1f} |", flush=True)
            if method != "pca" and err < best.get((model, method), ("", np.inf))[1]:
                best[(model, method)] = (inv, err)
    for (model, method), (inv, err) in best.items():
        print(f"best for {model} {method}: {inv} ({err:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
