"""train(config, data): training a VAE, for the CLI, the app's live page and the tests.

A run is a Task of the one training loop (engine.py, which ``train_prior`` shares), so ``train`` is a
generator of Events. The dataset lives on the device as a uint8 tensor and is
shuffled by index each epoch, so there is no per-sample Python work. Every random draw comes
from a generator seeded by (seed, epoch), which makes runs deterministic on CPU and lets
``resume`` continue to exactly the weights an uninterrupted run reaches. Under torchrun every
rank draws the noise of the whole global batch and keeps its slice, so N processes make the
same update as one process on the same global batch: to fp32 rounding in fp32, and to bf16
precision under bf16 autocast, where each process rounds its own weight gradients to bf16 before
they are averaged.

Precision: fp32 by default; ``precision="auto"`` trains in bf16 autocast where the device has native bf16.
In fp32 on a CPU, each dense and convolution layer runs on the kernel measured fastest for its shape
(``kernels.py``); a run records both in trainer_state.json, so ``--resume`` continues the same way. The run
folder (``vae_core.io.run_folder``) is saved at an epoch's end at most every ``checkpoint_seconds``, at the
last epoch, and at a stop at the time limit. The same run in one process gives the same bits, and a resumed
run the bits of an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

from ..data import TEST_BINARIZATION_SEED, ImageSet, bernoulli_draw, binarized_set, class_balanced_indices, load_dataset
from ..device import pick_device
from ..errors import TrainingDiverged, VAEError
from ..evaluation.metrics import evaluate_model
from ..io.run_folder import PRIOR_FILES, RunConfig, resume_run, save_run
from ..models import ModelConfig, VAEBase, build_model
from . import route, snapshots
from .code_use import CodeUse
from .engine import Event, run_epochs
from .objectives import StepResult, training_step
from .optim import FusedAdam, make_optimizer

SAMPLE_COUNT = 64


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
    m.check_training(t)                       # the family's own rules (objective, labels) live with the family
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
        return training_step(self.model, x, y, cfg, step=step, total_steps=total_steps, randn=randn,
                             dataset_size=dataset_size, labelled_share=labelled_share)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def init_model(config: ModelConfig, seed: int) -> VAEBase:
    """Build the model with its weights drawn from ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


