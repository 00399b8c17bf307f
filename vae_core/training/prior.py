"""train_prior(run folder): fit an autoregressive prior over a trained VQ-VAE's code grids, and add it to the folder.

The VQ-VAE is frozen: its encoder turns the training images into code grids once, and a causal
transformer (models/vq_prior.py) learns p(codes) by maximum likelihood on them, watched on the
held-out split's codes against the independent-frequency baseline that the VQ-VAE samples from
without a prior. The result goes into the same run folder (prior_config.json + prior.safetensors,
written atomically with a new model card and sample grid), and ``load_model`` attaches it.

Like ``train``, this is a generator of Events, seeded throughout: the same folder and config give
the same prior on a CPU. Dropout draws from torch's global generator, so the loop runs inside a
forked, seeded RNG state and leaves the caller's untouched.
"""
from __future__ import annotations

import dataclasses
import math
import re
import shlex
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from ..config import from_dict, to_dict
from ..data import ImageSet, load_dataset
from ..device import pick_device
from ..errors import TrainingDiverged, VAEError
from ..evaluation.metrics import evaluate_model
from ..io.card import model_card
from ..io.loading import open_model
from ..io.run_folder import add_code_prior
from ..io.run_folder import load_run_config, summarize_metrics
from ..models.vq import VQVAE
from ..models.vq_prior import CodePriorConfig, CodeTransformer, frequency_log_prob
from .loop import Event, epoch_generator, fixed_samples

ARCH_FIELDS = ("width", "layers", "heads", "dropout")


@dataclasses.dataclass(frozen=True)
class PriorTrainConfig:
    """How the code prior is trained; its architecture is a CodePriorConfig."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3                 # peak learning rate, after a warm-up of one epoch, then cosine decay
    weight_decay: float = 0.01       # AdamW, on the weight matrices only
    seed: int = 0
    device: str = "auto"
    threads: int = 0

    def validate(self) -> None:
        if not 1 <= self.epochs <= 10_000:
            raise VAEError(f"PriorTrainConfig: epochs must be between 1 and 10000, got {self.epochs}.")
        if not 1 <= self.batch_size <= 65_536:
            raise VAEError(f"PriorTrainConfig: batch_size must be between 1 and 65536, got {self.batch_size}.")
        if not 0 < self.lr < 1:
            raise VAEError(f"PriorTrainConfig: lr must be in (0, 1), got {self.lr}.")
        if self.weight_decay < 0 or self.threads < 0:
            raise VAEError("PriorTrainConfig: weight_decay and threads must be non-negative.")

    def command(self, folder: str, arch: CodePriorConfig) -> str:
        """The CLI command that reproduces this prior."""
        args = ["python", "-m", "vae_core", "train-prior", str(folder)]
        default_arch = CodePriorConfig()
        for name in ARCH_FIELDS:
            if getattr(arch, name) != getattr(default_arch, name):
                args += [f"--{name}", str(getattr(arch, name))]
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v != f.default and f.name not in ("device", "threads"):
                args += [f"--{f.name.replace('_', '-')}", str(v)]
        return shlex.join(args)


@torch.no_grad()
def encode_codes(model: VQVAE, data: ImageSet, batch_size: int = 500) -> torch.Tensor:
    """The code grid of every image: (N, grid, grid) long, on the model's device (no_grad, not
    inference_mode: the codes are the prior's training inputs, and inference tensors cannot be)."""
    return torch.cat([model.codes(model.encode(x).mu) for x, _ in data.batches(batch_size, model.device)])


@torch.inference_mode()
def code_nll(prior: CodeTransformer, codes: torch.Tensor, batch_size: int = 500) -> float:
    """Mean -log p(codes) per grid, in nats."""
    was = prior.training
    prior.eval()
    total = sum(-prior.log_prob(codes[i:i + batch_size]).sum().item() for i in range(0, len(codes), batch_size))
    prior.train(was)
    return total / max(len(codes), 1)


