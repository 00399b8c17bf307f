"""One script run at a time per session, whatever the client sends (issue 30: a tab clicking Resample once a
second had Streamlit start a new run per click while the old one computed: 14 -> 54 threads, 0.7 -> 5 GB).

The raw-client test starts a real Streamlit server (its own small script, which wraps its work in the app's
``explorer.startup.one_run`` as app.py does and counts the runs it is inside) and talks Streamlit's websocket
protocol directly, as fast as a client can: reruns, and "stop, then rerun" pairs (each of which gets a new
ScriptRunner while the stopped one still computes)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from explorer.startup import SessionRuns
from tests.browser_helpers import _healthy, free_port
from tests.test_dockerfile import env_of, instructions
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent

APP = '''
import json, os, threading, time
import streamlit as st
from explorer import startup

@st.cache_resource
def counts():
    return {"lock": threading.Lock(), "now": 0, "peak": 0, "started": 0, "ended": 0}

def note(c, **change):
    with c["lock"]:
        for k, v in change.items():
            c[k] += v
        c["peak"] = max(c["peak"], c["now"])
        tmp = os.environ["RUNS_FILE"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump({k: v for k, v in c.items() if k != "lock"}, f)
        os.replace(tmp, os.environ["RUNS_FILE"])

c = counts()
with startup.one_run():
    note(c, now=1, started=1)
    try:
        for i in range(40):             # a slow view: 40 steps of work, each ending at a Streamlit call
            t = time.monotonic()
            while time.monotonic() - t < 0.01:
                pass
            st.empty()
    finally:
        note(c, now=-1, ended=1)
'''


def test_config_turns_fast_reruns_off():
    """Streamlit's own setting, in the app's config and in the Space's environment (which overrides it)."""
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["runner"]["fastReruns"] is False
    assert env_of(instructions()).get("STREAMLIT_RUNNER_FAST_RERUNS") == "false"


def test_guard_forgets_ended_sessions():
    runs = SessionRuns()
    with runs.hold("a"):
        pass
    with runs.hold("b", alive=lambda s: False):
        assert runs.sessions() == 1          # "a" has ended: its lock is gone


@contextlib.contextmanager
def server(script: Path, runs_file: Path):
    port = int(os.environ.get("VAE_TEST_PORT") or free_port())
    env = {**os.environ, "RUNS_FILE": str(runs_file), "PYTHONPATH": str(ROOT),
           "STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION": "false", "STREAMLIT_SERVER_ENABLE_CORS": "false"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true"]
    # cwd: the checkout, so the server reads the app's .streamlit/config.toml (fastReruns among it)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        url = f"127.0.0.1:{port}"
        wait_for(lambda: proc.poll() is None and _healthy(f"http://{url}"), 60, "the test server")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_raw_client_holds_the_session_to_one_run(tmp_path):
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ClientState_pb2 import ClientState
    from websockets.sync.client import connect

    script, runs_file = tmp_path / "app.py", tmp_path / "runs.json"
    script.write_text(APP)

    def rerun() -> bytes:
        return BackMsg(rerun_script=ClientState(query_string="", page_script_hash="")).SerializeToString()

    def stop() -> bytes:
        return BackMsg(stop_script=True).SerializeToString()

    def counts() -> dict:
        try:
            return json.loads(runs_file.read_text())
        except (OSError, ValueError):
            return {}

    with server(script, runs_file) as url, connect(f"ws://{url}/_stcore/stream", subprotocols=["streamlit"],
                                                   max_size=None) as ws:
        ws.send(rerun())
        seen = 0
        for _ in range(12):
            seen = wait_for(lambda: counts().get("started", 0) > seen and counts()["started"], 30, "a run to start")
            for _ in range(3):               # as fast as the client can: reruns, then a stop and a rerun
                ws.send(rerun())
            ws.send(stop())
            ws.send(rerun())
        final = wait_for(lambda: (c := counts()) and c["started"] > seen and c["now"] == 0
                         and c["started"] == c["ended"] and c, 60, "the runs to end")
    assert final["started"] >= 12           # the client's requests did run (superseding each other)
    assert final["peak"] == 1, f"{final['peak']} runs of one session at once"


def test_the_server_runs_at_most_its_cap_of_scripts_at_once_and_a_gone_sessions_run_gives_up():
    import threading

    from explorer.startup import SessionGone

    runs = SessionRuns(max_runs=2)
    inside, peak, lock = [0], [0], threading.Lock()
    release, entered = threading.Event(), threading.Semaphore(0)

    def one(session):
        with runs.hold(session):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            entered.release()
            release.wait(30)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=one, args=(f"s{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=30) and entered.acquire(timeout=30)      # two runs are in
    with pytest.raises(SessionGone):                                         # a third, whose tab closed, gives up
        with runs.hold("closed", gone=lambda s: s == "closed"):
            pass
    release.set()
    for t in threads:
        t.join(30)
    assert peak[0] == 2
