"""Training in the background for the app: a thread consumes ``train()`` and keeps a snapshot.

The page polls ``job.snapshot()``, so reruns, clicks and other sessions never touch the run;
``stop()`` closes the generator at its next event. Limits come from the environment, so a
public host cannot be exhausted:

    VAE_EXPLORER_MAX_EPOCHS    most epochs one run may ask for (default 50)
    VAE_EXPLORER_MAX_SECONDS   most seconds of training one run may take (default 300)
    VAE_EXPLORER_MAX_JOBS      most runs training at once in one server process (default 2)
    VAE_EXPLORER_RUNS_DIR      where "save as run folder" writes (default ./runs)
    VAE_EXPLORER_TORCH_THREADS torch's intra-op threads in the server process (default 1; 0: torch's
                               default). One thread a request suits a server of many small requests:
                               on a busy 2-core machine it cut the Traverse p95 from 227 ms to 82 ms.
    VAE_EXPLORER_SESSION_TIMEOUT seconds a watched run goes on once its session is gone (default 120)

A run started from the app is *watched*: it belongs to a browser session, and a reaper thread
stops it once that session has been gone (closed tab, lost connection) for longer than the
session time-out, so no run and no worker thread outlives its session. The page says the
session is alive through ``alive()`` (Streamlit's runtime) and ``touch()`` (every rerun).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from . import hub
from .config import to_dict
from .data import ImageSet
from .errors import VAEError
from .images import save_grid
from .models import VAEBase
from .train import RunConfig, fixed_samples, summarize_metrics, train


@dataclasses.dataclass(frozen=True)
class Limits:
    max_epochs: int = 50
    max_seconds: float = 300.0
    max_jobs: int = 2
    runs_dir: Path = Path("runs")
    torch_threads: int = 0        # 0: torch's default; a public host sets 1
    session_timeout: float = 120.0

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Limits":
        env = os.environ if env is None else env

        def number(name, default, kind, zero_ok=False):
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise VAEError(f"{name}={raw!r} is not a number; fix the server's environment.") from None
            if value < 0 or (value == 0 and not zero_ok):
                raise VAEError(f"{name} must be {'zero or more' if zero_ok else 'positive'}, got {raw!r}.")
            return value

        return cls(number("VAE_EXPLORER_MAX_EPOCHS", cls.max_epochs, int),
                   number("VAE_EXPLORER_MAX_SECONDS", cls.max_seconds, float),
                   number("VAE_EXPLORER_MAX_JOBS", cls.max_jobs, int),
                   Path(env.get("VAE_EXPLORER_RUNS_DIR") or cls.runs_dir),
                   number("VAE_EXPLORER_TORCH_THREADS", cls.torch_threads, int, zero_ok=True),
                   number("VAE_EXPLORER_SESSION_TIMEOUT", cls.session_timeout, float))

    def apply(self, config: RunConfig) -> RunConfig:
        """Refuse too many epochs; cap the run time at max_seconds (a run may ask for less)."""
        t = config.train
        if t.epochs > self.max_epochs:
            raise VAEError(f"{t.epochs} epochs is above this server's limit of {self.max_epochs} "
                           "(VAE_EXPLORER_MAX_EPOCHS); ask for fewer.")
        seconds = min(t.max_seconds or self.max_seconds, self.max_seconds)
        return dataclasses.replace(config, train=dataclasses.replace(t, max_seconds=seconds))


_running_lock = threading.Lock()
_running: set["TrainingJob"] = set()

# Watched jobs and the one reaper thread that ends those whose session is gone; the reaper
# exits as soon as no watched job is left, so it never outlives the sessions either.
_watch_lock = threading.Lock()
_watched: set["TrainingJob"] = set()
_reaper: threading.Thread | None = None


def _watch(job: "TrainingJob") -> None:
    global _reaper
    with _watch_lock:
        _watched.add(job)
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reap, name="vae-training-reaper", daemon=True)
            _reaper.start()


def _reap() -> None:
    global _reaper
    while True:
        with _watch_lock:
            jobs = [j for j in _watched if j.is_alive() or j._thread is None]
            _watched.intersection_update(jobs)
            if not jobs:
                _reaper = None
                return
        now = time.monotonic()
        for job in jobs:
            if job.alive is not None:
                try:
                    if job.alive():
                        job.touch()
                except Exception:          # a runtime shutting down: treat the session as gone
                    pass
            if now - job.last_seen > job.limits.session_timeout:
                job.stop(reason=f"its browser session ended (gone for over {job.limits.session_timeout:g} s)",
                         release=True)
        time.sleep(max(0.05, min(1.0, min(j.limits.session_timeout for j in jobs) / 4)))


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
    evals: list[dict]               # {"epoch", held-out metrics...} every epoch
    samples: torch.Tensor | None    # the latest fixed-noise sample grid (n, C, H, W)
    message: str
    error: str

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")


class TrainingJob:
    """One training run in a daemon thread. ``model`` is the job's own, never a shared one."""

    def __init__(self, config: RunConfig, data: ImageSet | None = None, test_data: ImageSet | None = None,
                 *, limits: Limits | None = None, log_every: int = 10,
                 alive: Callable[[], bool] | None = None, watched: bool | None = None):
        """``watched`` (default: when ``alive`` is given) ties the run to a session: it is stopped once
        ``alive()`` has been false, and ``touch()`` not called, for ``limits.session_timeout`` seconds."""
        self.limits = limits or Limits.from_env()
        self.config = self.limits.apply(config)
        self.data, self.test_data = data, test_data
        self.log_every = log_every
        self.model: VAEBase | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_reason = ""
        self._release = False
        self.alive = alive
        self.watched = alive is not None if watched is None else watched
        self.last_seen = time.monotonic()
        self._state = Snapshot("starting", 0, 0, 0, self.config.train.epochs, 0.0, None, 0.0, [], [], None, "", "")

    # -- control ----------------------------------------------------------------------------
    def start(self) -> "TrainingJob":
        with _running_lock:
            alive = {j for j in _running if j.is_alive()}
            _running.intersection_update(alive)
            if len(alive) >= self.limits.max_jobs:
                raise VAEError(f"{len(alive)} runs are already training on this server (the limit is "
                               f"{self.limits.max_jobs}, VAE_EXPLORER_MAX_JOBS); try again when one finishes.")
            _running.add(self)
            self._thread = threading.Thread(target=self._run, name="vae-training", daemon=True)
            self._thread.start()
        if self.watched:
            _watch(self)
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
        from .train import init_model

        status, error, events = "finished", "", None
        try:
            self.model = init_model(self.config.model, self.config.train.seed)
            events = train(self.config, self.data, self.test_data, model=self.model, log_every=self.log_every)
            for ev in events:
                self._record(ev)
                if self._stop.is_set():
                    status = "stopped"
                    break
        except VAEError as e:
            status, error = "failed", str(e)
        except Exception as e:                 # the page shows one line; the thread must not die silently
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
            with _running_lock:
                _running.discard(self)

    def _record(self, ev) -> None:
        with self._lock:
            s = self._state
            s.step, s.total_steps, s.elapsed = ev.step, ev.total_steps, ev.elapsed
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
                    s.evals.append({"epoch": ev.epoch, **{k: v for k, v in ev.eval.items()
                                                         if isinstance(v, (int, float))}})
                if ev.samples is not None:
                    s.samples = ev.samples
            elif ev.kind == "done":
                s.message = ev.message

    def _eta(self, ev) -> float | None:
        if ev.step <= 0 or ev.elapsed <= 0:
            return None
        left = (ev.total_steps - ev.step) * ev.elapsed / ev.step
        cap = self.config.train.max_seconds
        return max(0.0, min(left, cap - ev.elapsed) if cap else left)

    # -- after the run ------------------------------------------------------------------------
    def save(self, name: str, runs_dir: Path | None = None) -> Path:
        """Write the trained model as a Hub-layout run folder (config, weights, card, samples)."""
        if self.model is None or self.is_alive():
            raise VAEError("The run has not finished yet; stop it or wait, then save.")
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,63}", name or ""):
            raise VAEError(f"{name!r} is not a usable folder name: use letters, digits, '.', '_' and '-' "
                           "(up to 64 characters).")
        folder = Path(runs_dir or self.limits.runs_dir) / name
        snap = self.snapshot()
        metrics = summarize_metrics(snap.evals[-1]) if snap.evals else None
        model, config = self.model, self.config

        def write(tmp: Path):
            save_grid(fixed_samples(model, config.train.seed), tmp / "samples.png", nrow=8, scale=2)
            card = hub.model_card(model, training=to_dict(config.train), metrics=metrics, command=config.command(),
                                  sample_image="samples.png",
                                  extra=f"Trained in the explorer for {snap.epoch} epochs ({snap.step} steps, "
                                        f"{snap.elapsed:.1f} s); {snap.status}.")
            hub.write_model_files(tmp, model, card)
            (tmp / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2))

        hub.atomic_folder(folder, write)
        return folder


__all__ = ["Limits", "Snapshot", "TrainingJob"]
