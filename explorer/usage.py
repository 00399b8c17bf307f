"""Who uses the server and what their work costs: a session's and a visitor's identity, a model's FLOPs per
image (measured once, on load), and the CPU-seconds each session has used over a sliding window.

explorer.limits holds the budgets; this module counts what is checked against them."""
from __future__ import annotations

import threading

import streamlit as st


def session_id() -> str:
    """This browser session's id ("" outside a server, e.g. in a script): whom a session's budgets count for."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    run_ctx = get_script_run_ctx()
    return run_ctx.session_id if run_ctx is not None else ""


def live_session() -> str:
    """This script run's session where a real server runs it ("" elsewhere: a script, AppTest's stand-in)."""
    from streamlit import runtime

    sid = session_id()
    return sid if sid and runtime.exists() and runtime.get_instance().is_active_session(sid) is True else ""


class WorkCost(tuple):
    """FLOPs of encoding and of decoding one image of a model: (encode, decode)."""

    encode = property(lambda self: self[0])
    decode = property(lambda self: self[1])


def work_cost(model) -> WorkCost:
    """``model``'s FLOPs per image, measured once (a forward of one image under torch's FLOP counter; loaders
    measure it on load) and kept on the model. A model the counter cannot follow counts 2 per parameter."""
    cost = getattr(model, "explorer_work_cost", None)
    if cost is None:
        cost = _measure(model)
        object.__setattr__(model, "explorer_work_cost", cost)     # the same value whoever measures it first
    return cost


def _measure(model) -> WorkCost:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vae_core.latent import explore

    fallback = 2 * sum(p.numel() for p in model.parameters())
    y = 0 if getattr(model, "num_classes", 0) else None
    try:
        x = torch.zeros(1, *model.config.in_shape)
        with FlopCounterMode(display=False) as counter:
            z = explore.encode(model, x, y)
        encode = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            explore.decode(model, z, y)
        decode = counter.get_total_flops()
    except Exception:                   # a model the counter cannot run: its weights as the estimate
        return WorkCost((fallback, fallback))
    return WorkCost((max(encode, fallback // 2, 1), max(decode, fallback // 2, 1)))


class CpuLedger:
    """CPU-seconds each session has used (its script runs and its background jobs), kept for a sliding
    window; owns its lock. Sessions with nothing in the window are forgotten."""

    def __init__(self, clock=None):
        import collections
        import time

        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._spent: dict[str, collections.deque] = {}
        self._deque = collections.deque

    def add(self, session: str, seconds: float) -> None:
        if not session or seconds <= 0:
            return
        with self._lock:
            self._spent.setdefault(session, self._deque()).append((self.clock(), seconds))

    def used(self, session: str, window: float) -> float:
        """CPU-seconds ``session`` used in the last ``window`` seconds."""
        with self._lock:
            since = self.clock() - window
            for s in list(self._spent):
                spent = self._spent[s]
                while spent and spent[0][0] < since:
                    spent.popleft()
                if not spent:
                    del self._spent[s]
            return sum(seconds for _, seconds in self._spent.get(session, ()))


@st.cache_resource
def cpu_ledger() -> CpuLedger:
    """The server's record of each session's CPU-seconds."""
    return CpuLedger()


@st.cache_resource
def server_flops_per_second() -> float:
    """What one core of this server computes, measured once (a few 512x512 matrix products on one thread)."""
    import time

    import torch

    a = torch.randn(512, 512)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a @ a
        t0 = time.perf_counter()
        for _ in range(4):
            a @ a
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return max(4 * 2 * 512 ** 3 / max(seconds, 1e-6), 1e8)


def visitor_address(forwarded: str | None, address: str | None, hops: int) -> str | None:
    """The visitor's address: with ``hops`` proxies in front, the entry of X-Forwarded-For each of them
    wrote last (counted from the right, so a client cannot choose it by sending its own header);
    without proxies, the connection's ``address``. None when it is unknown."""
    if hops <= 0:
        return address or None
    entries = [e.strip() for e in (forwarded or "").split(",") if e.strip()]
    return entries[-hops] if len(entries) >= hops else (address or None)


def visitor(s) -> str:
    """Who a per-visitor budget counts for in this script run: the client's address (all of one browser's
    tabs together), or the session where the address is unknown (a script, AppTest)."""
    try:
        address = visitor_address(st.context.headers.get("X-Forwarded-For"), st.context.ip_address, s.proxy_hops)
    except Exception:                       # no browser context (outside a server)
        address = None
    return f"address {address}" if address else f"session {session_id()}"
