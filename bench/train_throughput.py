"""Training throughput: vae_core.training.loop against the loops people write, and against the hardware's limit.

    python -m bench.train_throughput                     # MLP and conv, 10 epochs, 3 interleaved repeats
    python -m bench.train_throughput --repeats 5 --batch 512

The limit: every matrix product of one training step (each dense layer's forward, input-gradient
and weight-gradient products; each convolution as the GEMM it unfolds to), at the step's own
shapes, timed on its own through MKL (torch's fp32 default), oneDNN's fp32 matmul and bf16
(oneDNN). The fp32 limit is the step's FLOPs over the sum of the faster fp32 time of each
product; a loop's fraction of it is its images/s times the FLOPs per image over that limit.
Elementwise work, the loss and the optimizer are not in the limit, so 100% is out of reach.

The loops, on the same model (784-400-20 MLP VAE; batch 128; Adam, lr 1e-3; mnist-5k train
split; same epochs and threads), each timed for training images/s (best and median of the
interleaved repeats) and for the whole run (construction, data, every epoch with evaluation):
- baseline: written the way pytorch/examples' vae/main.py writes it (a Dataset that converts
  each image, a DataLoader, two heads fc21/fc22, sigmoid + binary_cross_entropy, a sample grid
  per epoch);
- that loop with the model under ``torch.compile`` (its compile time is in the whole run only);
- pythae 0.1.2's BaseTrainer on a pythae VAE with the same 784-400-20 networks (installed with
  ``pip install -r requirements-bench.txt``; skipped with a note when it is not);
- vae_core.training.loop: fp32 with torch's kernels, fp32 with the measured kernel route, and
  with ``--precision auto`` (bf16 autocast where the CPU has native bf16).
Two rows that are not loops anyone should use bound the MLP's fraction: the floor (the network's
forward and backward alone through autograd, no loss, no optimizer) and the step by hand (the whole
step, loss and Adam included, with every gradient written out and no autograd; its gradients are
checked against autograd's first). Two more bound it in turn: that step with its elementwise work
fused into generated C++ loops (torch.compile; skipped with ``--skip compile``), and the step's
eleven products alone, chained as in a step with nothing else: the most any step reaches.
The conv model (mnist-conv's 32-64 network) is timed in fp32 and with --precision auto against its own limit.
"""
from __future__ import annotations

