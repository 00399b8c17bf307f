"""What a training run computes with: its precision (fp32, or bf16 autocast) and its kernel route (kernels.py),
chosen once at the start of ``train`` and recorded in the run folder so that ``--resume`` goes on the same way."""
from __future__ import annotations

import contextlib

import torch

from ..device import resolve_precision
from ..models import kernels
from .objectives import training_step


def choose(run) -> str:
    """Precision and kernels for ``run`` (loop.py's Task; a resumed run keeps the ones it started with, whatever
    this machine would pick), set on it as its autocast and its setup; returns the start event's message."""
    cfg, device, model = run.config.train, run.device, run.model
    precision = run.saved.get("precision") or resolve_precision(cfg.precision, device)
    run.amp = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    route = kernels.choose_route(model, cfg.kernels, device, precision, run.saved.get("kernels"),
                                 run.total_steps - run.step,
                   lambda: training_step(model, *_measure_batch(run.images, run.labels, run.labelled, run.local_batch,
                                                                cfg.batch_size), cfg, step=0,
                                         total_steps=run.total_steps, randn=_scratch_randn(device), dataset_size=run.n,
                                         labelled_share=run.labelled_share).parts)
    run.setup = {"precision": precision, "kernels": list(route)}
    how = "bf16 autocast" if precision == "bf16" else ", ".join(filter(None, ["fp32", kernels.describe(model)]))
    return f"training on {device} in {how} ({run.n} images, {run.steps_per_epoch} steps per epoch)."


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
