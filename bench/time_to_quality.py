"""Time to a good model: how long each trainer needs, from launch, to a test ELBO a user would call good.

    python -m bench.time_to_quality                          # MLP on mnist-5k, 60 s a run, 3 interleaved repeats
    python -m bench.time_to_quality --seconds 300 --dataset dsprites-subset

Three trainers of the same 784-400-20 MLP VAE (for other data, D-400-20 with D the image's size), each at its
own defaults, each in its own process so that the clock includes starting Python and importing the trainer:
- examples: the training loop of pytorch/examples' vae/main.py (a Dataset converting each image, a
  DataLoader, Adam 1e-3, batch 128, a test pass and a saved sample grid every epoch);
- pythae: pythae 0.1.2's BaseTrainer on a pythae VAE with the same networks, at its trainer's defaults
  (``pip install -r requirements-bench.txt``; skipped with a note when it is not installed);
- vae_core: ``python -m vae_core train --model mlp --dataset D --out RUN``: the CLI's own parser and defaults,
  its run folder written as the CLI writes it.
Each runs for ``--seconds`` of wall time (more epochs than its default if it needs them). Every ``--every``
seconds the clock stops while one judge, the same for all, scores the model: the single-sample ELBO in nats
per image (Bernoulli likelihood on the grey levels, as all three train) on the test split's images, with the
same seeded noise. The report: for each trainer, the time to first reach ``--threshold`` (best and median over
the repeats; "-" where a repeat never reached it), the best ELBO within 60 s and within ``--seconds``, and each
one's ratio to the best peer. Runs are interleaved (repeat 1 of every trainer, then repeat 2, ...), so a
change in the machine's load touches all of them alike; the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = ("examples", "pythae", "vae_core")
JUDGE_SEED = 1234


class Clock:
    """Wall time since the process was launched (``t0``, the parent's time.time() before it started the
    process), less the pauses in which the judge scored the model; the curve of (seconds, ELBO) it records."""

    def __init__(self, t0: float, every: float, seconds: float, judge):
        self.t0, self.every, self.seconds, self.judge = t0, every, seconds, judge
        self.paused, self.next_at, self.curve = 0.0, every, []

    def now(self) -> float:
        return time.time() - self.t0 - self.paused

    def tick(self, model) -> bool:
        """Score the model when a judging time has come; False once the run's time is up."""
        t = self.now()
        if t >= self.next_at or t >= self.seconds:
            p0 = time.time()
            self.curve.append((round(t, 3), self.judge(model)))
            self.paused += time.time() - p0
            self.next_at = (int(t / self.every) + 1) * self.every
        return t < self.seconds


def judge_fn(dataset: str, encode, decode_logits):
    """The judge: mean single-sample ELBO (nats per image) over the test split, with fixed noise."""
    import torch
    import torch.nn.functional as F

    from vae_core import load_dataset

    x = load_dataset(dataset, "test").float_images().flatten(1)
    eps = torch.randn(len(x), 20, generator=torch.Generator().manual_seed(JUDGE_SEED))

    def judge(model) -> float:
        was = model.training
        model.eval()
        with torch.no_grad():
            mu, logvar = encode(model, x)
            z = mu + eps * (0.5 * logvar).exp()
            rec = F.binary_cross_entropy_with_logits(decode_logits(model, z).flatten(1), x, reduction="sum")
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
        model.train(was)
        return -float(rec + kl) / len(x)
    return judge


def worker(arm: str, args) -> list:
    return {"examples": work_examples, "pythae": work_pythae, "vae_core": work_vae_core}[arm](args)


def work_examples(args) -> list:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from bench.train_throughput import ExamplesVAE, MNISTImages, examples_loss
    from vae_core import load_dataset
    from vae_core.images import save_grid

    torch.manual_seed(args.seed)
    tr, te = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    D = tr.images[0].numel()
    to_np = lambda d: (d.images[:, 0].numpy(), d.labels.numpy() if d.labels is not None else [0] * len(d))
    train_loader = DataLoader(MNISTImages(*to_np(tr)), batch_size=128, shuffle=True)
    test_loader = DataLoader(MNISTImages(*to_np(te)), batch_size=128, shuffle=False)
    model = ExamplesVAE(D)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    clock = Clock(args.t0, args.every, args.seconds, judge_fn(
        args.dataset, lambda m, x: m.encode(x), lambda m, z: m.fc4(F.relu(m.fc3(z)))))
    out = Path(tempfile.mkdtemp())
    while True:                                               # epochs, until the time is up
        model.train()
        for data, _ in train_loader:
            opt.zero_grad()
            recon, mu, logvar = model(data)
            examples_loss(recon, data, mu, logvar).backward()
            opt.step()
            if not clock.tick(model):
                return clock.curve
        model.eval()
        with torch.no_grad():
            for data, _ in test_loader:
                examples_loss(*model(data)[:1], data, *model(data)[1:]).item()
            save_grid(model.decode(torch.randn(64, 20)).view(64, *tr.images.shape[1:]), out / "sample.png")


