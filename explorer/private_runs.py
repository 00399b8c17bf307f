"""Public mode's run folders: each session's own private temporary folder, removed when it ends.

A run trained on a public server is saved into its session's folder only (never the shared
``runs/``), and leaves as a zip download or a push with a token the visitor types. ``PrivateRuns``
is made once per server (``private_runs()``, an ``st.cache_resource``) and owns its lock, its root
folder (mode 0700, removed when the process exits) and a sweeper thread that runs only while some
folder exists: a folder whose session has been gone for the session time-out is deleted.

``save`` writes a run into a session's folder within that session's disk budget (a count of runs and
their bytes, VAE_EXPLORER_MAX_SESSION_RUNS and VAE_EXPLORER_MAX_SESSION_DISK_MB): saving beyond the count
replaces the oldest run, and its messages never name the folder.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import streamlit as st

SWEEP_EVERY_S = 10.0


class PrivateRuns:
    """Per-session private folders. ``alive(session)`` says whether a session is still connected; a
    session that is not, and has not been ``touch``-ed for ``timeout`` seconds, loses its folder."""

    def __init__(self, timeout: float, alive: Callable[[str], bool] | None = None,
                 sweep_every: float = SWEEP_EVERY_S):
        self.timeout, self.sweep_every = timeout, sweep_every
        self.alive = alive or (lambda session: False)
        self._root = tempfile.TemporaryDirectory(prefix="vae-explorer-private-")   # removed at exit
        self.root = Path(self._root.name)
        self.root.chmod(0o700)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._folders: dict[str, Path] = {}
        self._seen: dict[str, float] = {}
        self._sweeping = False

    def folder(self, session: str) -> Path:
        """This session's folder (made on first use, readable by this server's user only)."""
        with self._lock:
            self._seen[session] = time.monotonic()
            folder = self._folders.get(session)
            if folder is None or not folder.is_dir():
                folder = self._folders[session] = Path(tempfile.mkdtemp(prefix="session-", dir=self.root))
                folder.chmod(0o700)
            if not self._sweeping:
                self._sweeping = True
                threading.Thread(target=self._sweep_loop, name="private-runs-sweeper", daemon=True).start()
            return folder

    def touch(self, session: str) -> None:
        """The session is still here (every rerun of it says so)."""
        with self._lock:
            if session in self._folders:
                self._seen[session] = time.monotonic()

    @property
    def sweeping(self) -> bool:
        """Whether the sweeper thread runs (only while some folder exists)."""
        with self._lock:
            return self._sweeping

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._folders)

    def sweep(self) -> list[str]:
        """Delete the folders of sessions gone for longer than the time-out; returns those sessions."""
        with self._lock:
            sessions = list(self._folders)
        gone = []
        for session in sessions:
            try:
                here = self.alive(session)
            except Exception:            # a runtime shutting down: the session is gone
                here = False
            with self._lock:
                if here:
                    self._seen[session] = time.monotonic()
                elif time.monotonic() - self._seen.get(session, 0.0) > self.timeout:
                    folder = self._folders.pop(session, None)
                    self._seen.pop(session, None)
                    if folder is not None:
                        shutil.rmtree(folder, ignore_errors=True)
                    gone.append(session)
        return gone

    def save(self, session: str, name: str, write: Callable[[Path], Path], max_runs: int, max_bytes: int) -> Path:
        """``write(folder)`` (e.g. ``TrainingJob.save``) into this session's folder as run ``name``, after the
        oldest runs beyond ``max_runs`` - 1 others are removed; a run that leaves the session above
        ``max_bytes`` is removed again and refused. Errors say what happened without the server's path."""
        from vae_core import VAEError

        home = self.folder(session)
        others = sorted((p for p in home.iterdir() if p.is_dir() and p.name != name and not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime)
        for old in others[:max(0, len(others) - (max_runs - 1))]:
            shutil.rmtree(old, ignore_errors=True)              # runs replace, not accumulate
        try:
            folder = write(home / name)
        except (VAEError, OSError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise VAEError(f"This server could not save the run ({reason.replace(str(home), name)}); "
                           "nothing of it was kept. Try again in a while.") from None
        used = folder_bytes(home)
        if used > max_bytes:
            shutil.rmtree(folder, ignore_errors=True)
            raise VAEError(f"This run would take this session's saved runs to {used / 2 ** 20:,.1f} MB on the server; "
                           f"a session keeps at most {max_bytes / 2 ** 20:,.0f} MB (VAE_EXPLORER_MAX_SESSION_DISK_MB). "
                           "Push it to the Hub, or train a smaller model.")
        return folder

    def _sweep_loop(self) -> None:
        while True:
            with self._lock:
                self._wake.wait(self.sweep_every)
            self.sweep()
            with self._lock:
                if not self._folders:
                    self._sweeping = False           # no folder left: the thread ends; a new folder starts another
                    return


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _session_active(session: str) -> bool:
    from streamlit import runtime

    return runtime.exists() and runtime.get_instance().is_active_session(session) is True


@st.cache_resource
def private_runs(timeout: float) -> PrivateRuns:
    """The server's private run folders (one object for each session time-out)."""
    return PrivateRuns(timeout, _session_active)
