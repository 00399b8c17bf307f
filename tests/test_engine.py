"""The one training loop (vae_core/training/engine.py) that train and train_prior share, driven by a tiny task."""
import dataclasses
import math

import pytest
import torch

from vae_core.errors import TrainingDiverged
from vae_core.training.engine import Event, _optimise, run_epochs
from vae_core.training.objectives import StepResult


@dataclasses.dataclass
class _LineFit:
    """Fits w to y = 3x by SGD, recording which of the task's hooks the loop called, in order."""

    epochs: int = 2
    steps_per_epoch: int = 5
    log_every: int = 2
    grad_clip: float = 0.0
    max_seconds: float = 0.0
    nan_at: int = -1                      # the step (counted from 1) whose loss is NaN
    lr: float = 0.01
    start_epoch: int = 0
    step: int = 0
    elapsed: float = 0.0
    means: dict = dataclasses.field(default_factory=dict)
    part_names: list | None = None
    calls: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.opt = torch.optim.SGD([self.w], lr=self.lr)
        self.x = torch.linspace(-1, 1, 8)

    images_per_step = 8

    @property
    def total_steps(self):
        return self.epochs * self.steps_per_epoch

    def parameters(self):
        return iter([self.w])

    def start(self):
        self.calls.append("start")
        return Event("start", self.step, self.start_epoch, self.total_steps)

    def begin_epoch(self, epoch):
        self.calls.append(f"begin {epoch}")

    def loss(self, i):
        err = ((self.w * self.x - 3 * self.x) ** 2).mean()
        if self.step + 1 == self.nan_at:
            err = err * float("nan")
        return StepResult({"loss": err, "double": 2 * err.detach()})

    def after_step(self, result):
        self.calls.append(f"after {self.step}")

    def diverged(self, step, parts):
        raise TrainingDiverged(f"NaN at {step} in {parts}", step=step)

    def end_epoch(self, epoch):
        self.calls.append(f"end {epoch}")
        return Event("epoch", self.step, epoch + 1, self.total_steps, self.means)

    def stopped(self, epoch, reason):
        self.calls.append(f"stopped {epoch}")
        return Event("done", self.step, epoch, self.total_steps, self.means, message=reason)

    def finish(self):
        self.calls.append("finish")
        return Event("done", self.step, self.epochs, self.total_steps, self.means)


def test_events_come_in_order_with_a_step_event_every_log_every_and_at_each_epochs_end():
    task = _LineFit()
    events = list(run_epochs(task))
    assert [(e.kind, e.step) for e in events] == [
        ("start", 0), ("step", 2), ("step", 4), ("step", 5), ("epoch", 5),
        ("step", 7), ("step", 9), ("step", 10), ("epoch", 10), ("done", 10)]
    assert task.calls[:3] == ["start", "begin 0", "after 1"]          # the hook runs after the update
    assert task.calls[-3:] == ["after 10", "end 1", "finish"]
    assert all(e.images_per_s > 0 for e in events if e.kind == "step")
    assert events[-1].losses["double"] == pytest.approx(2 * events[-1].losses["loss"])
    assert 0 < task.w.item() < 3 and events[-1].losses["loss"] < events[1].losses["loss"]   # it learns


def test_a_resumed_task_starts_at_its_epoch():
    task = _LineFit(start_epoch=1, step=5)
    events = list(run_epochs(task))
    assert [(e.kind, e.epoch) for e in events if e.kind != "step"] == [("start", 1), ("epoch", 2), ("done", 2)]
    assert events[-1].step == 10


def test_the_time_limit_ends_the_run_with_the_tasks_stopped_event_and_no_epoch_end():
    task = _LineFit(max_seconds=1e-12)
    events = list(run_epochs(task))
    assert [e.kind for e in events] == ["start", "step", "done"]
    assert "time limit" in events[-1].message and events[-1].step == 2
    assert task.calls[-1] == "stopped 0"                               # the task keeps what it has
    assert "end 0" not in task.calls and "finish" not in task.calls


def test_a_nan_loss_is_reported_at_its_step_with_its_parts():
    task = _LineFit(nan_at=4)
    with pytest.raises(TrainingDiverged, match=r"NaN at 4 in \['loss', 'double'\]") as err:
        list(run_epochs(task))
    assert err.value.step == 4


def test_the_gradient_is_clipped_to_grad_clip():
    clipped, free = _LineFit(grad_clip=0.5, lr=1.0), _LineFit(lr=1.0)
    for task in (clipped, free):
        task.opt.zero_grad()
        next(run_epochs(task))                                       # the start event
        task.begin_epoch(0)
        _optimise(task, 0)
    assert clipped.w.item() == pytest.approx(0.5)                  # w moved by lr * 0.5, the clipped norm
    assert free.w.item() > 1.0 and math.isfinite(free.w.item())