@dataclasses.dataclass
class _Run:
    """What one call of ``train`` holds between its steps, set up by ``_prepare``: the engine's Task for a VAE
    (``engine.run_epochs`` advances it). It lives as long as the generator and is nobody else's."""

    config: RunConfig
    data: ImageSet
    test_data: ImageSet | None
    out: Path | None
    rank: int
    world: int
    device: torch.device
    model: VAEBase
    opt: torch.optim.Optimizer | FusedAdam
    objective: nn.Module
    images: torch.Tensor                  # uint8 (N, C, H, W) on the device (packed bits stay packed on the CPU)
    labels: torch.Tensor | None
    labelled: torch.Tensor | None         # an M2's labelled subset (labels_per_class), else None
    labelled_share: float
    start_epoch: int
    step: int
    history: list
    elapsed: float
    saved: dict                           # a resumed run's setup (precision, kernels)
    log_every: int
    amp: contextlib.AbstractContextManager = contextlib.nullcontext()
    setup: dict = dataclasses.field(default_factory=dict)
    snaps: snapshots.Snapshots | None = None
    part_names: list[str] | None = None
    means: dict = dataclasses.field(default_factory=dict)
    message: str = ""                     # the start event's
    gen: torch.Generator | None = None    # the epoch in progress: its seeded draws, and its code use
    perm: torch.Tensor | None = None
    randn: object = None
    codes: CodeUse | None = None
    kept_at: float = 0.0                  # the training seconds at the last saved checkpoint (checkpoint_seconds)

    @property
    def n(self) -> int:
        return len(self.data)

    @property
    def local_batch(self) -> int:
        return self.config.train.batch_size // self.world

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.config.train.batch_size          # the last partial batch is dropped

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.train.epochs

    @property
    def epochs(self) -> int:
        return self.config.train.epochs

    @property
    def images_per_step(self) -> int:
        return self.config.train.batch_size

    @property
    def grad_clip(self) -> float:
        return self.config.train.grad_clip

    @property
    def max_seconds(self) -> float:
        return self.config.train.max_seconds

    def parameters(self):
        return self.model.parameters()

    def start(self) -> Event:
        return Event("start", self.step, self.start_epoch, self.total_steps, elapsed=self.elapsed,
                     snapshots=self.snaps and self.snaps.copy(), message=self.message)

    def begin_epoch(self, epoch: int) -> None:
        self.gen = epoch_generator(self.config.train.seed, epoch, self.device)
        self.perm = torch.randperm(self.n, generator=self.gen, device=self.device)
        self.randn = _noise(self, self.gen)
        self.codes = CodeUse(self.config.train.restart_dead_codes)

    def loss(self, i: int) -> StepResult:
        x, y = _batch(self, self.perm, i, self.gen)
        with self.amp:
            return self.objective(x, y, self.config.train, self.step, self.total_steps, self.randn, self.n,
                                  self.labelled_share)

    def after_step(self, result: StepResult) -> None:
        self.codes.add(self.step, self.model, result, self.gen, self.world)

    def diverged(self, step: int, parts: list[str]) -> None:
        kept = f"; the last good checkpoint in {self.out} is kept" if self.out is not None and self.out.exists() else ""
        raise TrainingDiverged(f"The loss became NaN or Inf at step {step} ({', '.join(parts)}){kept}. Try a lower "
                               "learning rate (--lr), gradient clipping (--grad-clip 1.0) or KL annealing.", step=step)

    def end_epoch(self, epoch: int) -> Event:
        self.means = {**self.means, **self.codes.summary(self.model, self.world)}
        return _end_epoch(self, epoch)

    def stopped(self, epoch: int, reason: str) -> Event:
        return _stopped(self, epoch, reason)

    def finish(self) -> Event:
        return Event("done", self.step, self.epochs, self.total_steps, self.means, elapsed=self.elapsed,
                     message="finished")


def train(config: RunConfig, data: ImageSet | None = None, test_data: ImageSet | None = None, *,
          out_dir: str | Path | None = None, resume: bool = False, model: VAEBase | None = None,
          log_every: int = 10) -> Iterator[Event]:
    """Train, yielding Events: "start", "step" every ``log_every`` steps, "epoch", "done".

    With ``out_dir`` a checkpoint (Hub layout plus optimizer and trainer state) is written
    atomically after each epoch. ``resume`` continues from the checkpoint in ``out_dir``.
    A run stopped by its time limit saves the weights it has (the "done" event says after which step). Closing
    the generator stops the run; the last checkpoint stays as it was.
    """
    run = _prepare(config, data, test_data, Path(out_dir) if out_dir else None, resume, model, log_every)
    run.message = route.choose(run) + _stale_prior_note(run.out, resume)
    yield from run_epochs(run)


def _checked_data(config: RunConfig, data: ImageSet | None, test_data: ImageSet | None,
                  world: int) -> tuple[ImageSet, ImageSet | None]:
    """The run's training and held-out images (its dataset's when none are given), checked against the run."""
    cfg = config.train
    if data is None:
        data = load_dataset(cfg.dataset, "train", image_size=cfg.image_size)
        if test_data is None:
            test_data = load_dataset(cfg.dataset, "test", image_size=cfg.image_size)
    check_compatible(config, data)
    if cfg.batch_size > len(data):
        raise VAEError(f"batch_size {cfg.batch_size} is larger than the {len(data)} training images; lower it.")
    if cfg.batch_size % world:
        raise VAEError(f"batch_size {cfg.batch_size} must divide evenly among {world} processes.")
    if world > 1 and not config.model.trains_distributed():
        raise VAEError(f"A {config.model.model_type} model trains in one process; run it without torchrun.")
    return data, test_data


