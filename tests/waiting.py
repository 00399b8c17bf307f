"""Waiting in tests: on an event where there is one, else polling a condition until a deadline."""
from __future__ import annotations

import time
from typing import Callable

POLL_S = 0.05


def wait_for(condition: Callable[[], object], timeout: float, what: str = "the condition") -> object:
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` seconds pass (AssertionError naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(POLL_S)
