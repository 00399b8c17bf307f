"""train_prior(run folder): fit an autoregressive prior over a trained VQ-VAE's code grids, and add it to the folder.

The VQ-VAE is frozen: its encoder turns the training images into code grids once, and a causal
transformer (models/vq_prior.py) learns p(codes) by maximum likelihood on them, watched on the
held-out split's codes against the independent-frequency baseline that the VQ-VAE samples from
without a prior. The result goes into the same run folder (prior_config.json + prior.safetensors,
written atomically with a new model card and sample grid), and ``load_model`` attaches it.

It runs on the same loop as ``train`` (engine.run_epochs, this module's _PriorRun being the task), so
like ``train`` it is a generator of Events, seeded throughout: the same folder and config give
the same prior on a CPU. Opening the model and dropout draw from torch's global generator, so the
whole call runs inside a forked, seeded RNG state and leaves the caller's untouched.
"""
from __future__ import annotations

import dataclasses
import math
import re
import shlex
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
from ..io.run_folder import RunConfig, add_code_prior, load_run_config, summarize_metrics
from ..models.vq import VQVAE
from ..models.vq_prior import CodePriorConfig, CodeTransformer, frequency_log_prob
from .engine import Event, run_epochs
from .loop import epoch_generator, fixed_samples
from .objectives import StepResult

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
    metrics with the prior. The steps run on the same loop as ``train`` (engine.run_epochs).
    """
    cfg = cfg or PriorTrainConfig()
    cfg.validate()
    folder = Path(folder)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # Opening the model draws from torch's global generator, and dropout does: all of it runs in a forked state.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model, prior_cfg = _open_vq(folder, arch, device)
        run = load_run_config(folder)
        test_data = load_dataset(run.train.dataset, "test", image_size=run.train.image_size)
        model.attach_prior(None)                       # codes come from the VQ-VAE alone
        codes = encode_codes(model, load_dataset(run.train.dataset, "train", image_size=run.train.image_size))
        test_codes = encode_codes(model, test_data).flatten(1)                   # (N_test, T)
        torch.manual_seed(cfg.seed)
        prior = CodeTransformer(prior_cfg).to(device).train()
        task = _PriorRun(cfg, prior, _optimizer(prior, cfg), codes.flatten(1), test_codes, device, log_every,
                         model, run, test_data, folder, save)
        yield from run_epochs(task)


def _open_vq(folder: Path, arch: dict | None, device: torch.device) -> tuple[VQVAE, CodePriorConfig]:
    """The VQ-VAE in ``folder`` and its prior's architecture (``arch`` over the defaults), or a clear error."""
    model, _ = open_model(folder, device=device)
    if model.as_codebook() is None:
        raise VAEError(f"train-prior fits a prior over a VQ-VAE's codes; {folder} holds a {model.config.model_type} "
                       "model. Train a VQ-VAE first (python -m vae_core train --model vq --out RUN).")
    unknown = sorted(set(arch or {}) - set(ARCH_FIELDS))
    if unknown:
        raise VAEError(f"Unknown code prior setting(s) {unknown}; choose from {list(ARCH_FIELDS)}.")
    return model, from_dict(CodePriorConfig, {"codebook_size": model.config.codebook_size,
                                              "grid": model.config.grid, **(arch or {})})


