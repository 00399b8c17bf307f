"""Reproduce the README's reference results: disentanglement of the dSprites models, log-likelihood of the MNIST ones.

    bash checkpoints/build_dsprites.sh --all       # the dSprites models (shipped ones and the rest in runs/)
    python -m scripts.reference_results            # prints the two markdown tables

Disentanglement uses disentanglement_lib's default sample counts (scale 1.0) and seed 0; the
log-likelihood is the IWAE estimate on the 1,000 test images of mnist-5k.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vae_core import load_dataset, load_model
from vae_core.evaluation.disentanglement import evaluate_disentanglement
from vae_core.evaluation.metrics import evaluate_model

DSPRITES = {"beta-VAE, beta 1": "runs/dsprites-beta1", "beta-VAE, beta 4": "checkpoints/dsprites-beta4",
            "beta-VAE, beta 16": "runs/dsprites-beta16", "beta-TCVAE, beta 6": "checkpoints/dsprites-tcvae"}
MNIST = {"mnist-mlp": 5000, "mnist-mlp-2d": 5000, "mnist-cvae": 5000, "mnist-conv": 1000}
COLUMNS = ("beta_vae", "factor_vae", "mig", "sap", "dci_disentanglement", "modularity")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="share of disentanglement_lib's sample counts")
    p.add_argument("--out", default="runs/reference_results.json")
    args = p.parse_args()
    results = {}
    for name, folder in DSPRITES.items():
        if not Path(folder).is_dir():
            print(f"skipping {name}: {folder} is missing (bash checkpoints/build_dsprites.sh --all)")
            continue
        t = time.time()
        results[name] = evaluate_disentanglement(load_model(folder, device="cpu"), seed=0, scale=args.scale)
        results[name] = {k: v for k, v in results[name].items() if not isinstance(v, list)}
        print(f"{name}: {time.time() - t:.0f} s", flush=True)
    test = load_dataset("mnist-5k", "test")
    for name, k in MNIST.items():
        t = time.time()
        res = evaluate_model(load_model(name, device="cpu"), test, iwae_k=k, seed=0, batch_size=100)
        results[name] = {"iwae_k": k, "log_likelihood": res["log_likelihood"], "elbo": res["elbo"],
                         "bits_per_dim": res["bits_per_dim"]}
        print(f"{name}: {time.time() - t:.0f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print("\n| model | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS))
    for name in DSPRITES:
        if name in results:
            print(f"| {name} | " + " | ".join(f"{results[name][c]:.2f}" for c in COLUMNS) + " |")
    print("\n| model | test log p(x) (nats) | k | ELBO (nats) | bits/dim |\n|---|---:|---:|---:|---:|")
    for name in MNIST:
        r = results[name]
        print(f"| {name} | {r['log_likelihood']:.2f} | {r['iwae_k']} | {r['elbo']:.2f} | {r['bits_per_dim']:.4f} |")


if __name__ == "__main__":
    main()
