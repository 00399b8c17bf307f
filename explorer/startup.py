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


def install_budgets() -> None:
    """The upload budget, on the runtime's uploaded-file manager, before any script has run (uploads can be
    PUT to a session that never ran one); each run installs it too, if this has not (explorer.limits)."""
    from explorer import limits

    for _ in range(100):                 # the runtime exists once the server has started: soon after this
        if upload_budget(limits.settings()) is not None:
            return
        time.sleep(0.05)


def preload() -> None:
    """Import torch and every module a page run needs; a run that starts sooner waits on the import lock."""
    t0 = time.perf_counter()
    install_budgets()
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
    threading.Thread(target=guard_uploads, name="guard-uploads", daemon=True).start()
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
                from vae_core.latent import projections as project
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
# Uploads counted per session from the server's start

def upload_budget(s) -> "UploadBudget | None":
    """The server's upload budget (``s``: explorer.limits.Settings), installed once on its runtime's
    uploaded-file manager (None outside a server)."""
    from streamlit import runtime

    if not runtime.exists():
        return None
    return UploadBudget.install(runtime.get_instance().uploaded_file_mgr, s.max_upload_files, s.max_upload_bytes)


class UploadBudget:
    """The files each session holds uploaded, counted as they arrive: Streamlit keeps every file a client
    PUTs to its session until the session ends (300 files in 7 s: +1.5 GB), so this wraps the runtime's
    uploaded-file manager and refuses a file beyond ``max_files`` or ``max_bytes`` for its session, before
    it is stored. A file the visitor replaces or removes is deleted by the browser and stops counting."""

    def __init__(self, manager, max_files: int, max_bytes: int):
        self.manager, self.max_files, self.max_bytes = manager, max_files, max_bytes
        self.refused = 0
        self._lock = threading.Lock()
        self._add = manager.add_file
        manager.add_file = self.add_file

    @classmethod
    def install(cls, manager, max_files: int, max_bytes: int, only_if_missing: bool = False) -> "UploadBudget":
        """The budget on ``manager``: installed on first use, its limits brought up to date after."""
        with _install_lock():
            budget = getattr(manager.add_file, "__self__", None)
            if not isinstance(budget, cls):
                return cls(manager, max_files, max_bytes)
            if not only_if_missing:
                budget.max_files, budget.max_bytes = max_files, max_bytes
            return budget

    def held(self, session: str) -> tuple[int, int]:
        """(files, bytes) ``session`` holds uploaded now."""
        files = dict(getattr(self.manager, "file_storage", {}).get(session) or {})
        return len(files), sum(len(f.data) for f in files.values())

    def add_file(self, session_id: str, file) -> None:
        with self._lock:                             # check and store together: parallel uploads count too
            others = dict(getattr(self.manager, "file_storage", {}).get(session_id) or {})
            others.pop(file.file_id, None)
            size = sum(len(f.data) for f in others.values()) + len(file.data)
            why = None
            if self.max_files == 0:
                why = "the server is still starting; try again in a few seconds"
            elif len(others) + 1 > self.max_files:
                why = (f"this session holds {len(others)} uploaded files, the most a session may "
                       f"(VAE_EXPLORER_MAX_UPLOAD_FILES = {self.max_files})")
            elif size > self.max_bytes:
                why = (f"this session's uploads would take {size / 2 ** 20:,.1f} MB; a session may hold "
                       f"{self.max_bytes / 2 ** 20:,.0f} MB (VAE_EXPLORER_MAX_UPLOAD_MB)")
            if why is not None:
                self.refused += 1
                from starlette.exceptions import HTTPException

                raise HTTPException(status_code=413, detail=f"Upload refused: {why}. Remove an upload first.")
            self._add(session_id=session_id, file=file)


@st.cache_resource
def _install_lock() -> threading.Lock:
    """The lock under which the upload budget is installed (one per server process)."""
    return threading.Lock()


def guard_uploads() -> None:
    """At the server's start, before any script has run: the upload budget is installed refusing every file,
    until the preload (or the first run) sets its limits from explorer.limits (which imports torch: seconds
    in which a client could otherwise PUT hundreds of MB into a session)."""
    from streamlit import runtime

    for _ in range(200):
        if runtime.exists():
            UploadBudget.install(runtime.get_instance().uploaded_file_mgr, 0, 0, only_if_missing=True)
            return
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# One script run at a time per session

RUN_POLL_S = 0.05           # how often a run waiting for its session's previous run looks again


class SessionGone(Exception):
    """The session of a run waiting for its turn has ended."""


class SessionRuns:
    """Each session's script runs, one at a time, whatever the client sends.

    With ``runner.fastReruns = false`` (.streamlit/config.toml) a session has one ScriptRunner, which takes
    a new request at the previous run's next Streamlit call. A client can still get a second runner (a
    stop message, then a rerun): the old one was asked to stop and ends at its next Streamlit call, and the
    new one waits here for it, so a session never computes two views at once. With ``max_runs`` the
    server runs at most that many scripts at once, all sessions together (40 sessions opened at once by a
    client without a browser peaked at 1.9 GB). Sessions that have ended are forgotten on the next call.
    Owns its locks."""

    def __init__(self, max_runs: int = 0):
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}     # session id -> held while one of its runs runs
        self._server = threading.BoundedSemaphore(max_runs) if max_runs else None    # runs at once, all sessions

    @contextlib.contextmanager
    def hold(self, session: str, alive=None, gone=None):
        """Wait until ``session`` has no other run in here (and, with ``max_runs``, for a turn among the
        server's runs), then run the block as its one run. ``alive(session)`` says whether a session is still
        connected (its lock is dropped if not); ``gone(session)`` that it has surely ended (a run waiting
        for its turn then raises ``SessionGone``)."""
        with self._lock:
            if alive is not None:
                for gone in [s for s in self._locks if s != session and not alive(s)]:
                    if not self._locks[gone].locked():
                        del self._locks[gone]
            lock = self._locks.setdefault(session, threading.Lock())
        while not lock.acquire(timeout=RUN_POLL_S):
            pass                        # the run before this one was asked to stop: it ends at its next check
        try:
            while self._server is not None and not self._server.acquire(timeout=RUN_POLL_S):
                if gone is not None and gone(session):
                    raise SessionGone(session)      # its tab closed while it waited: nothing to draw
            try:
                yield
            finally:
                if self._server is not None:
                    self._server.release()
        finally:
            lock.release()

    def sessions(self) -> int:
        """Sessions this guard holds a lock for."""
        with self._lock:
            return len(self._locks)


@st.cache_resource
def session_runs(max_runs: int = 0) -> SessionRuns:
    """The server's guard of script runs (one for each cap on runs at once)."""
    return SessionRuns(max_runs)


def _alive(session: str) -> bool:
    from streamlit import runtime

    return runtime.exists() and runtime.get_instance().is_active_session(session) is True


@contextlib.contextmanager
def one_run():
    """The block (app.py's whole script run) as this session's only run (``SessionRuns``)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from explorer import limits, usage

    ctx = get_script_run_ctx()
    if ctx is None:
        yield
        return
    s = limits.settings()
    upload_budget(s)                         # installed by the server's first run (the budget counts PUTs)
    from explorer.jobs import session_gone

    try:
        with session_runs(s.max_runs).hold(ctx.session_id, _alive, session_gone):
            t0 = time.thread_time()
            try:
                yield
            finally:                                # the run's CPU-seconds count against its session's budget
                usage.cpu_ledger().add(usage.live_session(), time.thread_time() - t0)
    except SessionGone:
        st.stop()
