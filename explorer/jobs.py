"""Background work shared by every session: slow maps run on a few worker threads, fairly.

``JobQueue`` is made once per server (``queue()``, an ``st.cache_resource``) and owns its lock,
its workers and its results:

- each session has one waiting slot: a new request replaces the session's older waiting one,
  which is cancelled unless another session waits for the same result; a job that is already
  running and that no session wants any more is asked to stop (at its next progress report);
- a job that reports its progress (``submit(..., progress=True)``) shows how far it has got
  and about how long it has left (``Job.fraction``, ``Job.stage``, ``Job.eta``);
- workers take sessions in turns, the one served least recently first, and run at most one job
  of a session at a time, so a visitor sweeping a slider never delays another visitor's first
  map by more than the job already running;
- a result is kept (``loaders.ResultCache``) for every session: the same map asked again is instant;
- every job belongs to a live session: a session that has gone (its tab closed) loses its waiting jobs
  and its running ones are asked to stop, checked whenever a worker takes a job or a job reports progress
  (at most every ``PRUNE_EVERY_S``), and by a page that waits for its own heavy work (``in_turn``);
- workers are started when work arrives and end when none is left: no thread idles;
- with ``threads_per_job`` (the server's VAE_EXPLORER_TORCH_THREADS, 1 on the Space) a job's
  OpenMP code (scikit-learn's t-SNE) uses that many threads, so one map never takes every core;
- heavy work a page asks for (an analysis, encoding a dataset for a map) runs as a job too
  (``submit_turn``, ``in_turn``): the page waits for it and draws its progress, so the server never
  runs more than ``max_workers`` heavy things at once, whoever asks;
- workers run at a lower CPU priority than the pages' own runs (a thread's nice value, on Linux),
  so heavy work in the background never slows another visitor's slider or resample.

The codes of a dataset and their maps, which run on this queue, are in explorer.maps.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Hashable

import streamlit as st

import vae_core
from explorer.loaders import MAX_RESULTS, ResultCache
from vae_core import memory
from vae_core.training.live import TrainingSlots

MAX_WORKERS = 2
WAIT_POLL_S = 0.5           # how often a page waiting for a map looks again
PROGRESS_POLL_S = 0.1       # how often a page waiting for its own heavy work draws its progress
BACKGROUND_NICE = 10        # workers' nice value: the pages' own (interactive) runs come first
PRUNE_EVERY_S = 1.0         # how often running work asks whether the sessions that want it are still there


_MISSING = object()


class JobCancelled(Exception):
    """Raised inside a job's work, from its progress report, once no session wants its result."""


