#!/usr/bin/env bash
# The dSprites models: shipped ones into checkpoints/, the rest of the README's reference table into runs/.
# Fully connected encoder and decoder (256-256) with 10 latents, Bernoulli likelihood, bf16 autocast on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--model mlp --dataset dsprites --hidden-dims 256 256 --latent-dim 10 --epochs 40 --batch-size 64
        --lr 5e-4 --precision bf16 --sample-every 10 --eval-every 10 --quiet)
run() { dest=$1; shift; python -m vae_core train "${common[@]}" "$@" --out "$dest"; }
ship() { rm -f "$1/optimizer.safetensors" "$1/trainer_state.json"; }
run checkpoints/dsprites-beta4  --beta 4 --seed 0 && ship checkpoints/dsprites-beta4
run checkpoints/dsprites-tcvae  --objective tcvae --beta 6 --seed 0 && ship checkpoints/dsprites-tcvae
if [ "${1:-}" = "--all" ]; then
  run runs/dsprites-beta1  --beta 1 --seed 0
  run runs/dsprites-beta16 --beta 16 --seed 0
fi