def work_pythae(args) -> list:
    import contextlib

    import torch

    from bench.train_throughput import pythae_model, pythae_trainer
    from vae_core import load_dataset

    class TimeUp(Exception):
        pass

    torch.manual_seed(args.seed)
    tr, te = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    model = pythae_model(tr.images[0].numel(), tr.images.shape[1:])
    clock = Clock(args.t0, args.every, args.seconds, judge_fn(
        args.dataset, lambda m, x: (lambda o: (o.embedding, o.log_covariance))(m.encoder(x)),
        lambda m, z: m.decoder.logits(z)))

    def after_step(trainer):
        if not clock.tick(trainer.model):
            raise TimeUp
    trainer = pythae_trainer(model, tr, te, Path(tempfile.mkdtemp()), epochs=100_000, after_step=after_step)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            trainer.train()                                   # its progress bars and logs run, as for its users
        except TimeUp:
            pass
    return clock.curve


def work_vae_core(args) -> list:
    from vae_core.cli import make_parser
    from vae_core.cli.train import run_config_for
    from vae_core.training.loop import init_model, train

    out = Path(tempfile.mkdtemp()) / "run"
    cli = make_parser().parse_args(["train", "--model", "mlp", "--dataset", args.dataset, "--out", str(out),
                                     "--seed", str(args.seed), "--epochs", "100000"])
    config = run_config_for(cli)
    model = init_model(config.model, config.train.seed)
    clock = Clock(args.t0, args.every, args.seconds, judge_fn(
        args.dataset, lambda m, x: (lambda q: (q.mu, q.logvar))(m.encode(x.view(len(x), *m.config.in_shape))),
        lambda m, z: m.decode_logits(z)))
    events = train(config, out_dir=out, model=model)
    for ev in events:
        if ev.kind == "step" and not clock.tick(model):
            events.close()
            break
    return clock.curve


def first_reach(curve: list, threshold: float) -> float | None:
    """The first judged time at which the ELBO reached the threshold (None: never)."""
    return next((t for t, elbo in curve if elbo >= threshold), None)


def best_within(curve: list, seconds: float) -> float | None:
    values = [elbo for t, elbo in curve if t <= seconds]
    return max(values) if values else None


def run_arm(arm: str, args, repeat: int) -> list:
    """One trainer's run in its own process; its curve of (seconds since launch, test ELBO)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "curve.json"
        cmd = [sys.executable, "-m", "bench.time_to_quality", "--worker", arm, "--t0", "0", "--result", str(result),
               "--seconds", str(args.seconds), "--every", str(args.every), "--dataset", args.dataset,
               "--seed", str(repeat)]
        cmd[cmd.index("--t0") + 1] = repr(time.time())
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{arm} failed:\n{done.stderr[-3000:]}")
        return json.loads(result.read_text())


def pythae_missing() -> bool:
    try:
        import pythae  # noqa: F401
    except ImportError:
        return True
    return False


def summary(curves: dict, args) -> list[str]:
    """The report's lines: per trainer, time to the threshold (best, median, per repeat) and best ELBOs."""
    lines = [f"{'trainer':<10} {'to ' + format(args.threshold, 'g') + ' nats: best':>20} {'median':>8} "
             f"{'per repeat':>24} {'best ELBO <= 60 s':>18} {'<= ' + format(args.seconds, 'g') + ' s':>10}"]
    reach = {}
    for arm, runs in curves.items():
        times = [first_reach(c, args.threshold) for c in runs]
        got = sorted(t for t in times if t is not None)
        reach[arm] = (got[0] if got else None, statistics.median(got) if len(got) == len(times) else None)
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        b60 = [best_within(c, 60) for c in runs]
        ball = [best_within(c, args.seconds) for c in runs]
        lines.append(f"{arm:<10} {fmt(reach[arm][0]):>20} {fmt(reach[arm][1]):>8} "
                     f"{' '.join(fmt(t) for t in times):>24} "
                     f"{statistics.median([v for v in b60 if v is not None] or [float('nan')]):>18.2f} "
                     f"{statistics.median([v for v in ball if v is not None] or [float('nan')]):>10.2f}")
    peers = [reach[a][1] for a in reach if a != "vae_core" and reach[a][1] is not None]
    if "vae_core" in reach and reach["vae_core"][1] and peers:
        lines.append(f"vae_core reaches {args.threshold:g} nats {min(peers) / reach['vae_core'][1]:.2f}x sooner than "
                     f"the best peer (medians over {args.repeats} repeats)")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="wall time of each run, from launch")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between the judge's scores")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=-150.0, help="test ELBO to reach, nats per image")
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--json", type=Path, help="write every curve here")
    ap.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.result.write_text(json.dumps(worker(args.worker, args)))
        return
    arms = [a for a in args.arms.split(",") if not (a == "pythae" and pythae_missing())]
    if len(arms) < len(args.arms.split(",")):
        print("pythae is not installed (pip install -r requirements-bench.txt): its row is left out")
    print(f"{args.dataset}, D-400-20 MLP, {args.seconds:g} s a run, judged every {args.every:g} s on the test split "
          f"(single-sample ELBO, noise seed {JUDGE_SEED}); seeds 0..{args.repeats - 1}; load average "
          f"{os.getloadavg()[0]:.2f} at the start")
    curves = {a: [] for a in arms}
    for r in range(args.repeats):
        for arm in arms:
            curves[arm].append(run_arm(arm, args, r))
            print(f"  repeat {r + 1} {arm}: best {max(e for _, e in curves[arm][-1]):.2f} nats, first judged at "
                  f"{curves[arm][-1][0][0]:.1f} s", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print("\n".join(summary(curves, args)))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "curves": curves}))


if __name__ == "__main__":
    main()
