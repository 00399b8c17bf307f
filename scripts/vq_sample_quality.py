"""The README's VQ-VAE sample quality: the same VQ-VAE's samples from its code prior and from independent codes.

    python -m scripts.vq_sample_quality                 # mnist-vq, 1,000 samples against 1,000 test images
    python -m scripts.vq_sample_quality --model runs/my-vq --n 1000

Prints the classifier-feature Fréchet distance (vae_core.evaluation.quality.sample_quality: a small MNIST
classifier's features, not Inception's, so not an FID) and precision/recall, for samples drawn
(1) from the learned code prior, (2) with every code drawn independently from its training
frequency (the model without its prior), and (3) held-out data: the training images themselves,
the floor a perfect generator would reach.
"""
from __future__ import annotations

import argparse

from vae_core import load_dataset, load_model
from vae_core.evaluation.quality import sample_quality


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist-vq")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    model = load_model(args.model, device="cpu")
    if getattr(model, "code_prior", None) is None:
        raise SystemExit(f"{args.model} has no code prior; train one with python -m vae_core train-prior RUN.")
    train, test = load_dataset("mnist-5k", "train"), load_dataset("mnist-5k", "test")
    with_prior = sample_quality(model, train, test, n=args.n, seed=args.seed)
    prior = model.code_prior
    model.attach_prior(None)
    independent = sample_quality(model, train, test, n=args.n, seed=args.seed)
    model.attach_prior(prior)
    print(f"{args.model}: {with_prior['n']} samples against as many test images of mnist-5k (seed {args.seed}); "
          f"the classifier's test accuracy is {with_prior['classifier_test_accuracy']:.3f}\n")
    print("| samples | classifier Fréchet distance | precision | recall |")
    print("|---|---:|---:|---:|")
    print(f"| from the code prior | {with_prior['classifier_frechet_distance']:.2f} | {with_prior['precision']:.3f} "
          f"| {with_prior['recall']:.3f} |")
    print(f"| independent codes (training frequencies) | {independent['classifier_frechet_distance']:.2f} | "
          f"{independent['precision']:.3f} | {independent['recall']:.3f} |")
    print(f"| held-out data (training images) | {with_prior['reference_frechet_distance']:.2f} | "
          f"{with_prior['reference_precision']:.3f} | {with_prior['reference_recall']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
