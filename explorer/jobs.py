"""Background work shared by every session: slow maps run on a few worker threads, fairly.

``JobQueue`` is made once per server (``queue()``, an ``st.cache_resource``) and owns its lock,
its workers and its results:

- each session has one waiting slot: a new request replaces the session's older waiting one,
  which is cancelled unless another session waits for the same result;
- workers take sessions in turns, the one served least recently first, and run at most one job
  of a session at a time, so a visitor sweeping a slider never delays another visitor's first
  map by more than the job already running;
- a result is kept (``ResultCache``) for every session: the same map asked again is instant;
- workers are started when work arrives and end when none is left: no thread idles.

Also here: the cached codes of a dataset and the map of them, which the Latent map and Analyze
pages share.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
from typing import Any, Callable, Hashable

import streamlit as st

import vae_core
from vae_core import explore, memory, project
from vae_core.live import TrainingSlots

MAX_WORKERS = 2
MAX_RESULTS = 64
WAIT_POLL_S = 0.5           # how often a page waiting for a map looks again


class ResultCache:
    """A small least-recently-used map of results; it owns its lock."""

    def __init__(self, size: int = MAX_RESULTS):
        self.size = size
        self._items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value):
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]):
        """The cached value, or ``compute()`` (run by the caller, outside the lock) stored under ``key``."""
        hit = self.get(key, _MISSING)
        return hit if hit is not _MISSING else self.put(key, compute())


_MISSING = object()


@dataclasses.dataclass(eq=False)
class Job:
    key: Hashable
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    after: threading.Event | None = None       # run only once this is set (the server's warm-up)
    state: str = "waiting"                      # waiting, running, done, failed, cancelled
    result: Any = None
    error: BaseException | None = None
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    started: float | None = None
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)


class JobQueue:
    """See the module's docstring. ``submit`` never blocks on the work itself."""

    def __init__(self, workers: int = MAX_WORKERS, results: int = MAX_RESULTS):
        self.max_workers = workers
        self.results = ResultCache(results)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)     # a job finished or was cancelled
        self._waiting: dict[str, Job] = {}          # session -> its one waiting job
        self._active: dict[Hashable, Job] = {}      # key -> the waiting or running job computing it
        self._running: dict[str, Job] = {}          # session -> its running job
        self._served: dict[str, int] = {}           # session -> turn number when last served
        self._failed = ResultCache(results)        # key -> a failed job, reported once, then tried afresh
        self._turns = itertools.count(1)
        self._workers = 0

    # -- asking ---------------------------------------------------------------------------------
    def submit(self, session: str, key: Hashable, fn: Callable[..., Any], *args,
               after: threading.Event | None = None, **kwargs) -> Job:
        """The job that computes ``fn(*args, **kwargs)`` for ``key`` (done at once if the result is kept)."""
        with self._lock:
            hit = self.results.get(key, _MISSING)
            if hit is not _MISSING:
                return Job(key, fn, args, kwargs, state="done", result=hit)
            failed = self._failed.get(key)
            if failed is not None:
                self._failed.pop(key)
                return failed
            job = self._active.get(key)
            if job is None:
                job = self._active[key] = Job(key, fn, args, kwargs, after=after)
            old = self._waiting.pop(session, None)
            if job.state == "waiting":
                self._waiting[session] = job
            if old is not None and old is not job:
                self._cancel_if_unwanted(old)          # superseded by this request
            self._start_workers()
            return job

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

    def _cancel_if_unwanted(self, job: Job) -> None:
        if job.state == "waiting" and job not in self._waiting.values():
            job.state = "cancelled"
            self._active.pop(job.key, None)
            job.finished.set()
            self._changed.notify_all()

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
        while (taken := self._take()) is not None:
            session, job = taken
            try:
                if job.after is not None:
                    job.after.wait()
                job.result = job.fn(*job.args, **job.kwargs)
                job.state = "done"
            except Exception as e:                      # reported to the page that asks for the job
                job.error, job.state = e, "failed"
            memory.release()                   # a map's temporaries go back to the OS
            with self._lock:
                if job.state == "done":
                    self.results.put(job.key, job.result)
                else:
                    self._failed.put(job.key, job)
                self._active.pop(job.key, None)
                del self._running[session]
                self._start_workers()
                self._changed.notify_all()
            job.finished.set()


@st.cache_resource
def queue() -> JobQueue:
    """The server's one job queue."""
    return JobQueue()


@st.cache_resource
def training_slots(max_jobs: int, max_per_session: int) -> TrainingSlots:
    """The server's cap on runs training at once (one object for each configuration of the caps)."""
    return TrainingSlots(max_jobs, max_per_session)


# ---------------------------------------------------------------------------------------------
# The codes of a dataset and their maps, shared by the Latent map and Analyze pages


def codes_for(ctx, n: int):
    """The posterior means of ``n`` images of the dataset (a fixed random subset), and their indices."""
    results = queue().results
    key = ("codes", ctx.model_key, ctx.data_key, n)
    hit = results.get(key)
    if hit is not None:
        return hit
    sub, idx = ctx.data.seeded_subset(n, seed=0)
    bar = st.progress(0.0, text=f"Encoding {len(sub):,} images...")

    def tick(done, total):
        bar.progress(done / total, text=f"Encoding {len(sub):,} images... {done:,}/{total:,}")

    codes = explore.encode_dataset(ctx.model, sub, progress=tick)
    memory.release()
    bar.empty()
    return results.put(key, (codes, idx))


def projection(ctx, session: str, codes, method: str, params: dict, after: threading.Event | None = None):
    """2-D points for ``codes``, and the Job of a slow method still on its way (else None).

    While t-SNE or UMAP runs (or waits its turn), the PCA map stands in for it. Results are kept
    for every session, so a map already computed comes back at once.
    """
    base = ("map", ctx.model_key, ctx.data_key, len(codes))
    if method == "pca":
        return queue().results.get_or_compute((*base, "pca"), lambda: project.pca(codes)), None
    key = (*base, method, tuple(sorted(params.items())))
    job = queue().submit(session, key, project.project, codes, method, after=after, **params)
    if job.state == "failed":
        err = job.error
        if isinstance(err, vae_core.VAEError):
            raise err
        raise vae_core.VAEError(f"{project.METHODS[method]} failed ({type(err).__name__}: {err}); "
                                "try other parameters or PCA.")
    if job.state == "done":
        return job.result, None
    return projection(ctx, session, codes, "pca", {})[0], job