def _optimizer(prior: CodeTransformer, cfg: PriorTrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices only."""
    decay = [p for p in prior.parameters() if p.dim() >= 2]
    rest = [p for p in prior.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)


@dataclasses.dataclass
class _PriorRun:
    """What one call of ``train_prior`` holds: the engine's Task for a code prior over the frozen VQ-VAE's codes.
    Its steps minimise the codes' cross-entropy per position and report ``nll`` in nats per grid."""

    cfg: PriorTrainConfig
    prior: CodeTransformer
    opt: torch.optim.Optimizer
    codes: torch.Tensor                   # (N, T) the training split's code grids, flattened
    test_codes: torch.Tensor              # (N_test, T)
    device: torch.device
    log_every: int
    model: VQVAE                          # frozen; the prior is attached to it at the end
    run: RunConfig                        # the VQ-VAE's run, for its seed and its card
    test_data: ImageSet
    folder: Path
    save: bool
    step: int = 0
    elapsed: float = 0.0
    means: dict = dataclasses.field(default_factory=dict)
    part_names: list[str] | None = dataclasses.field(default_factory=lambda: ["nll"])
    history: list = dataclasses.field(default_factory=list)
    perm: torch.Tensor | None = None      # the epoch in progress's order of the code grids
    start_epoch: int = 0
    grad_clip: float = 1.0
    max_seconds: float = 0.0

    def __post_init__(self):
        counts = torch.bincount(self.codes.flatten(), minlength=self.prior.config.codebook_size)
        self.baseline = float(-frequency_log_prob(self.test_codes, counts).mean())   # nats per grid

    @property
    def epochs(self) -> int:
        return self.cfg.epochs

    @property
    def images_per_step(self) -> int:
        return min(self.cfg.batch_size, len(self.codes))

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.codes) // self.images_per_step)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    def parameters(self):
        return self.prior.parameters()

    def start(self) -> Event:
        return Event("start", 0, 0, self.total_steps,
                     message=f"training a code prior on {len(self.codes)} code grids of {self.codes.shape[1]} codes "
                             f"on {self.device}; independent-frequency baseline on the test split: "
                             f"{self.baseline:.2f} nats per grid")

    def begin_epoch(self, epoch: int) -> None:
        self.perm = torch.randperm(len(self.codes), generator=epoch_generator(self.cfg.seed, epoch, self.device),
                                   device=self.device)

    def loss(self, i: int) -> StepResult:
        B = self.images_per_step
        batch = self.codes.index_select(0, self.perm[i * B:(i + 1) * B])
        for group in self.opt.param_groups:                  # warm-up, then cosine decay, step by step
            group["lr"] = _lr_at(self.cfg, self.step, self.steps_per_epoch, self.total_steps)
        logits = self.prior(batch)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch.reshape(-1))
        return StepResult({"loss": loss, "nll": loss.detach() * batch.shape[1]})

    def after_step(self, result: StepResult) -> None:
        pass                                                 # nothing to keep up between steps

    def diverged(self, step: int, parts: list[str]) -> None:
        raise TrainingDiverged(f"The code prior's loss became NaN or Inf at step {step}; try a lower --lr.", step=step)

    def end_epoch(self, epoch: int) -> Event:
        nll = self.means["nll"]
        ev = {"train_nll": nll, "test_nll": code_nll(self.prior, self.test_codes), "frequency_nll": self.baseline}
        self.history.append({"epoch": epoch + 1, **{k: round(v, 3) for k, v in ev.items()}})
        return Event("epoch", self.step, epoch + 1, self.total_steps, {"nll": nll}, elapsed=self.elapsed, eval=ev)

    def stopped(self, epoch: int, reason: str) -> Event:
        """Stopped mid-epoch (its time limit): the prior it has is measured, attached and saved like a finished one."""
        self.end_epoch(epoch)
        done = self.finish()
        done.message = f"{reason}; the prior after step {self.step} is kept" + done.message.removeprefix("finished")
        return done

    def finish(self) -> Event:
        """Attach the prior, measure the model with it, and (with ``save``) add it to the run folder."""
        self.prior.eval()
        self.model.attach_prior(self.prior)
        metrics = evaluate_model(self.model, self.test_data, seed=self.run.train.seed, max_images=2000)
        result = {"test_nll": self.history[-1]["test_nll"], "frequency_nll": self.baseline,
                  "train_nll": code_nll(self.prior, self.codes), "metrics": metrics}
        if self.save:
            card = prior_card(self.folder, self.model, self.run, self.prior.config, self.cfg, metrics, result)
            add_code_prior(self.folder, self.model, card=card, samples=fixed_samples(self.model, self.run.train.seed))
        return Event("done", self.step, self.cfg.epochs, self.total_steps, {"nll": self.history[-1]["train_nll"]},
                     elapsed=self.elapsed, eval=result,
                     message=f"finished; held-out code NLL {result['test_nll']:.2f} nats per grid against "
                             f"{self.baseline:.2f} for independent code frequencies")


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
                      sample_image="samples.png", extra=extra, scored_as=metrics.get("scored_as"),
                      metrics_note=metrics.get("binarisation", ""))


__all__ = ["PriorTrainConfig", "code_nll", "encode_codes", "prior_card", "train_prior"]