@dataclasses.dataclass(eq=False)
class Job:
    key: Hashable
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    after: threading.Event | None = None       # run only once this is set (the server's warm-up)
    keep: bool = True                           # keep the result for every session (not for a turn)
    state: str = "waiting"                      # waiting, running, done, failed, cancelled
    result: Any = None
    error: BaseException | None = None
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)
    fraction: float = 0.0                       # of the work done, as the work itself reports it
    stage: str = ""                             # what it is doing, in a few words
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)   # nobody wants it now
    check: Callable[[], None] | None = dataclasses.field(default=None, repr=False)  # the queue's session check

    @property
    def done(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def report(self, fraction: float, stage: str = "") -> None:
        """The work's progress callback: records how far it has got, and stops it if nobody wants it."""
        self.fraction, self.stage = min(max(float(fraction), 0.0), 1.0), stage
        self.checkpoint()

    def checkpoint(self) -> None:
        """Raise ``JobCancelled`` once nobody wants the result (its sessions asked for other work, or ended)."""
        if self.check is not None:
            self.check()
        if self.stop.is_set():
            raise JobCancelled(f"{self.key} is no longer wanted")

    @property
    def elapsed(self) -> float:
        """Seconds it has been running (0 while it waits)."""
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from its progress so far; None until there is enough to go on."""
        if self.state != "running" or self.fraction < 0.05 or self.elapsed < 1.0:
            return None
        return self.elapsed * (1 - self.fraction) / self.fraction

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)


class JobQueue:
    """See the module's docstring. ``submit`` never blocks on the work itself."""

    def __init__(self, workers: int = MAX_WORKERS, results: int = MAX_RESULTS, threads_per_job: int = 0,
                 gone: Callable[[str], bool] = lambda session: False,
                 spent: Callable[[str, float], None] = lambda session, seconds: None):
        self.max_workers, self.gone, self.spent = workers, gone, spent
        self.threads_per_job = threads_per_job
        self.results = ResultCache(results)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)     # a job finished or was cancelled
        self._waiting: dict[str, Job] = {}          # session -> its one waiting job
        self._wanted: dict[str, Job] = {}           # session -> the job it asked for last (waiting or running)
        self._active: dict[Hashable, Job] = {}      # key -> the waiting or running job computing it
        self._running: dict[str, Job] = {}          # session -> its running job
        self._served: dict[str, int] = {}           # session -> turn number when last served
        self._failed = ResultCache(results)        # key -> a failed job, reported once, then tried afresh
        self._turns = itertools.count(1)
        self._tickets = itertools.count(1)
        self._workers = 0
        self._pruned = 0.0                          # when sessions were last checked

    # -- asking ---------------------------------------------------------------------------------
    def submit(self, session: str, key: Hashable, fn: Callable[..., Any], *args,
               after: threading.Event | None = None, progress: bool = False, keep: bool = True, **kwargs) -> Job:
        """The job that computes ``fn(*args, **kwargs)`` for ``key`` (done at once if the result is kept;
        with ``keep=False`` the result is the caller's alone, never kept or shared).

        With ``progress=True``, ``fn`` is also given ``progress=job.report``: it calls that with the
        fraction done, and the call raises ``JobCancelled`` once nobody wants the result."""
        with self._lock:
            hit = self.results.get(key, _MISSING)
            if hit is not _MISSING:
                self._want(session, None)
                return Job(key, fn, args, kwargs, state="done", result=hit)
            failed = self._failed.get(key)
            if failed is not None:
                self._failed.pop(key)
                self._want(session, None)
                return failed
            job = self._active.get(key)
            if job is None:
                job = self._active[key] = Job(key, fn, args, dict(kwargs), after=after, keep=keep, check=self.prune)
                if progress:
                    job.kwargs["progress"] = job.report
            job.stop.clear()                           # wanted again (it may have been asked to stop)
            self._want(session, job)
            self._start_workers()
            return job

    def submit_turn(self, session: str, fn: Callable[..., Any], *args, **kwargs) -> Job:
        """Heavy work a page asks for (an analysis, encoding a dataset): a job like a map, in the session's
        turn and on a worker, whose result is the caller's alone (never kept, never shared)."""
        work = functools.partial(fn, *args, **kwargs)      # its own arguments, ``progress`` included, go to fn
        return self.submit(session, ("turn", session, next(self._tickets)), work, keep=False)

    def forget(self, session: str) -> None:
        """This session wants nothing from the queue now (e.g. it went back to an instant map):
        its waiting job is cancelled, and its running one stopped, unless another session wants it."""
        with self._lock:
            self._want(session, None)

    def prune(self, every: float = PRUNE_EVERY_S) -> list[str]:
        """Sessions that have ended (``gone``) lose what they asked for: their waiting jobs are cancelled and
        their running ones stopped, unless another session wants them. At most once every ``every`` seconds."""
        with self._lock:
            return self._prune(every)

    def _prune(self, every: float = 0.0) -> list[str]:
        if time.monotonic() - self._pruned < every:
            return []
        self._pruned = time.monotonic()
        gone = [s for s in {*self._wanted, *self._served} if self.gone(s)]
        for session in gone:
            self._want(session, None)
            self._served.pop(session, None)
        return gone

    def ahead_of(self, session: str) -> int:
        """How many jobs are running or wait their turn before this session's waiting job (0 if none waits)."""
        with self._lock:
            if session not in self._waiting:
                return 0
            return len(self._running) + self._order().index(session)

    @property
    def workers(self) -> int:
        """Worker threads alive now (none while there is no work)."""
        with self._lock:
            return self._workers

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job waits or runs (True), or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._running, timeout)

    # -- inside ---------------------------------------------------------------------------------
    def _order(self) -> list[str]:
        """Waiting sessions in turn order: the least recently served first, then the longest waiting."""
        return sorted(self._waiting, key=lambda s: (self._served.get(s, 0), self._waiting[s].submitted))

    def _want(self, session: str, job: Job | None) -> None:
        """Record what ``session`` asked for last; what it asked for before goes if nobody else wants it."""
        old = self._wanted.pop(session, None)
        self._waiting.pop(session, None)
        if job is not None:
            self._wanted[session] = job
            if job.state == "waiting":
                self._waiting[session] = job
        if old is not None and old is not job:
            self._cancel_if_unwanted(old)              # superseded by this request

    def _cancel_if_unwanted(self, job: Job) -> None:
        if any(j is job for j in self._wanted.values()):
            return
        if job.state == "waiting":
            job.state = "cancelled"
            self._active.pop(job.key, None)
            job.finished.set()
            self._changed.notify_all()
        elif job.state == "running":
            job.stop.set()                             # it stops at its next progress report

    def _start_workers(self) -> None:
        """Enough workers for the sessions that can be served now, within max_workers."""
        ready = sum(s not in self._running for s in self._waiting)
        while self._workers < self.max_workers and self._workers - len(self._running) < ready:
            self._workers += 1
            threading.Thread(target=self._work, name="map-worker", daemon=True).start()

    def _next_session(self) -> str | None:
        for session in self._order():
            if session not in self._running:            # one running job per session
                return session
        return None

    def _take(self) -> tuple[str, Job] | None:
        with self._lock:
            self._prune()                               # no turn for a session that has gone
            session = self._next_session()
            if session is None:
                self._workers -= 1
                return None
            job = self._waiting.pop(session)
            for other in [s for s, j in self._waiting.items() if j is job]:
                del self._waiting[other]                # everyone who wanted this result gets it now
            job.state, job.started = "running", time.monotonic()
            self._running[session] = job
            self._served[session] = next(self._turns)
            return session, job

    def _work(self) -> None:
        background_priority()
        while (taken := self._take()) is not None:
            session, job = taken
            try:
                if job.after is not None and not job.after.is_set():
                    job.stage = "waiting for the server's warm-up"
                    job.after.wait()
                    job.started = time.monotonic()      # its own time starts now: the estimate is of the work
                cpu = time.thread_time()
                with self._thread_limit():
                    try:
                        job.result = job.fn(*job.args, **job.kwargs)
                    finally:                    # its CPU-seconds count for the session it ran for
                        self.spent(session, time.thread_time() - cpu)
                job.state = "done"
            except JobCancelled:
                job.state = "cancelled"
            except Exception as e:                      # reported to the page that asks for the job
                job.error, job.state = e, "failed"
                if not isinstance(e, vae_core.VAEError):   # the user's to fix; anything else is ours: keep its traceback
                    logging.getLogger(__name__).exception("Background job %s of session %s failed unexpectedly",
                                                          getattr(job.fn, "__qualname__", job.fn), session or "-")
            job.ended = time.monotonic()
            memory.release()                   # a map's temporaries go back to the OS
            with self._lock:
                if job.state == "done" and job.keep:
                    self.results.put(job.key, job.result)
                elif job.state == "failed" and job.keep:
                    self._failed.put(job.key, job)
                self._active.pop(job.key, None)
                for s in [s for s, j in self._wanted.items() if j is job]:
                    del self._wanted[s]                 # answered (the page reads the job it holds)
                del self._running[session]
                self._start_workers()
                self._changed.notify_all()
            job.finished.set()

    def _thread_limit(self):
        """OpenMP's threads for this worker's job (the setting is per thread in OpenMP)."""
        if not self.threads_per_job:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(self.threads_per_job, user_api="openmp")


