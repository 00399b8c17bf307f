"""run_epochs(task): the one training loop, whatever a task trains.

``train`` (a VAE, loop.py) and ``train_prior`` (a VQ-VAE's code prior over its frozen codes, prior.py)
are both Tasks. A task says what step ``i`` of an epoch minimises, what an epoch's start draws (its
seeded permutation and noise) and what its end does (held-out evaluation, samples, the saved
checkpoint) and what a run stopped mid-epoch keeps (the weights it has, not the last epoch's); this loop does
the rest the same way for both: epochs and steps, the optimizer's update
with the gradient clipped to ``grad_clip``, a "step" event every ``log_every`` steps with the mean of
each reported loss part (checked for NaN/Inf in one device sync per log), the time limit, and the
"start", "step", "epoch", "done" events in that order.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Iterator, Literal, Protocol

import torch

if TYPE_CHECKING:
    from . import snapshots
    from .objectives import StepResult


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


class Task(Protocol):
    """What the loop trains. The loop advances ``step``, ``elapsed``, ``means`` and ``part_names``; the task
    owns everything else (model, data, generators, optimizer)."""

    step: int                        # optimizer steps taken (a resumed run starts past 0)
    elapsed: float                   # seconds of training (evaluation excluded)
    means: dict[str, float]          # the last logged mean of each reported part
    part_names: list[str] | None     # the parts reported in events; None: every part of the first step
    opt: torch.optim.Optimizer
    start_epoch: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    images_per_step: int             # for the throughput in "step" events
    log_every: int
    grad_clip: float                 # 0: no clipping
    max_seconds: float               # 0: no time limit

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...        # what the gradient clip covers
    def start(self) -> Event: ...                                      # the "start" event
    def begin_epoch(self, epoch: int) -> None: ...                     # the epoch's seeded draws
    def loss(self, i: int) -> StepResult: ...                          # step i's objective; parts["loss"] minimised
    def after_step(self, result: StepResult) -> None: ...              # after the optimizer's update
    def diverged(self, step: int, parts: list[str]) -> None: ...       # raise for a NaN/Inf at ``step``
    def end_epoch(self, epoch: int) -> Event: ...                      # evaluation, saving: the "epoch" event
    def stopped(self, epoch: int, reason: str) -> Event: ...           # stopped mid-epoch: keeps what it has; "done"
    def finish(self) -> Event: ...                                     # the "done" event


def run_epochs(task: Task) -> Iterator[Event]:
    """Train ``task`` from its ``start_epoch`` to its ``epochs``, yielding its Events. Closing the generator stops
    the run; reaching ``max_seconds`` of training ends it with a "done" event."""
    yield task.start()
    for epoch in range(task.start_epoch, task.epochs):
        if not (yield from _epoch_steps(task, epoch)):
            return                                               # stopped at the time limit
        yield task.end_epoch(epoch)
    yield task.finish()


def _optimise(task: Task, i: int) -> StepResult:
    """One step: the task's objective, its gradient (clipped if asked) and the optimizer's update."""
    result = task.loss(i)
    task.opt.zero_grad(set_to_none=True)
    result.parts["loss"].backward()
    if task.grad_clip:
        torch.nn.utils.clip_grad_norm_(task.parameters(), task.grad_clip)
    task.opt.step()
    task.step += 1
    task.after_step(result)
    return result


def _epoch_steps(task: Task, epoch: int):
    """The steps of one epoch, yielding a "step" event every ``log_every`` of them; returns False when the run
    stopped at its time limit (after a "done" event), True at the epoch's end."""
    task.begin_epoch(epoch)
    acc, t0 = [], time.perf_counter()
    for i in range(task.steps_per_epoch):
        result = _optimise(task, i)
        task.part_names = task.part_names or list(result.parts)
        acc.append(torch.stack([result.parts[k].detach().float() for k in task.part_names]))
        if len(acc) == task.log_every or i == task.steps_per_epoch - 1:
            rows = torch.stack(acc)                               # (steps, parts): one sync per log
            _check_finite(task, rows, task.step - len(acc) + 1)
            dt = time.perf_counter() - t0
            task.elapsed += dt
            task.means = dict(zip(task.part_names, rows.mean(0).tolist()))
            yield Event("step", task.step, epoch, task.total_steps, task.means,
                        len(acc) * task.images_per_step / max(dt, 1e-9), task.elapsed)
            if task.max_seconds and task.elapsed >= task.max_seconds:
                yield task.stopped(epoch, f"stopped at the time limit of {task.max_seconds:g} s")
                return False
            acc, t0 = [], time.perf_counter()
    return True


def _check_finite(task: Task, rows: torch.Tensor, first_step: int) -> None:
    """Have the task raise for the first step, and its parts, that are not finite; rows (steps, parts)."""
    bad = ~torch.isfinite(rows).all(1)
    if bad.any():
        row = int(bad.nonzero()[0])
        task.diverged(first_step + row,
                      [n for n, ok in zip(task.part_names, torch.isfinite(rows[row]).tolist()) if not ok])


__all__ = ["Event", "Task", "run_epochs"]