import argparse
import contextlib
import os
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
    def __init__(self, D: int = 784):
        super().__init__()
        self.D = D
        self.fc1 = nn.Linear(D, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, D)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, self.D))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(len(recon_x), -1), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_baseline(epochs: int, device: torch.device, out: Path, compiled: bool = False,
                 batch: int = 128) -> tuple[float, float]:
    t_start = time.perf_counter()
    torch.manual_seed(0)
    tr, te = load_dataset("mnist-5k", "train"), load_dataset("mnist-5k", "test")
    to_np = lambda d: (d.images[:, 0].numpy(), d.labels.numpy())
    train_loader = DataLoader(MNISTImages(*to_np(tr)), batch_size=batch, shuffle=True)
    test_loader = DataLoader(MNISTImages(*to_np(te)), batch_size=batch, shuffle=False)
    model = ExamplesVAE().to(device)
    if compiled:
        model = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_time, seen = 0.0, 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        epoch_seen = 0
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
            epoch_seen += len(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if not compiled or epoch > 1:         # a compiled loop's first epoch is mostly compilation
            train_time += time.perf_counter() - t0
            seen += epoch_seen
        model.eval()
        with torch.no_grad():
            for data, _ in test_loader:
                data = data.to(device)
                recon_batch, mu, logvar = model(data)
                examples_loss(recon_batch, data, mu, logvar).item()
            sample = getattr(model, "_orig_mod", model).decode(torch.randn(64, 20).to(device)).cpu()
            save_grid(sample.view(64, 1, 28, 28), out / f"baseline_{epoch}.png")
    return seen / train_time, time.perf_counter() - t_start


def run_pythae(epochs: int, device: torch.device, out: Path, batch: int = 128) -> tuple[float, float]:
    """pythae's own trainer on a pythae VAE with the same 784-400-20 networks; its train_step timed."""
    t_start = time.perf_counter()
    tr, te = load_dataset("mnist-5k", "train"), load_dataset("mnist-5k", "test")
    trainer = pythae_trainer(pythae_model(784, (1, 28, 28)), tr, te, out, epochs=epochs, batch=batch,
                             device=device)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        trainer.train()                               # its progress bars and logs still run, as for its users
    steps = -(-len(tr) // batch)                      # pythae keeps the last partial batch
    return epochs * len(tr) / trainer.train_time if steps else 0.0, time.perf_counter() - t_start


def pythae_model(D: int, shape: tuple[int, ...]):
    """A pythae VAE with pytorch/examples' D-400-20 networks (Bernoulli likelihood on the grey levels)."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(D, 400), nn.Linear(400, 20), nn.Linear(400, 20)

        def forward(self, x):
            h = F.relu(self.fc1(x.reshape(len(x), -1)))
            return ModelOutput(embedding=self.fc21(h), log_covariance=self.fc22(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, D)

        def logits(self, z):
            return self.fc4(F.relu(self.fc3(z)))

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.logits(z)).view(-1, *shape))

    return VAE(VAEConfig(input_dim=tuple(shape), latent_dim=20, reconstruction_loss="bce"),
               encoder=Encoder(), decoder=Decoder())


def pythae_trainer(model, tr, te, out: Path, *, epochs: int, batch: int = 128, device: torch.device | None = None,
                   after_step=None):
    """pythae's BaseTrainer at its defaults but the batch, learning rate and optimizer of the other loops; its
    train_step (one epoch) timed, and ``after_step(trainer)`` called after each of its optimizer steps."""
    from pythae.data.preprocessors import DataProcessor
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    class Timed(BaseTrainer):
        train_time = 0.0

        def train_step(self, epoch):
            t0 = time.perf_counter()
            loss = super().train_step(epoch)
            self.train_time += time.perf_counter() - t0
            return loss

        def _optimizers_step(self, model_output=None):
            super()._optimizers_step(model_output)
            if after_step is not None:
                after_step(self)

    config = BaseTrainerConfig(output_dir=str(out / "pythae"), num_epochs=epochs, learning_rate=1e-3,
                               per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
                               optimizer_cls="Adam", no_cuda=device is None or device.type != "cuda")
    dp = DataProcessor()                              # what pythae's TrainingPipeline does with arrays
    trainer = Timed(model, train_dataset=dp.to_dataset(dp.process_data(tr.float_images())),
                    eval_dataset=dp.to_dataset(dp.process_data(te.float_images())), training_config=config)
    return trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_floor(epochs: int, device: torch.device, out: Path, batch: int = 128) -> tuple[float, float]:
    """Not a training loop: the network's forward and backward alone (plain torch layers and autograd,
    no data, no loss, no optimizer), as many steps as the loops take. What autograd itself costs at
    these shapes, so a loop's distance from the limit splits into autograd's share and the loop's own."""
    import torch.nn as nn

    t_start = time.perf_counter()
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40)).to(device)
    dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784)).to(device)
    x = torch.rand(batch, 784, device=device)
    steps = epochs * (4000 // batch)
    for _ in range(10):                                   # warm-up, as the loops' first epoch is
        dec(enc(x)[:, :20]).sum().backward()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        dec(enc(x)[:, :20]).sum().backward()
    sync(device)
    return steps * batch / (time.perf_counter() - t), time.perf_counter() - t_start


class HandStep:
    """The MLP VAE's whole training step written out with no autograd: forward, loss (Bernoulli
    reconstruction + KL, summed over pixels and latents, averaged over the batch), every gradient by
    hand (the same eleven matrix products autograd runs, elementwise work folded in place), and
    torch's fused Adam. Not a loop anyone should maintain: the ceiling of a step built from torch's
    ops on this CPU, so a loop's distance from the limit splits into what any such loop pays and
    what vae_core's own costs. ``check`` compares its gradients with autograd's."""

    def __init__(self, device: torch.device, hidden: int = 400, latent: int = 20, seed: int = 0):
        torch.manual_seed(seed)
        enc1, enc2 = nn.Linear(784, hidden), nn.Linear(hidden, 2 * latent)
        dec1, dec2 = nn.Linear(latent, hidden), nn.Linear(hidden, 784)
        self.params = [t.detach().to(device).clone() for m in (enc1, enc2, dec1, dec2) for t in (m.weight, m.bias)]
        self.grads = [torch.zeros_like(p) for p in self.params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), device=device) for _ in self.params]
        self.latent = latent

    def forward_backward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2, W3, b3, W4, b4 = self.params
        g, L, B = self.grads, self.latent, len(x)
        h1 = torch.addmm(b1, x, W1.t()).clamp_min_(0)
        s = torch.addmm(b2, h1, W2.t())
        mu, lv = s[:, :L], s[:, L:]
        std = lv.mul(0.5).exp_()
        z = torch.addcmul(mu, eps, std)
        h2 = torch.addmm(b3, z, W3.t()).clamp_min_(0)
        logits = torch.addmm(b4, h2, W4.t())
        var = std.square()
        loss = (F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
                + 0.5 * (mu.square() + var - 1 - lv).sum()) / B
        d = torch.sigmoid(logits).sub_(x).div_(B)                     # d loss / d logits
        torch.mm(d.t(), h2, out=g[6])
        torch.sum(d, 0, out=g[7])
        d = torch.mm(d, W4).mul_(h2 > 0)                                # d loss / d (z W3^T + b3)
        torch.mm(d.t(), z, out=g[4])
        torch.sum(d, 0, out=g[5])
        dz = torch.mm(d, W3)
        ds = torch.cat([dz + mu / B, dz * eps * std * 0.5 + (var - 1) * (0.5 / B)], 1)
        torch.mm(ds.t(), h1, out=g[2])
        torch.sum(ds, 0, out=g[3])
        d = torch.mm(ds, W2).mul_(h1 > 0)
        torch.mm(d.t(), x, out=g[0])
        torch.sum(d, 0, out=g[1])
        return loss

    def products(self, x: torch.Tensor, eps: torch.Tensor) -> None:
        """The step's eleven matrix products alone, in the step's order and with its data flow (each
        one's inputs are the previous ones' outputs), into buffers kept between calls: no bias, no
        activation, no loss, no optimizer. What the products cost inside a step, against the limit's
        each-product-alone timing."""
        W1, _, W2, _, W3, _, W4, _ = self.params
        g, L = self.grads, self.latent
        if getattr(self, "_bufs", None) is None or self._bufs[0].shape[0] != len(x):
            B, H = len(x), W1.shape[0]
            self._bufs = [x.new_empty(B, n) for n in (H, 2 * L, H, x.shape[1], H, L, H)]
        h1, s, h2, logits, d2, dz, d1 = self._bufs
        torch.mm(x, W1.t(), out=h1)
        torch.mm(h1, W2.t(), out=s)
        z = s[:, :L]
        torch.mm(z, W3.t(), out=h2)
        torch.mm(h2, W4.t(), out=logits)
        torch.mm(logits.t(), h2, out=g[6])
        torch.mm(logits, W4, out=d2)
        torch.mm(d2.t(), z, out=g[4])
        torch.mm(d2, W3, out=dz)
        torch.mm(s.t(), h1, out=g[2])
        torch.mm(s, W2, out=d1)
        torch.mm(d1.t(), x, out=g[0])

    def step(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        loss = self.forward_backward(x, eps)
        torch._fused_adam_(self.params, self.grads, self.m, self.v, [], self.steps, lr=1e-3, beta1=0.9,
                           beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
        return loss

    def check(self, x: torch.Tensor, eps: torch.Tensor) -> None:
        """Its loss and gradients against autograd's on the same batch and noise."""
        loss = self.forward_backward(x, eps)
        ps = [p.clone().requires_grad_(True) for p in self.params]
        W1, b1, W2, b2, W3, b3, W4, b4 = ps
        s = F.linear(F.relu(F.linear(x, W1, b1)), W2, b2)
        mu, lv = s[:, :self.latent], s[:, self.latent:]
        logits = F.linear(F.relu(F.linear(mu + eps * (0.5 * lv).exp(), W3, b3)), W4, b4)
        ref = (F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
               - 0.5 * (1 + lv - mu.square() - lv.exp()).sum()) / len(x)
        ref.backward()
        assert torch.allclose(loss, ref.detach(), rtol=1e-4), (loss, ref)
        for got, want in zip(self.grads, (p.grad for p in ps)):
            assert torch.allclose(got, want, rtol=1e-3, atol=1e-5), (got - want).abs().max()


def run_by_hand(epochs: int, device: torch.device, out: Path, batch: int = 128,
                what: str = "step") -> tuple[float, float]:
    """``HandStep`` on mnist-5k's training images, shuffled each epoch, as many steps as the loops take.

    ``what``: "step" (the whole step), "fused" (the same step with its forward and backward under
    ``torch.compile``: inductor fuses the elementwise work into generated C++ loops around the
    products; its compile time is in the first repeat's whole run, and later repeats reuse the compiled code) or
    "products" (``HandStep.products``)."""
    t_start = time.perf_counter()
    x_all = load_dataset("mnist-5k", "train").float_images(device).flatten(1)
    gen = torch.Generator(device=device).manual_seed(0)
    hand = HandStep(device)
    per_epoch = len(x_all) // batch
    hand.check(x_all[:batch], torch.randn(batch, hand.latent, generator=gen, device=device))
    if what == "fused":
        hand.forward_backward = torch.compile(hand.forward_backward, dynamic=False)
        hand.check(x_all[:batch], torch.randn(batch, hand.latent, generator=gen, device=device))
    elif what == "products":
        hand.step = hand.products
    for i in range(10):                                   # warm-up, as the loops' first epoch is
        hand.step(x_all[i * batch:(i + 1) * batch], torch.randn(batch, hand.latent, generator=gen, device=device))
    sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x_all), generator=gen, device=device)
        for i in range(per_epoch):
            x = x_all.index_select(0, perm[i * batch:(i + 1) * batch])
            hand.step(x, torch.randn(batch, hand.latent, generator=gen, device=device))
    sync(device)
    return epochs * per_epoch * batch / (time.perf_counter() - t), time.perf_counter() - t_start


