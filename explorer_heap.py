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
    """Pause the cyclic collector for a block of imports; if the block succeeds, freeze every
    object alive at its end (``gc.freeze``), so later collections never scan them.

    Objects made afterwards, including every session's, are collected as before. Cyclic garbage
    left by the imports is frozen with the rest (about 10,000 objects, once) instead of paying a
    full collection's pause (0.3 s) while users are being served."""
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        gc.enable()
