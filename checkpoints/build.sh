#!/usr/bin/env bash
# Rebuild every shipped checkpoint with the project's own CLI. Each model card repeats its command.
# The optimizer state is dropped: shipped models are for exploring, not for resuming. They were trained in
# fp32 (the reference bench/precision_check.py compares bf16 with), hence --precision fp32, and at a learning
# rate of 1e-3 (the default then; it is 3e-3 now), hence --lr 0.001.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest() { python -c "import sys; from vae_core.io.run_folder import write_manifest; write_manifest(sys.argv[1])" "$1"; }   # what ships
run() { name=$1; shift; python -m vae_core train "$@" --quiet --out "checkpoints/$name"; rm -f "checkpoints/$name/optimizer.safetensors" "checkpoints/$name/trainer_state.json"; manifest "checkpoints/$name"; }
run mnist-mlp     --model mlp  --dataset mnist-5k --hidden-dims 400 --latent-dim 20 --epochs 60 --lr 0.001 --seed 0 --precision fp32
run mnist-mlp-2d  --model mlp  --dataset mnist-5k --hidden-dims 512 256 --latent-dim 2 --epochs 60 --lr 0.001 --seed 0 --precision fp32
run mnist-conv    --model conv --dataset mnist-5k --channels 32 64 --latent-dim 16 --epochs 30 --lr 0.001 --seed 0 --precision fp32
run mnist-cvae    --model cvae --dataset mnist-5k --hidden-dims 512 --latent-dim 8 --epochs 60 --lr 0.001 --seed 0 --precision fp32
run mnist-vq      --model vq   --dataset mnist-5k --channels 32 64 --latent-dim 16 --codebook-size 64 --epochs 20 --lr 0.001 --seed 0 --precision fp32
run mnist-m2      --model m2   --dataset mnist-5k --labels-per-class 100 --hidden-dims 500 --latent-dim 8 --epochs 50 --lr 0.001 --seed 0 --precision fp32
# mnist-vq's autoregressive code prior, trained on its codes after it and added to the same folder.
python -m vae_core train-prior checkpoints/mnist-vq --width 64 --layers 2 --epochs 20 --lr 0.002 --quiet
run mnist-hvae    --model hvae --dataset mnist-5k --hidden-dims 256 272 --latent-dims 16 32 --epochs 150 --lr 0.002 \
                  --kl-anneal linear --anneal-steps 600 --seed 0 --precision fp32