def _lr_at(cfg: PriorTrainConfig, step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_prior(folder: str | Path, arch: dict | None = None, cfg: PriorTrainConfig | None = None, *,
                log_every: int = 10, save: bool = True) -> Iterator[Event]:
    """Train a code prior for the VQ-VAE in ``folder``, yielding Events; with ``save`` it is added to the folder.

    ``arch`` overrides CodePriorConfig's width, layers, heads and dropout (the codebook size and the
    grid come from the VQ-VAE). The "done" event's ``eval`` holds the held-out NLLs and the model's
    metrics with the prior.
    """
    cfg = cfg or PriorTrainConfig()
    cfg.validate()
    folder = Path(folder)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, _ = open_model(folder, device=device)
    if model.as_codebook() is None:
        raise VAEError(f"train-prior fits a prior over a VQ-VAE's codes; {folder} holds a {model.config.model_type} "
                       "model. Train a VQ-VAE first (python -m vae_core train --model vq --out RUN).")
    unknown = sorted(set(arch or {}) - set(ARCH_FIELDS))
    if unknown:
        raise VAEError(f"Unknown code prior setting(s) {unknown}; choose from {list(ARCH_FIELDS)}.")
    prior_cfg = from_dict(CodePriorConfig, {"codebook_size": model.config.codebook_size, "grid": model.config.grid,
                                            **(arch or {})})
    run = load_run_config(folder)
    train_data = load_dataset(run.train.dataset, "train", image_size=run.train.image_size)
    test_data = load_dataset(run.train.dataset, "test", image_size=run.train.image_size)
    model.attach_prior(None)                       # codes come from the VQ-VAE alone
    codes = encode_codes(model, train_data).flatten(1)                       # (N, T)
    test_codes = encode_codes(model, test_data).flatten(1)
    counts = torch.bincount(codes.flatten(), minlength=prior_cfg.codebook_size)
    baseline = float(-frequency_log_prob(test_codes, counts).mean())
    n, B = len(codes), min(cfg.batch_size, len(codes))
    steps_per_epoch = max(1, n // B)
    total, warmup = steps_per_epoch * cfg.epochs, steps_per_epoch

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        prior = CodeTransformer(prior_cfg).to(device).train()
        decay = [p for p in prior.parameters() if p.dim() >= 2]
        rest = [p for p in prior.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
        yield Event("start", 0, 0, total, message=f"training a code prior on {n} code grids of {prior_cfg.positions} "
                                                  f"codes on {device}; independent-frequency baseline on the test "
                                                  f"split: {baseline:.2f} nats per grid")
        step, elapsed, history = 0, 0.0, []
        for epoch in range(cfg.epochs):
            perm = torch.randperm(n, generator=epoch_generator(cfg.seed, epoch, device), device=device)
            acc, t0 = [], time.perf_counter()
            for i in range(steps_per_epoch):
                batch = codes.index_select(0, perm[i * B:(i + 1) * B])
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg, step, warmup, total)
                logits = prior(batch)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
                opt.step()
                step += 1
                acc.append(loss.detach())
                if len(acc) == log_every or i == steps_per_epoch - 1:
                    nll = torch.stack(acc).mean().item() * prior_cfg.positions      # nats per grid
                    if not math.isfinite(nll):
                        raise TrainingDiverged(f"The code prior's loss became NaN or Inf at step {step}; try a lower "
                                               "--lr.", step=step)
                    dt = time.perf_counter() - t0
                    elapsed += dt
                    yield Event("step", step, epoch, total, {"nll": nll}, len(acc) * B / max(dt, 1e-9), elapsed)
                    acc, t0 = [], time.perf_counter()
            ev = {"train_nll": nll, "test_nll": code_nll(prior, test_codes), "frequency_nll": baseline}
            history.append({"epoch": epoch + 1, **{k: round(v, 3) for k, v in ev.items()}})
            yield Event("epoch", step, epoch + 1, total, {"nll": nll}, elapsed=elapsed, eval=ev)

    prior.eval()
    model.attach_prior(prior)
    metrics = evaluate_model(model, test_data, seed=run.train.seed, max_images=2000)
    result = {"test_nll": history[-1]["test_nll"], "frequency_nll": baseline, "train_nll": code_nll(prior, codes),
              "metrics": metrics}
    if save:
        samples = fixed_samples(model, run.train.seed)
        card = prior_card(folder, model, run, prior_cfg, cfg, metrics, result)
        add_code_prior(folder, model, card=card, samples=samples)
    yield Event("done", step, cfg.epochs, total, {"nll": history[-1]["train_nll"]}, elapsed=elapsed, eval=result,
                message=f"finished; held-out code NLL {result['test_nll']:.2f} nats per grid against "
                        f"{baseline:.2f} for independent code frequencies")


def prior_card(folder: Path, model: VQVAE, run, prior_cfg: CodePriorConfig, cfg: PriorTrainConfig, metrics: dict,
               result: dict) -> str:
    """The run folder's model card, remade with the prior: both commands, the metrics with the prior, its configs."""
    import json

    old = (folder / "README.md").read_text(errors="replace") if (folder / "README.md").is_file() else ""
    trained = re.findall(r"^Trained for \d+ epochs.*$", old, flags=re.M)
    card_metrics = summarize_metrics(metrics)
    card_metrics.update(prior_code_nll=round(metrics["prior_code_nll"], 4),
                        elbo_bits_per_dim=round(metrics["elbo_bits_per_dim"], 4),
                        frequency_code_nll=round(result["frequency_nll"], 4))
    prior_params = sum(p.numel() for p in model.code_prior.parameters())
    extra = "\n".join([
        "## Code prior", "",
        (f"An autoregressive transformer over the {prior_cfg.grid}x{prior_cfg.grid} code grid ({prior_params:,} "
         "parameters; `prior_config.json`, `prior.safetensors`), trained on the training split's codes after the "
         "VQ-VAE. Samples draw codes from it in raster order. With it, `elbo` is log p(x|codes) + log p(codes), "
         "a lower bound on log p(x) since the posterior is a single code grid, and `kl` is -log p(codes) "
         f"(`prior_code_nll`); drawing every code independently from its training frequency gives "
         f"{result['frequency_nll']:.2f} nats per grid instead (`frequency_code_nll`)."), "",
        "```json", json.dumps({"prior": prior_cfg.to_dict(), "train": to_dict(cfg)}, indent=2), "```", "",
        *trained])
    commands = run.command() + "\n" + cfg.command("RUN_DIR", prior_cfg)
    return model_card(model, training=run.to_dict()["train"], metrics=card_metrics, command=commands,
                      sample_image="samples.png", extra=extra)


__all__ = ["PriorTrainConfig", "code_nll", "encode_codes", "prior_card", "train_prior"]