def background_priority(nice: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority (on Linux a thread has its own nice value); elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
    except (AttributeError, OSError):
        pass


@st.cache_resource
def queue() -> JobQueue:
    """The server's one job queue."""
    from explorer.limits import settings
    from explorer.usage import cpu_ledger

    return JobQueue(threads_per_job=settings().torch_threads, gone=session_gone, spent=cpu_ledger().add)


def session_gone(session: str) -> bool:
    """Whether Streamlit's runtime says ``session`` has ended (False where it cannot tell: a script, AppTest)."""
    from streamlit import runtime

    return bool(session) and runtime.exists() and runtime.get_instance().is_active_session(session) is False


@st.cache_resource
def training_slots(max_jobs: int, max_per_session: int) -> TrainingSlots:
    """The server's cap on runs training at once (one object for each configuration of the caps)."""
    return TrainingSlots(max_jobs, max_per_session)


def in_turn(what: str, fn: Callable[..., Any], *args, progress: Callable | None = None, **kwargs):
    """``fn(*args, **kwargs)`` as this session's heavy work on the server's queue (``submit_turn``): the page
    waits for it, says so while it waits its turn, and draws the job's ``progress`` calls itself (a
    worker never touches the page). A newer request of the same session replaces it while it waits."""
    from explorer.session import session_id

    reports: list[tuple] = []                   # appended by the worker, drawn here
    held: list[Job] = []
    if progress is not None:                    # each report is also where the work stops once nobody wants it
        kwargs["progress"] = lambda *a: reports.append(a) or (held and held[0].checkpoint())
    q, session = queue(), session_id()
    job = q.submit_turn(session, fn, *args, **kwargs)
    held.append(job)
    note, told = st.empty(), False
    try:
        while not job.wait(PROGRESS_POLL_S):
            q.prune()                           # a closed tab's jobs go within seconds, this one's included
            if job.state == "waiting" and not told:
                ahead = q.ahead_of(session)
                note.info(f"Waiting for a turn on this shared server: {ahead} job{'s' * (ahead != 1)} ahead of "
                          f"this {what}.")
                told = True
            if reports and progress is not None:
                progress(*reports[-1])
    finally:
        if not job.done:                        # the run was stopped or superseded: nobody waits for this job
            q.forget(session)
    note.empty()
    if job.state == "cancelled":
        raise vae_core.VAEError(f"A newer request of yours replaced this {what}.")
    if job.state == "failed":
        raise job.error
    return job.result
