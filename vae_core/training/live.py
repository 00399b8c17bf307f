"""Training in the background for the app: a job's own thread consumes ``train()`` and keeps a snapshot.

The page polls ``job.snapshot()``, so reruns, clicks and other sessions never touch the run;
``stop()`` closes the generator at its next event. Each job owns its thread, and nothing else
in this module holds state:

- ``TrainingLimits`` caps what one run may ask for (epochs, seconds) and how long it goes on
  once its browser session is gone;
- ``TrainingSlots`` caps how many runs train at once, per server and per owner (the app's visitor),
  and hands a free slot to those who waited first; the app makes one and passes it to every job,
  a script needs none.

A run started from the app is *watched*: between its events, the job's own thread asks its
session whether it is still there (``alive()``, Streamlit's runtime; the page also calls
``touch()`` on every rerun) and stops the run once the session has been gone for longer than
the session time-out, so no run and no thread outlives its session.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Hashable

import torch

from .. import memory
from ..data import ImageSet
from ..errors import VAEError
from ..io.card import model_card
from ..io.run_folder import write_run_folder
from ..io.run_folder import RunConfig, summarize_metrics
from ..models import VAEBase
from . import snapshots
from .loop import fixed_samples, train

log = logging.getLogger(__name__)
from .snapshots import Snapshots
from .trackers import shown_images


@dataclasses.dataclass(frozen=True)
class TrainingLimits:
    """What one run may ask for; the app reads them from its configuration (explorer.limits)."""

    max_epochs: int = 50
    max_seconds: float = 300.0
    session_timeout: float = 120.0          # seconds a watched run goes on once its session is gone

    def apply(self, config: RunConfig) -> RunConfig:
        """Refuse too many epochs; cap the run time at max_seconds (a run may ask for less)."""
        t = config.train
        if t.epochs > self.max_epochs:
            raise VAEError(f"{t.epochs} epochs is above this server's limit of {self.max_epochs} "
                           "(VAE_EXPLORER_MAX_EPOCHS); ask for fewer.")
        seconds = min(t.max_seconds or self.max_seconds, self.max_seconds)
        return dataclasses.replace(config, train=dataclasses.replace(t, max_seconds=seconds))


class TrainingSlots:
    """How many runs may train at once: in all (``max_jobs``) and for one owner (``max_per_owner``; the app
    counts one visitor's tabs as one owner).

    A slot is taken in turn: an owner refused for want of a slot waits (for ``hold_s`` seconds after its last
    try), and a slot that comes free goes to the waiting owners first, in the order they asked, so an owner
    whose run just ended cannot renew it ahead of them. One object is shared by every job it admits; it owns
    its lock, the running jobs and the waiting owners."""

    def __init__(self, max_jobs: int = 2, max_per_owner: int = 1, hold_s: float = 120.0):
        self.max_jobs, self.max_per_owner, self.hold_s = max_jobs, max_per_owner, hold_s
        self._lock = threading.Lock()
        self._running: dict[TrainingJob, Hashable] = {}
        self._waiting: dict[Hashable, tuple[float, float]] = {}     # owner -> (first refused, last tried)

    def acquire(self, job: "TrainingJob", owner: Hashable) -> None:
        with self._lock:
            now = time.monotonic()
            self._running = {j: o for j, o in self._running.items() if j.is_alive()}
            self._waiting = {o: t for o, t in self._waiting.items() if now - t[1] <= self.hold_s}
            mine = sum(o == owner for o in self._running.values())
            if mine >= self.max_per_owner:
                raise VAEError(f"You already have {mine} run{'s' if mine > 1 else ''} training (the limit is "
                               f"{self.max_per_owner} per visitor, VAE_EXPLORER_MAX_JOBS_PER_SESSION); stop it or "
                               "wait until it finishes.")
            first = self._waiting.get(owner, (now, now))[0]
            ahead = sum(t[0] < first for o, t in self._waiting.items() if o != owner)
            if len(self._running) + ahead >= self.max_jobs:
                self._waiting[owner] = (first, now)
                busy = (f"{len(self._running)} runs are already training on this server (the limit is "
                        f"{self.max_jobs}, VAE_EXPLORER_MAX_JOBS)")
                raise VAEError(busy + (f" and {ahead} visitor{'s' * (ahead != 1)} asked before you; press Start "
                                       "again in a while: your turn is kept" if ahead else
                                       "; press Start again when one finishes: your turn is kept") +
                               f" for {self.hold_s:.0f} s after each try.")
            self._waiting.pop(owner, None)
            self._running[job] = owner

    def release(self, job: "TrainingJob") -> None:
        with self._lock:
            self._running.pop(job, None)

    def running(self) -> int:
        with self._lock:
            return sum(j.is_alive() for j in self._running)


@dataclasses.dataclass
class Snapshot:
    """What the page draws; a copy, so the page never reads half an update."""

    status: str                     # "starting", "running", "stopping", "finished", "stopped", "failed"
    step: int
    total_steps: int
    epoch: int
    epochs: int
    elapsed: float
    eta: float | None               # seconds left, from the recent pace and the time limit
    images_per_s: float
    history: list[dict]             # {"step", "epoch", loss parts...} every log
    evals: list[dict]               # {"epoch", held-out metrics...} each epoch evaluated (checkpoint_seconds)
    samples: torch.Tensor | None    # the latest fixed-noise sample grid (n, C, H, W), drawn after samples_epoch
    message: str
    error: str
    motion: Snapshots | None = None  # the codes of a fixed subset at every epoch so far (vae_core.training.snapshots)
    images: int = 0                  # training images seen so far in this run
    wall: float = 0.0                # seconds since the run started, evaluation and sampling included
    samples_epoch: int = 0           # the epoch after which ``samples`` were drawn

    @property
    def average_images_per_s(self) -> float:
        """The run's own pace: its images over its wall-clock time (``images_per_s`` is the last steps')."""
        return self.images / self.wall if self.wall > 0 else 0.0

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")


class TrainingJob:
    """One training run in a daemon thread. ``model`` is the job's own, never a shared one."""

    def __init__(self, config: RunConfig, data: ImageSet | None = None, test_data: ImageSet | None = None,
                 *, limits: TrainingLimits | None = None, slots: TrainingSlots | None = None,
                 owner: Hashable = None, log_every: int = 10, alive: Callable[[], bool] | None = None,
                 watched: bool | None = None, tracking=None):
        """``watched`` (default: when ``alive`` is given) ties the run to a session: it is stopped once
        ``alive()`` has been false, and ``touch()`` not called, for ``limits.session_timeout`` seconds.
        ``slots`` (with the ``owner`` it counts the run for) caps the runs training at once."""
        self.limits = limits or TrainingLimits()
        self.config = self.limits.apply(config)
        self.slots, self.owner = slots, owner
        self.data, self.test_data = data, test_data
        self.log_every = log_every
        self.tracking = tracking          # a trackers.Tracking: the run's events logged to TensorBoard / MLflow
        self.model: VAEBase | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_reason = ""
        self._release = False
        self.alive = alive
        self.watched = alive is not None if watched is None else watched
        self.last_seen = time.monotonic()
        self._started: float | None = None        # when the run's "start" event came (wall-clock pace)
        self._state = Snapshot("starting", 0, 0, 0, self.config.train.epochs, 0.0, None, 0.0, [], [], None, "", "")

    # -- control ----------------------------------------------------------------------------
    def start(self) -> "TrainingJob":
        if self._thread is not None:
            raise VAEError("This run has already been started; start a new one instead.")
        if self.slots is not None:
            self.slots.acquire(self, self.owner)
        self._thread = threading.Thread(target=self._run, name="vae-training", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            if self.slots is not None:
                self.slots.release(self)
            raise
        return self

    def touch(self) -> None:
        """The job's session is still here (called on every rerun of the session)."""
        self.last_seen = time.monotonic()

    def stop(self, reason: str = "", release: bool = False) -> None:
        """Ask the run to stop at its next event (at most ``log_every`` steps, or one evaluation).

        ``release`` also drops the job's model and data when the thread ends (its session is gone)."""
        if reason and not self._stop.is_set():
            self._stop_reason = reason
        self._release = self._release or release
        self._stop.set()
        with self._lock:
            if not self._state.done:
                self._state.status = "stopping"

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> Snapshot:
        with self._lock:
            s = self._state
            return dataclasses.replace(s, history=list(s.history), evals=list(s.evals))

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        from .loop import init_model

        status, error, events = "finished", "", None
        try:
            self.model = init_model(self.config.model, self.config.train.seed)
            events = train(self.config, self.data, self.test_data, model=self.model, log_every=self.log_every)
            if self.tracking:
                events = self.tracking.follow(events, self.config, model=self.model,
                                              **shown_images(self.data, self.test_data))
            for ev in events:
                self._record(ev)
                self._check_session()
                if self._stop.is_set():
                    status = "stopped"
                    break
        except VAEError as e:
            status, error = "failed", str(e)
        except Exception as e:                 # the page shows one line; the log keeps the traceback
            log.exception("A training run in the app failed unexpectedly (%s)", self.config.command())
            status, error = "failed", f"Training failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            if events is not None:
                events.close()
            if self.model is not None:
                self.model.eval()
            with self._lock:
                self._state.status = status
                self._state.error = error
                self._state.eta = 0.0
                if status == "stopped":
                    self._state.message = (f"stopped after {self._state.step} steps: {self._stop_reason}"
                                           if self._stop_reason else f"stopped by you after {self._state.step} steps")
            if self._release:                  # nobody is left to save or explore it: free the memory
                self.model = self.data = self.test_data = None
            memory.release()                   # the run's activations and optimizer state go back to the OS
            if self.slots is not None:
                self.slots.release(self)

    def _check_session(self) -> None:
        """Between events: a watched run whose session has been gone too long stops, and lets go of its memory."""
        if not self.watched:
            return
        if self.alive is not None:
            try:
                if self.alive():
                    self.touch()
            except Exception:                  # a runtime shutting down: treat the session as gone
                pass
        if time.monotonic() - self.last_seen > self.limits.session_timeout:
            self.stop(reason=f"its browser session ended (gone for over {self.limits.session_timeout:g} s)",
                      release=True)

    def _record(self, ev) -> None:
        with self._lock:
            s = self._state
            if ev.kind == "start":
                self._started = time.monotonic()
            if ev.kind == "step":      # images since the last step event: its rate times its training seconds
                s.images += round(ev.images_per_s * max(0.0, ev.elapsed - s.elapsed))
            s.wall = time.monotonic() - self._started if self._started is not None else 0.0
            s.step, s.total_steps, s.elapsed = ev.step, ev.total_steps, ev.elapsed
            if ev.snapshots is not None:
                s.motion = ev.snapshots
            if ev.kind == "start":
                s.status, s.message = "running", ev.message
            elif ev.kind == "step":
                s.epoch = ev.epoch
                s.images_per_s = ev.images_per_s
                s.history.append({"step": ev.step, "epoch": ev.epoch + 1, **ev.losses})
                s.eta = self._eta(ev)
            elif ev.kind == "epoch":
                s.epoch = ev.epoch
                if ev.eval:
                    s.evals.append({"epoch": ev.epoch, **{k: v for k, v in ev.eval.items()      # not the lists
                                                         if isinstance(v, (int, float, str))}})
                if ev.samples is not None:
                    s.samples, s.samples_epoch = ev.samples, ev.epoch
            elif ev.kind == "done":
                s.message = ev.message

    def _eta(self, ev) -> float | None:
        if ev.step <= 0 or ev.elapsed <= 0:
            return None
        left = (ev.total_steps - ev.step) * ev.elapsed / ev.step
        cap = self.config.train.max_seconds
        return max(0.0, min(left, cap - ev.elapsed) if cap else left)

    # -- after the run ------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the trained model as a Hub-layout run folder (config, weights, card, samples) at ``folder``."""
        if self.model is None or self.is_alive():
            raise VAEError("The run has not finished yet; stop it or wait, then save.")
        snap = self.snapshot()
        metrics = summarize_metrics(snap.evals[-1]) if snap.evals else None
        model, config = self.model, self.config
        last = snap.evals[-1] if snap.evals else {}
        card = model_card(model, training=config.to_dict()["train"], metrics=metrics,
                          scored_as=last.get("scored_as"), metrics_note=last.get("binarisation", ""),
                          command=config.command(), sample_image="samples.png",
                          extra=f"Trained in the explorer for {snap.epoch} epochs ({snap.step} steps, "
                                f"{snap.elapsed:.1f} s); {snap.status}.")
        extra = {snapshots.FILE: snap.motion.to_bytes()} if snap.motion is not None else None
        return write_run_folder(folder, model, card=card, samples=fixed_samples(model, config.train.seed),
                                run_config=config.to_dict(), extra_files=extra)


__all__ = ["Snapshot", "TrainingJob", "TrainingLimits", "TrainingSlots"]
