"""What a command will cost, estimated before it starts: time from a quick measurement (one small batch
through the model, timed), memory from the model's widest decode (``config.decode_values()``, the same
figure the app's budgets use) times the request. A job that cannot fit in the memory available is
refused; one estimated above ``ASK_SECONDS`` runs only with --yes; --max-seconds refuses anything
estimated above it. The estimate is one line on stderr."""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

import torch

from vae_core.cli.args import say
from vae_core.errors import VAEError

ASK_SECONDS = 300.0         # a job estimated longer than this asks for --yes
FLOAT = 4                   # bytes of a float32 value
MEMORY_SHARE = 0.8          # of the memory available now, the most a job may plan to use


@dataclasses.dataclass(frozen=True)
class Estimate:
    what: str               # "IWAE over 1,000 images x k=5,000", named as the flags set it
    seconds: float
    bytes: int
    lower: str              # which flags lower the cost, for the refusal


def available_bytes(device: torch.device | str | None = None) -> int:
    """Memory a job may still take: free memory on a CUDA device, else the system's MemAvailable."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def timed(fn: Callable[[], object], repeats: int = 2) -> float:
    """Seconds one call of ``fn`` takes, warm (the fastest of ``repeats`` calls, after one to warm up)."""
    with torch.inference_mode():
        fn()
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return best


def decode_bytes(model) -> int:
    """Bytes one image holds while the model decodes it (its widest layer, at least its pixels)."""
    return max(1, model.config.decode_values()) * FLOAT


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PB"


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172_800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:,.0f} days"


def check(est: Estimate, args, device=None) -> None:
    """Refuse (a VAEError whose one line holds the estimate) what cannot fit in memory or would run longer
    than allowed; otherwise print the estimate as one line."""
    avail = available_bytes(device)
    line = (f"{est.what}: about {human_seconds(est.seconds)} and {human_bytes(est.bytes)} of memory "
            f"({human_bytes(avail)} available)")
    limit = getattr(args, "max_seconds", None)
    if est.bytes > MEMORY_SHARE * avail:
        raise VAEError(f"{line}: more memory than this machine has free; {est.lower}.")
    if limit is not None and est.seconds > limit:
        raise VAEError(f"{line}: longer than --max-seconds {limit:g}; {est.lower}, or raise --max-seconds.")
    if limit is None and est.seconds > ASK_SECONDS and not getattr(args, "yes", False):
        raise VAEError(f"{line}: longer than {ASK_SECONDS:.0f} s; pass --yes to run it, or {est.lower}.")
    if not getattr(args, "quiet", False):
        say(f"estimate: {line}")
