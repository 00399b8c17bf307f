"""Server-side timing of every script run, for bench/load_test.py (not part of the app).

bench/load_test.py puts this folder on the server's PYTHONPATH and names a log file in
VAE_BENCH_RUN_LOG; Python imports this module at start-up. Each line of the log is one run (a
whole page or a fragment): seconds from the first rerun request the server received for it to
the run's start, the run's own seconds, and "fragment" or the page's name. The sum of the two
times is the server's share of an interaction.
"""
import os
import threading
import time

LOG = os.environ.get("VAE_BENCH_RUN_LOG")

if LOG:
    from streamlit.runtime.scriptrunner import script_runner as _sr

    _lock = threading.Lock()
    _request, _run = _sr.ScriptRunner.request_rerun, _sr.ScriptRunner._run_script

    def request_rerun(self, rerun_data):
        self.__dict__.setdefault("_bench_requested", time.perf_counter())     # the earliest one waiting
        return _request(self, rerun_data)

    def _run_script(self, rerun_data):
        requested = self.__dict__.pop("_bench_requested", None)
        start = time.perf_counter()
        try:
            return _run(self, rerun_data)
        finally:
            end = time.perf_counter()
            with _lock, open(LOG, "a") as f:
                kind = "fragment" if rerun_data.fragment_id_queue else (rerun_data.page_name or "page")
                f.write(f"{start - (requested or start):.4f} {end - start:.4f} {kind}\n")

    _sr.ScriptRunner.request_rerun = request_rerun
    _sr.ScriptRunner._run_script = _run_script
