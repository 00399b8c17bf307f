"""train(config, data): one training loop for the CLI, the app's live page and the tests.

The loop is a generator of Events. The dataset lives on the device as a uint8 tensor and is
shuffled by index each epoch, so there is no per-sample Python work. Every random draw comes
from a generator seeded by (seed, epoch), which makes runs deterministic on CPU and lets
``resume`` continue to exactly the weights an uninterrupted run reaches. Under torchrun every
rank draws the noise of the whole global batch and keeps its slice, so N processes make the
same update as one process on the same global batch: to fp32 rounding in fp32, and to bf16
precision under bf16 autocast, where each process rounds its own weight gradients to bf16 before
they are averaged.

Precision: ``precision="auto"`` (the default) trains in bf16 autocast where the device has native
bf16 (``device.native_bf16``) and in fp32 elsewhere; a run records what it used in
trainer_state.json, so ``--resume`` continues the same way on any machine. In fp32 on a CPU, each
dense and convolution layer runs on the kernel measured fastest for its shape (``kernels.py``),
also recorded. Determinism holds for a given precision and route: the same run in one process
gives the same bits, and a resumed run the bits of an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
from pathlib import Path
from typing import Iterator, Literal

import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file

from .io import run_folder as checkpoint
from .models import kernels
from .training import snapshots
from .config import TrainConfig, from_dict, to_dict
from .data import ImageSet, class_balanced_indices, load_dataset
from .device import pick_device, resolve_precision
from .errors import TrainingDiverged, VAEError
from .evaluation.metrics import evaluate_model
from .models import ModelConfig, VAEBase, build_model, config_from_dict
from .models.hvae import HierarchyConfig
from .models.vq import codebook_perplexity
from .latent.class_style import classifies
from .training.objectives import loss_parts
from .training.optim import FUSED_DEVICES, FusedAdam

SAMPLE_COUNT = 64
RESTART_WINDOW = 10     # steps: a VQ-VAE code unused over this many batches is dead and is restarted


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    train: TrainConfig

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        if not isinstance(d, dict) or set(d) - {"model", "train"}:
            raise VAEError("A run config is an object with two keys, 'model' and 'train'; "
                           f"got {sorted(d) if isinstance(d, dict) else type(d).__name__}.")
        model = d.get("model", {"model_type": "mlp"})
        return cls(config_from_dict(model), from_dict(TrainConfig, d.get("train", {})))

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": to_dict(self.train)}

    def command(self) -> str:
        """A CLI command that reproduces this run."""
        args = ["python", "-m", "vae_core", "train", "--model", self.model.model_type]
        defaults = type(self.model)()
        for f in dataclasses.fields(self.model):
            v = getattr(self.model, f.name)
            if f.name != "in_shape" and v != getattr(defaults, f.name):
                args += [f"--{f.name.replace('_', '-')}", *map(str, v if isinstance(v, tuple) else [v])]
        tdef = TrainConfig()
        for f in dataclasses.fields(self.train):
            v = getattr(self.train, f.name)
            if v != getattr(tdef, f.name) and f.name not in ("device", "threads"):
                args += [f"--{f.name.replace('_', '-')}", str(v)]
        return shlex.join(args) + " --out RUN_DIR"


@dataclasses.dataclass
class Event:
    kind: Literal["start", "step", "epoch", "done"]
    step: int
    epoch: int                      # completed epochs (for "step": the epoch in progress, from 0)
    total_steps: int
    losses: dict[str, float] = dataclasses.field(default_factory=dict)
    images_per_s: float = 0.0
    elapsed: float = 0.0            # seconds of training so far (evaluation excluded)
    eval: dict | None = None        # held-out metrics, on "epoch" events
    samples: torch.Tensor | None = None   # (n, C, H, W) floats in [0, 1] on CPU
    message: str = ""
    snapshots: snapshots.Snapshots | None = None   # with config.train.snapshots: every epoch's codes so far


def check_compatible(config: RunConfig, data: ImageSet) -> None:
    m, t = config.model, config.train
    if tuple(data.shape) != tuple(m.in_shape):
        raise VAEError(f"The model expects images of shape {list(m.in_shape)} but {data.name or 'the dataset'} "
                       f"has {list(data.shape)}; set in_shape to match or resize the data with image_size.")
    if m.num_classes and data.labels is None:
        raise VAEError(f"A conditional model needs labels, and {data.name or 'this dataset'} has none.")
    if m.num_classes and int(data.labels.max()) >= m.num_classes:
        raise VAEError(f"The dataset has {int(data.labels.max()) + 1} classes but the model has num_classes="
                       f"{m.num_classes}.")
    if m.model_type == "vq" and t.objective != "elbo":
        raise VAEError(f"The VQ-VAE trains with its own objective; objective={t.objective!r} does not apply.")
    if m.model_type == "m2" and (t.objective != "elbo" or t.free_bits > 0):
        raise VAEError("M2 trains with its own objective (labelled and unlabelled ELBOs and a classification "
                       "term); objective and free_bits do not apply to it.")
    if t.labels_per_class and m.model_type != "m2":
        raise VAEError(f"labels_per_class hides labels from a semi-supervised model (--model m2); a "
                       f"{m.model_type} model does not use it.")
    if isinstance(m, HierarchyConfig) and t.objective not in ("elbo", "iwae"):
        raise VAEError(f"A hierarchical VAE trains with objective elbo or iwae; {t.objective!r} assumes one "
                       "N(0, I) prior over a flat code.")
    if len(data) < 2:
        raise VAEError("The dataset needs at least two images to train on.")


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Objective(nn.Module):
    """Wraps the model so DistributedDataParallel sees the whole loss computation as one forward."""

    def __init__(self, model: VAEBase):
        super().__init__()
        self.model = model

    def forward(self, x, y, cfg, step, total_steps, randn, dataset_size, labelled_share=1.0):
        return loss_parts(self.model, x, y, cfg, step=step, total_steps=total_steps, randn=randn,
                          dataset_size=dataset_size, labelled_share=labelled_share)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device):
    """Adam. On CPU and CUDA the fused kernel updates all parameters in one pass, called without
    torch.optim's wrappers, whose first call imports torch's compiler (vae_core/training/optim.py)."""
    if device.type in FUSED_DEVICES:
        return FusedAdam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def init_model(config: ModelConfig, seed: int) -> VAEBase:
    """Build the model with its weights drawn from ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


