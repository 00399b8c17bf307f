"""Public mode's run folders: each session's own private temporary folder, removed when it ends.

A run trained on a public server is saved into its session's folder only (never the shared
``runs/``), and leaves as a zip download or a push with a token the visitor types. ``PrivateRuns``
is made once per server (``private_runs()``, an ``st.cache_resource``) and owns its lock, its root
folder (mode 0700, removed when the process exits) and a sweeper thread that runs only while some
folder exists: a folder whose session has been gone for the session time-out is deleted.
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

    def _sweep_loop(self) -> None:
        while True:
            with self._lock:
                self._wake.wait(self.sweep_every)
            self.sweep()
            with self._lock:
                if not self._folders:
                    self._sweeping = False           # no folder left: the thread ends; a new folder starts another
                    return


def _session_active(session: str) -> bool:
    from streamlit import runtime

    return runtime.exists() and runtime.get_instance().is_active_session(session) is True


@st.cache_resource
def private_runs(timeout: float) -> PrivateRuns:
    """The server's private run folders (one object for each session time-out)."""
    return PrivateRuns(timeout, _session_active)
