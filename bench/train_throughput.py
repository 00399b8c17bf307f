"""Training throughput: vae_core.train against a pytorch/examples-style loop, side by side in one run.

Same model (784-400-20 MLP VAE), batch size (128), data (mnist-5k train split), optimizer
(Adam, lr 1e-3), epochs and thread count. The baseline is written the way pytorch/examples'
vae/main.py writes it: a Dataset that turns each PIL image into a tensor (what ToTensor does),
a DataLoader, two heads fc21/fc22, sigmoid + binary_cross_entropy, and train() then test()
with a sample grid every epoch. Both sides are timed for training images/s and for the whole
run (construction, data set-up, every epoch with its evaluation and samples).

    python -m bench.train_throughput [--epochs 10] [--repeats 3] [--device auto]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vae_core import RunConfig, TrainConfig, load_dataset, pick_device, train
from vae_core.images import save_grid
from vae_core.models import MLPConfig


class MNISTImages(Dataset):
    """Per-sample conversion, as torchvision's MNIST + ToTensor do."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i], mode="L")
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).float().div(255).unsqueeze(0)
        return x, int(self.labels[i])


class ExamplesVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_baseline(epochs: int, device: torch.device, out: Path) -> tuple[float, float]:
    t_start = time.perf_counter()
    torch.manual_seed(0)
    tr, te = load_dataset("mnist-5k", "train"), load_dataset("mnist-5k", "test")
    to_np = lambda d: (d.images[:, 0].numpy(), d.labels.numpy())
    train_loader = DataLoader(MNISTImages(*to_np(tr)), batch_size=128, shuffle=True)
    test_loader = DataLoader(MNISTImages(*to_np(te)), batch_size=128, shuffle=False)
    model = ExamplesVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_time, seen = 0.0, 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        train_loss = 0
        for data, _ in train_loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = examples_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            seen += len(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            for data, _ in test_loader:
                data = data.to(device)
                recon_batch, mu, logvar = model(data)
                examples_loss(recon_batch, data, mu, logvar).item()
            sample = model.decode(torch.randn(64, 20).to(device)).cpu()
            save_grid(sample.view(64, 1, 28, 28), out / f"baseline_{epoch}.png")
    return seen / train_time, time.perf_counter() - t_start


def run_ours(epochs: int, device: torch.device, out: Path, precision: str = "fp32") -> tuple[float, float]:
    t_start = time.perf_counter()
    cfg = RunConfig(MLPConfig(hidden_dims=(400,), latent_dim=20),
                    TrainConfig(dataset="mnist-5k", epochs=epochs, batch_size=128, lr=1e-3,
                                device=str(device), precision=precision))
    seen, train_time = 0, 0.0
    for ev in train(cfg, log_every=1_000_000):          # one sync per epoch, as the CLI can do
        if ev.kind == "epoch":
            train_time = ev.elapsed
            seen = ev.step * cfg.train.batch_size
            save_grid(ev.samples, out / f"ours_{ev.epoch}.png")
    return seen / train_time, time.perf_counter() - t_start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--bf16", action="store_true", help="also run vae_core with bf16 autocast")
    args = p.parse_args()
    device = pick_device(args.device)
    rows: dict[str, list[tuple[float, float]]] = {"baseline (pytorch/examples style)": [], "vae_core.train": []}
    if args.bf16:
        rows["vae_core.train, bf16 autocast"] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_ours(1, device, out)                          # first-touch costs (imports, data cache) paid once for both
        for _ in range(args.repeats):                     # interleaved, so drifting machine load hits both alike
            rows["baseline (pytorch/examples style)"].append(run_baseline(args.epochs, device, out))
            rows["vae_core.train"].append(run_ours(args.epochs, device, out))
            if args.bf16:
                rows["vae_core.train, bf16 autocast"].append(run_ours(args.epochs, device, out, "bf16"))
    base_ips = statistics.median(r[0] for r in rows["baseline (pytorch/examples style)"])
    base_wall = statistics.median(r[1] for r in rows["baseline (pytorch/examples style)"])
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128, "
          f"{args.epochs} epochs of mnist-5k (4,000 train images), median of {args.repeats}")
    print("| loop | images/s | ratio | whole run (s) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in rows.items():
        ips, wall = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
        print(f"| {name} | {ips:,.0f} | {ips / base_ips:.2f}x | {wall:.2f} | {wall / base_wall:.2f}x |")


if __name__ == "__main__":
    main()