def _prepare(config: RunConfig, data: ImageSet | None, test_data: ImageSet | None, out: Path | None, resume: bool,
             model: VAEBase | None, log_every: int) -> _Run:
    """Device, data, model, optimizer and (with ``resume``) the state of the run in ``out``."""
    cfg = config.train
    rank, world = _dist_info()
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data, test_data = _checked_data(config, data, test_data, world)
    if cfg.binarize != "none" and test_data is not None and test_data.binarization is None:
        test_data = binarized_set(test_data, TEST_BINARIZATION_SEED)   # held out as evaluate --binarized scores it
    model = (model if model is not None else init_model(config.model, cfg.seed)).to(device).train()
    opt = make_optimizer(model, cfg, device)
    start_epoch, history, elapsed, saved = 0, [], 0.0, {}
    if resume:
        if out is None:
            raise VAEError("--resume needs --out, the run folder to continue.")
        start_epoch, history, elapsed, saved = resume_run(out, config, model, opt)
        if start_epoch >= cfg.epochs:
            raise VAEError(f"{out} already finished {start_epoch} epochs; raise --epochs to train further.")
    objective: nn.Module = _Objective(model)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)
    labels = data.labels.to(device) if data.labels is not None and model.num_classes else None
    # An M2 with labels_per_class sees only that seeded, class-balanced subset's labels: each step
    # adds a batch of those labelled images to the usual batch, whose labels are hidden (-1).
    labelled = class_balanced_indices(data.labels, cfg.labels_per_class, cfg.seed).to(device) \
        if model.as_classifier() is not None and cfg.labels_per_class else None
    run = _Run(config, data, test_data, out, rank, world, device, model, opt, objective, data.images.to(device),
               labels, labelled, len(labelled) / len(data) if labelled is not None else 1.0, start_epoch, 0, history,
               elapsed, saved, log_every)
    run.step = start_epoch * run.steps_per_epoch
    if cfg.snapshots and rank == 0:
        run.snaps = (snapshots.read(out) if resume else None) or snapshots.start(data, cfg.snapshots, cfg.seed)
        if not run.snaps.epochs:
            run.snaps.add(start_epoch, snapshots.encode(model, data, run.snaps))
    return run


def _stale_prior_note(out: Path | None, resume: bool) -> str:
    """A VQ-VAE's code prior (train-prior) models the codes of the weights it was fitted to; training moves
    them, so the run saved from here leaves it out, and says so at the start rather than after."""
    if not resume or not any((out / f).exists() for f in PRIOR_FILES):
        return ""
    return (f" The code prior in {out} was fitted to the codes before this training, which moves them, so the "
            f"saved run leaves it out; fit a new one with `python -m vae_core train-prior {out}`.")


