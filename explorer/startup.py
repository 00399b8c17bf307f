"""Everything that tunes the server's start, in one place, with one switch: ``VAE_EXPLORER_WARMUP=0``
turns off the preload, the heap freeze and the UMAP warm-up (the tests do; a server should not).

1. ``lifespan``: `streamlit run app.py` serves ``app.app`` (Streamlit's ASGI mode); its lifespan starts
   a thread that imports torch and the explorer while the browser is still fetching Streamlit's
   front end, so the first page's run does not wait for them.
2. ``imports_then_freeze``: those imports run with the cyclic garbage collector paused, then the
   block's garbage is collected and everything alive is frozen (``gc.freeze``). The modules of
   torch, streamlit, numba and umap are a few hundred thousand long-lived objects; every full
   collection used to scan them all, which was the slow tail of a slider move.
3. ``warm_up``: once the first page is drawn, and a moment later, a thread imports umap-learn and
   the plotting library and fits a tiny map, so numba's compiled code is loaded before anyone
   asks for a map (projections wait for it rather than compile the same code twice).

``python -m bench.startup`` measures the result and prints the timings this module logs.
This module imports only the standard library and streamlit at import time.
"""
from __future__ import annotations

import contextlib
import gc
import os
import threading
import time

import streamlit as st
from streamlit.logger import get_logger

log = get_logger(__name__)
WARM_UP_DELAY_S = 2.0       # after the first page: its images are fetched first (bench/startup.py)


def enabled() -> bool:
    """The one switch: VAE_EXPLORER_WARMUP=0 (or off, false, no) turns all start-up tuning off."""
    return os.environ.get("VAE_EXPLORER_WARMUP", "1").strip().lower() not in ("0", "off", "false", "no")


@contextlib.contextmanager
def imports_then_freeze():
    """Pause the cyclic collector for a block of imports and warm-up work; if the block succeeds,
    collect its garbage and freeze every object then alive (``gc.freeze``), so that later
    collections never scan them again.

    While the collector is paused nothing is promoted, so the youngest generation holds exactly
    what was made meanwhile (by the block, and by any session served at the time): collecting it
    alone frees that garbage, where a full collection would pause the server far longer.
    Objects made afterwards are collected as before. The collector is turned back on only if it
    was on before."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.collect(0)
        gc.freeze()
    finally:
        if was_on:
            gc.enable()


def preload() -> None:
    """Import torch and every module a page run needs; a run that starts sooner waits on the import lock."""
    t0 = time.perf_counter()
    with imports_then_freeze():
        from vae_core import memory

        memory.tune()                    # before the server's threads make their malloc arenas
        import explorer.jobs  # noqa: F401
        import explorer.sidebar  # noqa: F401
        import explorer.widgets  # noqa: F401
        from torch.utils.flop_counter import FlopCounterMode   # its first use takes seconds (explorer.limits)

        with FlopCounterMode(display=False):
            pass
    log.info("preload: torch and the explorer imported in %.2f s; %d objects frozen",
             time.perf_counter() - t0, gc.get_freeze_count())


@contextlib.asynccontextmanager
async def lifespan(_app):
    """The ASGI app's lifespan: start the preload and return at once (the server does not wait)."""
    if enabled():
        threading.Thread(target=preload, name="preload", daemon=True).start()
    yield


@st.cache_resource
def configure_torch() -> int:
    """Once per server process: torch's intra-op threads (VAE_EXPLORER_TORCH_THREADS, see limits),
    and glibc's malloc tuned so that freed memory goes back to the OS (vae_core.memory; the preload
    did it already when it ran).

    0 (the default) leaves torch's own choice, best for one user on a machine; a public host with
    many concurrent sessions sets 1 (the Dockerfile does), so sessions do not oversubscribe the cores.
    """
    import torch

    from explorer.limits import Settings
    from vae_core import memory

    memory.tune()
    threads = Settings.from_env().torch_threads
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


class WarmUp:
    """The UMAP warm-up of this server process: a thread of its own, and an event when it is done."""

    def __init__(self, run: bool):
        self.done = threading.Event()
        self.timings: dict[str, float] = {}
        self.error = ""
        self.thread: threading.Thread | None = None
        if run:
            self.thread = threading.Thread(target=self._run, name="warm-up", daemon=True)
            self.thread.start()
        else:
            self.done.set()

    def _run(self) -> None:
        time.sleep(WARM_UP_DELAY_S)            # the first page's images go out before the imports hold the GIL
        try:
            with imports_then_freeze():
                from vae_core import project
                self.timings = project.warm_up()
                import openTSNE  # noqa: F401  -- t-SNE's library, so its first map need not import it
                import plotly.graph_objects  # noqa: F401
            log.info("warm-up: umap imported in %.2f s, first map in %.2f s",
                     self.timings["import_s"], self.timings["fit_s"])
        except Exception as e:                 # a failed warm-up only costs speed; a map reports real errors
            self.error = f"{type(e).__name__}: {e}"
            log.warning("warm-up failed: %s", self.error)
        finally:
            self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


@st.cache_resource
def warm_up() -> WarmUp:
    """The server's warm-up, started once (app.py asks for it after the first page is drawn)."""
    return WarmUp(run=enabled())


# ---------------------------------------------------------------------------------------------
# One script run at a time per session

RUN_POLL_S = 0.05           # how often a run waiting for its session's previous run looks again


class SessionRuns:
    """Each session's script runs, one at a time, whatever the client sends.

    With ``runner.fastReruns = false`` (.streamlit/config.toml) a session has one ScriptRunner, which takes
    a new request at the previous run's next Streamlit call. A client can still get a second runner (a
    stop message, then a rerun): the old one was asked to stop and ends at its next Streamlit call, and the
    new one waits here for it, so a session never computes two views at once. Sessions that have ended
    are forgotten on the next call. Owns its lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}     # session id -> held while one of its runs runs

    @contextlib.contextmanager
    def hold(self, session: str, alive=None):
        """Wait until ``session`` has no other run in here, then run the block as its one run.
        ``alive(session)`` says whether a session is still connected (its lock is dropped if not)."""
        with self._lock:
            if alive is not None:
                for gone in [s for s in self._locks if s != session and not alive(s)]:
                    if not self._locks[gone].locked():
                        del self._locks[gone]
            lock = self._locks.setdefault(session, threading.Lock())
        while not lock.acquire(timeout=RUN_POLL_S):
            pass                        # the run before this one was asked to stop: it ends at its next check
        try:
            yield
        finally:
            lock.release()

    def sessions(self) -> int:
        """Sessions this guard holds a lock for."""
        with self._lock:
            return len(self._locks)


@st.cache_resource
def session_runs() -> SessionRuns:
    """The server's one guard of script runs per session."""
    return SessionRuns()


def _alive(session: str) -> bool:
    from streamlit import runtime

    return runtime.exists() and runtime.get_instance().is_active_session(session) is True


@contextlib.contextmanager
def one_run():
    """The block (app.py's whole script run) as this session's only run (``SessionRuns``)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from explorer import limits

    ctx = get_script_run_ctx()
    if ctx is None:
        yield
        return
    limits.upload_budget(limits.settings())        # installed by the server's first run (the budget counts PUTs)
    with session_runs().hold(ctx.session_id, _alive):
        t0 = time.thread_time()
        try:
            yield
        finally:                                    # the run's CPU-seconds count against its session's budget
            limits.cpu_ledger().add(limits.live_session(), time.thread_time() - t0)