def train(config: RunConfig, data: ImageSet | None = None, test_data: ImageSet | None = None, *,
          out_dir: str | Path | None = None, resume: bool = False, model: VAEBase | None = None,
          log_every: int = 10) -> Iterator[Event]:
    """Train, yielding Events: "start", "step" every ``log_every`` steps, "epoch", "done".

    With ``out_dir`` a checkpoint (Hub layout plus optimizer and trainer state) is written
    atomically after each epoch. ``resume`` continues from the checkpoint in ``out_dir``.
    Closing the generator stops the run; the last checkpoint stays as it was.
    """
    cfg = config.train
    rank, world = _dist_info()
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if data is None:
        data = load_dataset(cfg.dataset, "train", image_size=cfg.image_size)
        if test_data is None:
            test_data = load_dataset(cfg.dataset, "test", image_size=cfg.image_size)
    check_compatible(config, data)
    if cfg.batch_size > len(data):
        raise VAEError(f"batch_size {cfg.batch_size} is larger than the {len(data)} training images; lower it.")
    if cfg.batch_size % world:
        raise VAEError(f"batch_size {cfg.batch_size} must divide evenly among {world} processes.")
    if config.model.model_type == "m2" and world > 1:
        raise VAEError("M2 trains in one process; run it without torchrun.")

    out = Path(out_dir) if out_dir else None
    start_epoch, history, elapsed, saved = 0, [], 0.0, {}
    if model is None:
        model = init_model(config.model, cfg.seed)
    model = model.to(device).train()
    opt = make_optimizer(model, cfg, device)
    if resume:
        if out is None:
            raise VAEError("--resume needs --out, the run folder to continue.")
        start_epoch, history, elapsed, saved = _load_run(out, config, model, opt)
        if start_epoch >= cfg.epochs:
            raise VAEError(f"{out} already finished {start_epoch} epochs; raise --epochs to train further.")
    # A VQ-VAE's code prior (train-prior) models the codes of the weights it was fitted to; training
    # moves them, so the run saved from here leaves it out, and says so now rather than after.
    stale_prior = (f" The code prior in {out} was fitted to the codes before this training, which moves them, so "
                   f"the saved run leaves it out; fit a new one with `python -m vae_core train-prior {out}`."
                   if resume and any((out / f).exists() for f in checkpoint.PRIOR_FILES) else "")

    objective: nn.Module = _Objective(model)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)

    images = data.images.to(device)           # uint8 on the device (packed bits stay packed on the CPU)
    labels = data.labels.to(device) if data.labels is not None and model.num_classes else None
    n, B = len(data), cfg.batch_size
    # An M2 with labels_per_class sees only that seeded, class-balanced subset's labels: each step
    # adds a batch of those labelled images to the usual batch, whose labels are hidden (-1).
    labelled = class_balanced_indices(data.labels, cfg.labels_per_class, cfg.seed).to(device) \
        if classifies(model) and cfg.labels_per_class else None
    labelled_share = len(labelled) / n if labelled is not None else 1.0
    local_B = B // world
    steps_per_epoch = n // B                                          # the last partial batch is dropped
    total_steps = steps_per_epoch * cfg.epochs
    step = start_epoch * steps_per_epoch
    # A resumed run keeps the precision and kernels it started with, whatever this machine would pick.
    precision = saved.get("precision") or resolve_precision(cfg.precision, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    route = _route(model, cfg, device, precision, saved.get("kernels"), total_steps - step,
                   lambda: loss_parts(model, *_measure_batch(images, labels, labelled, local_B, B), cfg, step=0,
                                      total_steps=total_steps, randn=_scratch_randn(device), dataset_size=n,
                                      labelled_share=labelled_share))
    setup = {"precision": precision, "kernels": list(route)}
    part_names: list[str] | None = None
    how = "bf16 autocast" if precision == "bf16" else ", ".join(filter(None, ["fp32", kernels.describe(model)]))
    snaps = None
    if cfg.snapshots and rank == 0:
        snaps = (snapshots.read(out) if resume else None) or snapshots.start(data, cfg.snapshots, cfg.seed)
        if not snaps.epochs:
            snaps.add(start_epoch, snapshots.encode(model, data, snaps))
    yield Event("start", step, start_epoch, total_steps, elapsed=elapsed, snapshots=snaps and snaps.copy(),
                message=f"training on {device} in {how} ({n} images, {steps_per_epoch} steps per epoch).{stale_prior}")

    for epoch in range(start_epoch, cfg.epochs):
        gen = epoch_generator(cfg.seed, epoch, device)
        perm = torch.randperm(n, generator=gen, device=device)

        def randn(shape, batch_axis=0):
            # Draw the whole global batch's noise and keep this rank's slice (identical across world sizes).
            gshape = list(shape)
            gshape[batch_axis] *= world
            eps = torch.randn(gshape, generator=gen, device=device)
            return eps.narrow(batch_axis, rank * local_B, shape[batch_axis]) if world > 1 else eps

        vq_counts = window = None
        restarted = 0
        acc, acc_steps, t0 = [], 0, time.perf_counter()
        for i in range(steps_per_epoch):
            idx = perm[i * B + rank * local_B: i * B + (rank + 1) * local_B]
            x = images.index_select(0, idx).float().div_(255.0)       # (b, C, H, W) in [0, 1]
            y = labels.index_select(0, idx) if labels is not None else None
            if labelled is not None:
                pick = labelled[torch.randperm(len(labelled), generator=gen, device=device)[:B]]
                x = torch.cat([x, images.index_select(0, pick).float().div_(255.0)])     # (b + l, C, H, W)
                y = torch.cat([torch.full_like(y, -1), labels.index_select(0, pick)])
            with amp:
                parts = objective(x, y, cfg, step, total_steps, randn, n, labelled_share)
            loss = parts["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            counts, z_e = parts.pop("_counts", None), parts.pop("_z_e", None)
            if counts is not None:
                vq_counts = counts if vq_counts is None else vq_counts + counts
                window = counts if window is None else window + counts
                if cfg.restart_dead_codes and step % RESTART_WINDOW == 0:
                    restarted += _restart_dead_codes(model, window, z_e, gen, world)
                    window = None
            if part_names is None:
                part_names = list(parts)
            acc.append(torch.stack([parts[k].detach().float() for k in part_names]))
            acc_steps += 1
            if acc_steps == log_every or i == steps_per_epoch - 1:
                rows = torch.stack(acc)                               # (steps, parts): one sync per log
                _check_finite(rows, part_names, step - acc_steps + 1, out)
                dt = time.perf_counter() - t0
                elapsed += dt
                means = dict(zip(part_names, rows.mean(0).tolist()))
                yield Event("step", step, epoch, total_steps, means, acc_steps * B / max(dt, 1e-9), elapsed)
                if cfg.max_seconds and elapsed >= cfg.max_seconds:
                    yield Event("done", step, epoch, total_steps, means, elapsed=elapsed,
                                message=f"stopped at the time limit of {cfg.max_seconds:g} s")
                    return
                acc, acc_steps, t0 = [], 0, time.perf_counter()

        if vq_counts is not None:
            if world > 1:
                dist.all_reduce(vq_counts)
            model.code_usage.copy_(vq_counts / vq_counts.sum())
            means = {**means, "codebook_usage": float((vq_counts > 0).float().mean()),
                     "perplexity": float(codebook_perplexity(vq_counts)),
                     **({"dead_codes_restarted": float(restarted)} if cfg.restart_dead_codes else {})}
        ev = Event("epoch", step, epoch + 1, total_steps, means, elapsed=elapsed)
        if rank == 0:
            last = epoch + 1 == cfg.epochs
            if (test_data is not None and (epoch + 1) % cfg.eval_every == 0) or last:
                # Without held-out data, the final epoch is still evaluated, on the training images.
                # A seeded random sample, never the first images (a dataset may be sorted by class).
                held = (test_data if test_data is not None else data).seeded_subset(2000, cfg.seed)[0]
                ev.eval = evaluate_model(model, held, seed=cfg.seed)
            if (cfg.sample_every and (epoch + 1) % cfg.sample_every == 0) or last or out is not None:
                ev.samples = fixed_samples(model, cfg.seed)
            history.append({"epoch": epoch + 1, "step": step, **{k: round(v, 5) for k, v in means.items()},
                            **({"test_elbo": round(ev.eval["elbo"], 4)} if ev.eval else {})})
            if snaps is not None:
                snaps.add(epoch + 1, snapshots.encode(model, data, snaps))
                ev.snapshots = snaps.copy()
            if out is not None:
                save_run(out, config, model, opt, epoch=epoch + 1, step=step, history=history,
                         elapsed=elapsed, metrics=ev.eval, samples=ev.samples, setup=setup, snaps=snaps)
        yield ev
    yield Event("done", step, cfg.epochs, total_steps, means, elapsed=elapsed, message="finished")


def _measure_batch(images: torch.Tensor, labels: torch.Tensor | None, labelled: torch.Tensor | None, local_B: int,
                   B: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch shaped like a training step's, for measuring the kernels: with a labelled subset (M2), the
    step's unlabelled images (labels hidden, -1) and the subset's labelled ones; no other label is read."""
    x = images[:local_B].float().div_(255.0)
    if labelled is None:
        return x, labels[:local_B] if labels is not None else None
    pick = labelled[:B]
    x = torch.cat([x, images.index_select(0, pick).float().div_(255.0)])
    return x, torch.cat([torch.full((local_B,), -1, dtype=labels.dtype, device=labels.device),
                         labels.index_select(0, pick)])


def _scratch_randn(device: torch.device):
    """Noise for the one forward pass that measures the kernels: its own generator, so the run's draws are untouched."""
    gen = torch.Generator(device=device).manual_seed(0)
    return lambda shape, batch_axis=0: torch.randn(shape, generator=gen, device=device)


def _route(model: VAEBase, cfg: TrainConfig, device: torch.device, precision: str, saved: list | None,
           steps_left: int, forward) -> tuple[str, ...]:
    """The kernel of each routable layer for this run (see kernels.py): the saved route on resume, else measured.

    Only fp32 on a CPU is routed; with ``kernels="torch"`` every layer keeps torch's default, and with
    ``"auto"`` a run of fewer than ``kernels.MEASURE_MIN_STEPS`` steps does too (measuring would cost it more
    than it could gain).
    """
    if precision != "fp32" or cfg.kernels == "torch" or not kernels.alternative_available(device):
        return kernels.apply_route(model, None)
    if saved is not None:
        return kernels.apply_route(model, tuple(saved))
    if cfg.kernels == "auto" and steps_left < kernels.MEASURE_MIN_STEPS:
        return kernels.apply_route(model, None)
    kernels.apply_route(model, None)
    return kernels.apply_route(model, kernels.measure_route(model, forward))


def _restart_dead_codes(model: VAEBase, window: torch.Tensor, z_e: torch.Tensor, gen: torch.Generator,
                        world: int) -> int:
    """Restart the VQ-VAE's codes unused over the last RESTART_WINDOW steps (``window``: their counts) at
    encoder outputs of the current batch (``z_e``), as Jukebox does (Dhariwal et al., 2020). Checked every
    few steps rather than once an epoch: a code restarted once an epoch is often dead again by the next.
    Under DDP the counts are summed over ranks and rank 0's codebook is broadcast, so ranks agree."""
    if world > 1:
        dist.all_reduce(window)
    n = model.restart_dead_codes(window, z_e, gen)
    if world > 1:
        dist.broadcast(model.codebook.weight.data, 0)
    return n


def _check_finite(rows: torch.Tensor, names: list[str], first_step: int, out: Path | None) -> None:
    """Raise TrainingDiverged naming the first step, and its loss parts, that are not finite; rows (steps, parts)."""
    bad = ~torch.isfinite(rows).all(1)
    if bad.any():
        row = int(bad.nonzero()[0])
        at = first_step + row
        parts = [n for n, ok in zip(names, torch.isfinite(rows[row]).tolist()) if not ok]
        kept = f"; the last good checkpoint in {out} is kept" if out is not None and out.exists() else ""
        raise TrainingDiverged(f"The loss became NaN or Inf at step {at} ({', '.join(parts)}){kept}. Try a lower "
                               "learning rate (--lr), gradient clipping (--grad-clip 1.0) or KL annealing.", step=at)


@torch.inference_mode()
def fixed_samples(model: VAEBase, seed: int, n: int = SAMPLE_COUNT) -> torch.Tensor:
    """The same prior draws every epoch, so the grid shows the model changing, not the noise."""
    was = model.training
    model.eval()
    gen = torch.Generator(device=model.device).manual_seed(seed)
    y = (torch.arange(n, device=model.device) % model.num_classes) if model.num_classes else None
    z = model.prior_sample(n, gen)
    x = model.decode(z, y).float().clamp(0, 1).cpu()
    model.train(was)
    return x


# ---------------------------------------------------------------------------------------------
# Run folders


def save_run(out: Path, config: RunConfig, model: VAEBase, opt: torch.optim.Optimizer | FusedAdam, *, epoch: int,
             step: int, history: list, elapsed: float, metrics: dict | None,
             samples: torch.Tensor | None = None, setup: dict | None = None,
             snaps: snapshots.Snapshots | None = None) -> None:
    """Write the whole run folder atomically: model, card, config, optimizer and trainer state, and
    the snapshots of the codes where the run keeps them.

    ``setup`` records how the run computed ({"precision": "bf16" or "fp32", "kernels": [...]}),
    so that ``--resume`` goes on the same way and the card can say so."""
    setup = setup or {}
    card_metrics = summarize_metrics(metrics) if metrics else None
    card = checkpoint.model_card(model, training=config.to_dict()["train"], metrics=card_metrics,
                                 command=config.command(), sample_image="samples.png",
                                 extra=f"Trained for {epoch} epochs ({step} steps, {elapsed:.1f} s)"
                                       f"{precision_note(setup.get('precision'), config.train.precision)}")
    checkpoint.write_run_folder(
        out, model, card=card, samples=samples if samples is not None else fixed_samples(model, config.train.seed),
        run_config=config.to_dict(), optimizer=opt,
        trainer_state={"epoch": epoch, "step": step, "elapsed": elapsed, "history": history, "metrics": card_metrics,
                       **setup},
        extra_files={snapshots.FILE: snaps.to_bytes()} if snaps is not None else None)


def precision_note(used: str | None, asked: str) -> str:
    """The end of the card's training sentence: in what precision the run computed, and what that means."""
    if used == "bf16":
        why = "--precision auto, on hardware with native bf16" if asked == "auto" else "--precision bf16"
        return (f", in bf16 autocast ({why}). bf16 changes the numerics: after the same epochs as fp32, the "
                "shipped MNIST configs' held-out ELBO moved by -0.94 to +0.86 nats (mnist-hvae -0.94, mnist-m2 -0.66, "
                "mnist-mlp +0.22, mnist-cvae +0.21, mnist-conv +0.86; bench/precision_check.py); `--precision fp32`, "
                "the default, trains in full precision.")
    if used == "fp32":
        return ", in fp32."
    return "."


def summarize_metrics(m: dict) -> dict:
    keys = ("elbo", "recon", "kl", "mse", "active_units", "log_likelihood", "bits_per_dim",
            "codebook_usage", "perplexity", "accuracy")
    return {k: (round(m[k], 4) if isinstance(m[k], float) else m[k]) for k in keys if k in m}


def _load_run(out: Path, config: RunConfig, model: VAEBase, opt: torch.optim.Optimizer | FusedAdam):
    """The epoch, history, time and setup (precision, kernel route) of the run in ``out``, its weights and
    optimizer state loaded; every file checked against the folder's checksums, and any damage a VAEError
    that says which file."""
    checkpoint.recover_folder(out)
    state_path = out / "trainer_state.json"
    if not state_path.is_file():
        raise VAEError(f"{out} has no trainer_state.json, so there is nothing to resume; start a new run.")
    checkpoint.verify_files(out, ["training_config.json", "model.safetensors", *checkpoint.RESUME_FILES])
    saved = load_run_config(out)
    if saved.model != config.model or dataclasses.replace(saved.train, epochs=0, device="auto", threads=0) != \
            dataclasses.replace(config.train, epochs=0, device="auto", threads=0):
        raise VAEError(f"The config differs from the one {out} was trained with (only --epochs may change "
                       "on resume); start a new run folder instead.")
    model.load_state_dict(checkpoint.load_state(out, model), strict=True)
    state = checkpoint.load_json(state_path)
    try:
        epoch, history, elapsed = int(state["epoch"]), list(state["history"]), float(state["elapsed"])
        meta = state["optimizer"]
        # Folders written before precision and kernels were recorded trained in fp32 on torch's kernels.
        setup = {"precision": str(state.get("precision", "fp32")), "kernels": state.get("kernels")}
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(state_path, e) from None
    opt_path = out / "optimizer.safetensors"
    try:
        opt_tensors = load_file(str(opt_path), device=str(model.device))
    except Exception as e:                    # safetensors' own error, or a missing file
        raise _damaged(opt_path, e) from None
    try:
        checkpoint.optimizer_from_files(opt, opt_tensors, meta)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        raise _damaged(opt_path, e, "does not fit this model's optimizer") from None
    return epoch, history, elapsed, setup


def _damaged(path: Path, e: BaseException, what: str = "is damaged") -> VAEError:
    return VAEError(f"{path} {what} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}), so the "
                    f"run cannot resume from it. Its weights still open with load_model('{path.parent}'); to go on "
                    "training, start a new run folder (or restore this one from a backup).")


def load_run_config(out: str | Path) -> RunConfig:
    out = Path(out)
    checkpoint.recover_folder(out)             # a run killed between the two renames of a save
    path = out / "training_config.json"
    if not path.is_file():
        raise VAEError(f"{out} has no training_config.json; it is not a run folder written by vae_core train.")
    d = checkpoint.load_json(path)
    if not isinstance(d, dict):
        raise _damaged(path, TypeError(f"a JSON {type(d).__name__}"))
    return RunConfig.from_dict(d)
