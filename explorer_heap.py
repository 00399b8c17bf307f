"""The explorer server's long-lived heap and Python's cyclic garbage collector.

Standard library only: app.py uses it at server start, before torch is imported.

The modules of torch, streamlit, numba and umap are about 400,000 long-lived objects. A full
collection scanned all of them: a 250-340 ms pause every few reruns, which was the slow tail of
a Traverse slider move (bench/browser_latency.py), and collections during their imports were a
fifth of the imports' time (bench/startup.py).
"""
from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def imports_then_freeze():
    """Pause the cyclic collector for a block of imports and warm-up work; if the block succeeds,
    collect its garbage and freeze every object then alive (``gc.freeze``), so that later
    collections never scan them again.

    While the collector is paused nothing is promoted, so the youngest generation holds exactly
    what was made meanwhile (by the block, and by any session served at the time): collecting it
    alone frees that garbage in 0.06-0.1 s, where a full collection paused the server for 0.3 s.
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