def run_ours(epochs: int, device: torch.device, out: Path, precision: str = "auto", kernels: str = "torch",
             model=None, batch: int = 128) -> tuple[float, float]:
    t_start = time.perf_counter()
    cfg = RunConfig(model or MLPConfig(hidden_dims=(400,), latent_dim=20),
                    TrainConfig(dataset="mnist-5k", epochs=epochs, batch_size=batch, lr=1e-3,
                                device=str(device), precision=precision, kernels=kernels))
    seen, train_time = 0, 0.0
    for ev in train(cfg, log_every=1_000_000):          # one sync per epoch, as the CLI can do
        if ev.kind == "epoch":
            train_time = ev.elapsed
            seen = ev.step * cfg.train.batch_size
            save_grid(ev.samples, out / f"ours_{ev.epoch}.png")
    return seen / train_time, time.perf_counter() - t_start


# ---------------------------------------------------------------------------------------------
# The limit: the step's matrix products on their own


def step_gemms(model_cfg, batch: int) -> list[tuple[str, int, int, int]]:
    """(what, M, K, N) of every matrix product in one training step of this model at this batch size.

    Dense layer on (B, in): forward (B, in) x (in, out); the input gradient (B, out) x (out, in),
    except for the first layer, whose input needs none; the weight gradient (out, B) x (B, in).
    A convolution counts as the GEMM of its unfolded input: (B*Ho*Wo, Cin*k*k) x (Cin*k*k, Cout),
    and likewise its two gradients; a transposed convolution as the transposed products.
    """
    from vae_core.models import kernels
    from vae_core.training.objectives import loss_parts
    from vae_core.training.loop import init_model

    model = init_model(model_cfg, 0).train()
    shapes = {}

    def note(m, args):
        shapes.setdefault(m, (tuple(args[0].shape), args[0].requires_grad))
    hooks = [m.register_forward_pre_hook(note) for m in kernels.routable_layers(model)]
    x = torch.rand(batch, *model_cfg.in_shape)
    loss_parts(model, x, None, TrainConfig(), step=0, total_steps=1, randn=lambda s, batch_axis=0: torch.randn(s),
               dataset_size=batch)
    for h in hooks:
        h.remove()
    out = []
    for m in kernels.routable_layers(model):
        (shape, needs_grad), name = shapes[m], type(m).__name__
        if isinstance(m, kernels.Dense):
            b = int(torch.tensor(shape[:-1]).prod())
            M, K, N = b, m.in_features, m.out_features
        elif isinstance(m, kernels.ConvT):
            b, c, h, w = shape
            M, K, N = b * h * w, m.in_channels, m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            b, c, h, w = shape
            ho = (h + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
            wo = (w + 2 * m.padding[1] - m.kernel_size[1]) // m.stride[1] + 1
            M, K, N = b * ho * wo, m.in_channels * m.kernel_size[0] * m.kernel_size[1], m.out_channels
        out.append((f"{name} forward", M, K, N))
        if needs_grad:
            out.append((f"{name} input grad", M, N, K))
        out.append((f"{name} weight grad", K, M, N))
    return out


def _best(fn, min_time: float = 0.05) -> float:
    fn()
    best, spent, n = float("inf"), 0.0, 0
    while n < 5 or spent < min_time:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def limit(gemms, repeats: int = 3) -> dict:
    """Seconds per step of the products through MKL, oneDNN fp32, the faster of the two, and bf16."""
    lin = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    t = {"mkl": 0.0, "onednn": 0.0, "fp32": 0.0, "bf16": 0.0}
    flops = 0
    for _, M, K, N in gemms:
        a, b = torch.randn(M, K), torch.randn(K, N)
        bt = b.t().contiguous()                           # (N, K): oneDNN's weight layout; a view of it is b
        ab, bb = a.bfloat16(), b.bfloat16()
        best = {"mkl": float("inf"), "onednn": float("inf"), "bf16": float("inf")}
        for _ in range(repeats):                          # interleaved
            best["mkl"] = min(best["mkl"], _best(lambda: torch.mm(a, b)))
            if lin is not None:
                best["onednn"] = min(best["onednn"], _best(lambda: lin(a, bt, None, "none", [], "")))
            best["bf16"] = min(best["bf16"], _best(lambda: torch.mm(ab, bb)))
        t["mkl"] += best["mkl"]
        t["onednn"] += best["onednn"]
        t["fp32"] += min(best["mkl"], best["onednn"])
        t["bf16"] += best["bf16"]
        flops += 2 * M * K * N
    return {"flops": flops, **t}


# ---------------------------------------------------------------------------------------------


def interleave(runs: dict, repeats: int, gemms=None) -> tuple[dict, dict | None]:
    """Each repeat runs every loop once, in turn, and (on a CPU) times the step's products once more, so
    drifting machine load hits the loops and the limit alike. Returns the loops' (images/s, whole run)
    lists and the limit (each product's best time over the repeats)."""
    out = {k: [] for k in runs}
    lims = []
    for _ in range(repeats):
        if gemms is not None:
            lims.append(limit(gemms, repeats=1))
        for name, fn in runs.items():
            try:
                out[name].append(fn())
            except Exception as e:                        # an optional peer that cannot run here
                out[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
                runs = {k: v for k, v in runs.items() if k != name}
        if not runs:
            break
    lim = {k: min(d[k] for d in lims) for k in lims[0]} if lims else None
    return out, lim


def table(rows: dict, base: str, lim: dict, batch: int) -> list[str]:
    fpi = lim["flops"] / batch
    gflops_32 = lim["flops"] / lim["fp32"] / 1e9
    lines = ["| loop | images/s, best (median) | ratio | GFLOP/s | of the fp32 limit | whole run (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    b = max(r[0] for r in rows[base])
    for name, rs in rows.items():
        if isinstance(rs, str):
            lines.append(f"| {name} | not run: {rs} | | | | |")
            continue
        ips, med = max(r[0] for r in rs), statistics.median(r[0] for r in rs)
        gf = ips * fpi / 1e9
        wall = min(r[1] for r in rs)
        lines.append(f"| {name} | {ips:,.0f} ({med:,.0f}) | {ips / b:.2f}x | {gf:.0f} | {gf / gflops_32:.0%} | {wall:.2f} |")
    return lines


def limit_lines(lim: dict, batch: int, what: str) -> list[str]:
    g = lambda k: lim["flops"] / lim[k] / 1e9 if lim[k] else float("nan")
    return [f"{what}: {lim['flops'] / batch / 1e6:.2f} MFLOP per image; the step's products alone at batch {batch}: "
            f"MKL {g('mkl'):.0f}, oneDNN fp32 {g('onednn'):.0f}, the faster of each: {g('fp32'):.0f} GFLOP/s "
            f"(the fp32 limit); bf16 {g('bf16'):.0f} GFLOP/s ({g('bf16') / g('fp32'):.2f}x the fp32 limit)"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--conv-epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip", default="", help="comma-separated: compile, pythae, conv")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    device = pick_device(args.device)
    from vae_core.device import resolve_precision
    from vae_core.models import ConvConfig

    default = resolve_precision("auto", device)
    E, B = args.epochs, args.batch
    mlp_cfg = MLPConfig(hidden_dims=(400,), latent_dim=20)
    conv_cfg = ConvConfig(channels=(32, 64), latent_dim=16)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {B}, "
          f"best of {args.repeats} interleaved repeats (median in brackets); precision auto = {default} here\n")
    on_cpu = device.type == "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_ours(1, device, out)                          # first-touch costs (imports, data cache) paid once for all
        runs = {"baseline (pytorch/examples style)": lambda: run_baseline(E, device, out, batch=B)}
        if "compile" not in skip:
            runs["baseline under torch.compile"] = lambda: run_baseline(E, device, out, compiled=True, batch=B)
        if "pythae" not in skip:
            runs["pythae 0.1.2 BaseTrainer"] = lambda: run_pythae(E, device, out, batch=B)
        runs["vae_core fp32, torch's kernels (--kernels torch)"] = \
            lambda: run_ours(E, device, out, "fp32", "torch", batch=B)
        runs["vae_core fp32, measured kernels (--kernels measured)"] = \
            lambda: run_ours(E, device, out, "fp32", "measured", batch=B)
        if default != "fp32":
            runs[f"vae_core --precision auto ({default} autocast)"] = lambda: run_ours(E, device, out, batch=B)
        runs["floor: the network's forward + backward alone (torch autograd; no loss, no Adam)"] = \
            lambda: run_floor(E, device, out, batch=B)
        runs["by hand: the whole step written out (no autograd; loss, backward by hand, fused Adam)"] = \
            lambda: run_by_hand(E, device, out, batch=B)
        if "compile" not in skip:
            runs["by hand, its elementwise work fused (torch.compile: inductor's C++ loops)"] = \
                lambda: run_by_hand(E, device, out, batch=B, what="fused")
        runs["the step's eleven products alone, chained as in a step (nothing else)"] = \
            lambda: run_by_hand(E, device, out, batch=B, what="products")
        rows, lim = interleave(runs, args.repeats, step_gemms(mlp_cfg, B) if on_cpu else None)
        conv_rows, clim = None, None
        if "conv" not in skip:
            CE = args.conv_epochs
            conv = {"vae_core conv fp32, torch's kernels (--kernels torch)":
                    lambda: run_ours(CE, device, out, "fp32", "torch", model=conv_cfg, batch=B),
                    "vae_core conv fp32, measured kernels (--kernels measured)":
                    lambda: run_ours(CE, device, out, "fp32", "measured", model=conv_cfg, batch=B)}
            if default != "fp32":
                conv[f"vae_core conv --precision auto ({default} autocast)"] = \
                    lambda: run_ours(CE, device, out, model=conv_cfg, batch=B)
            conv_rows, clim = interleave(conv, args.repeats, step_gemms(conv_cfg, B) if on_cpu else None)
    print(f"### MLP 784-400-20, {E} epochs of mnist-5k (4,000 training images)\n")
    if lim:
        print("\n".join(limit_lines(lim, B, "MLP")) + "\n")
        print("\n".join(table(rows, "baseline (pytorch/examples style)", lim, B)))
    else:
        print("(no CPU limit on this device; GPU figures were not taken for the README)")
    if conv_rows is not None and clim:
        print(f"\n### Conv 32-64 (mnist-conv's network), {args.conv_epochs} epochs\n")
        print("\n".join(limit_lines(clim, B, "Conv")) + "\n")
        base = next(iter(conv_rows))
        print("\n".join(table(conv_rows, base, clim, B)))


if __name__ == "__main__":
    main()