def _batch(run: _Run, perm: torch.Tensor, i: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step ``i``'s images (b, C, H, W) in [0, 1] and labels on this rank; with a labelled subset (M2), its
    images join the batch, whose own labels are hidden (-1); with --binarize dynamic, Bernoulli draws of them."""
    B, b, r = run.config.train.batch_size, run.local_batch, run.rank
    idx = perm[i * B + r * b: i * B + (r + 1) * b]
    x = run.images.index_select(0, idx).float().div_(255.0)
    y = run.labels.index_select(0, idx) if run.labels is not None else None
    if run.labelled is not None:
        pick = run.labelled[torch.randperm(len(run.labelled), generator=gen, device=run.device)[:B]]
        x = torch.cat([x, run.images.index_select(0, pick).float().div_(255.0)])     # (b + l, C, H, W)
        y = torch.cat([torch.full_like(y, -1), run.labels.index_select(0, pick)])
    if run.config.train.binarize == "dynamic":
        # A new Bernoulli draw of the grey levels every step, from the epoch's seeded generator: the same
        # seed gives the same draws, and each rank keeps its slice of the global batch's draw.
        x = bernoulli_draw(x, gen, rows=(r * len(x), run.world * len(x)))
    return x, y


def _noise(run: _Run, gen: torch.Generator):
    def randn(shape, batch_axis=0):
        # Draw the whole global batch's noise and keep this rank's slice (identical across world sizes).
        gshape = list(shape)
        gshape[batch_axis] *= run.world
        eps = torch.randn(gshape, generator=gen, device=run.device)
        return eps.narrow(batch_axis, run.rank * run.local_batch, shape[batch_axis]) if run.world > 1 else eps
    return randn


def _end_epoch(run: _Run, epoch: int) -> Event:
    """The "epoch" event: on rank 0, held-out metrics when due, samples, history, snapshots, the saved run."""
    cfg, last = run.config.train, epoch + 1 == run.config.train.epochs
    ev = Event("epoch", run.step, epoch + 1, run.total_steps, run.means, elapsed=run.elapsed)
    if run.rank != 0:
        return ev
    timely = last or run.elapsed - run.kept_at >= cfg.checkpoint_seconds      # not every short epoch
    due = timely and (run.test_data is not None and (epoch + 1) % cfg.eval_every == 0 or last)
    drawn = timely and (bool(cfg.sample_every and (epoch + 1) % cfg.sample_every == 0) or last or run.out is not None)
    ev.eval, ev.samples = _keep(run, epoch + 1, evaluate=due, sample=drawn, snapshot=True, save=timely)
    ev.snapshots = run.snaps.copy() if run.snaps is not None else None
    return ev


def _stopped(run: _Run, epoch: int, reason: str) -> Event:
    """The "done" event of a run stopped mid-epoch (its time limit): with a run folder, rank 0 evaluates and saves
    the weights after its last step, not the last epoch's; ``--resume`` redoes the interrupted epoch."""
    ev = Event("done", run.step, epoch, run.total_steps, run.means, elapsed=run.elapsed, message=reason)
    if run.rank == 0 and run.out is not None:
        ev.eval, ev.samples = _keep(run, epoch, evaluate=True, sample=True, snapshot=False, save=True, stopped=True)
        ev.message += f"; the weights after step {run.step} are saved"
    return ev


def _keep(run: _Run, epochs_done: int, *, evaluate: bool, sample: bool, snapshot: bool, save: bool,
          **note) -> tuple[dict | None, torch.Tensor | None]:
    """Rank 0's record of the run so far: held-out metrics (``evaluate``), the fixed samples (``sample``), a history
    row (with ``note``), this epoch's codes (``snapshot``), and the saved run folder (``save``); returns
    (metrics, samples)."""
    cfg, model = run.config.train, run.model
    metrics = None
    if evaluate:
        # Without held-out data the training images stand in. A seeded random sample, never the first images
        # (a dataset may be sorted by class).
        held = (run.test_data if run.test_data is not None else run.data).seeded_subset(2000, cfg.seed)[0]
        if cfg.binarize != "none" and held.binarization is None:
            held = binarized_set(held, TEST_BINARIZATION_SEED)     # scored on the binary images it models
        metrics = evaluate_model(model, held, seed=cfg.seed)
    samples = fixed_samples(model, cfg.seed) if sample else None
    run.history.append({"epoch": epochs_done, "step": run.step, **{k: round(v, 5) for k, v in run.means.items()},
                        **note, **({"test_elbo": round(metrics["elbo"], 4)} if metrics else {})})
    if run.snaps is not None and snapshot:
        run.snaps.add(epochs_done, snapshots.encode(model, run.data, run.snaps))
    run.kept_at = run.elapsed if save else run.kept_at
    if save and run.out is not None:
        save_run(run.out, run.config, model, run.opt, epoch=epochs_done, step=run.step, history=run.history,
                 elapsed=run.elapsed, metrics=metrics, samples=samples, setup=run.setup,
                 extra_files={snapshots.FILE: run.snaps.to_bytes()} if run.snaps is not None else None)
    return metrics, samples


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
