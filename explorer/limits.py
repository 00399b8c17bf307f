"""The server's limits, from the environment, each validated: a bad value stops the server with a
message that names it, never silently switches a limit off.

    VAE_EXPLORER_MAX_EPOCHS          most epochs one run in the app may ask for (default 50)
    VAE_EXPLORER_MAX_SECONDS         most seconds of training one run may take (default 300)
    VAE_EXPLORER_MAX_JOBS            most runs training at once on the server (default 2)
    VAE_EXPLORER_MAX_JOBS_PER_SESSION  most runs training at once for one browser session (default 1)
    VAE_EXPLORER_RUNS_DIR            where "save as run folder" writes (default ./runs)
    VAE_EXPLORER_TORCH_THREADS       torch's intra-op threads in the server (default 0: torch's own
                                     choice; the Docker Space sets 1 so sessions do not oversubscribe)
    VAE_EXPLORER_SESSION_TIMEOUT     seconds a run goes on once its session is gone (default 120)
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Mapping

from vae_core import VAEError
from vae_core.live import TrainingLimits

RUN_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,63}")


@dataclasses.dataclass(frozen=True)
class Settings:
    max_epochs: int = 50
    max_seconds: float = 300.0
    max_jobs: int = 2
    max_jobs_per_session: int = 1
    runs_dir: Path = Path("runs")
    torch_threads: int = 0
    session_timeout: float = 120.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def number(name: str, default, kind, zero_ok: bool = False):
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise VAEError(f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}; "
                               "fix the server's environment.") from None
            if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
                raise VAEError(f"{name} must be a finite number {'of zero or more' if zero_ok else 'above zero'}, "
                               f"got {raw!r}; fix the server's environment.")
            return value

        return cls(max_epochs=number("VAE_EXPLORER_MAX_EPOCHS", cls.max_epochs, int),
                   max_seconds=number("VAE_EXPLORER_MAX_SECONDS", cls.max_seconds, float),
                   max_jobs=number("VAE_EXPLORER_MAX_JOBS", cls.max_jobs, int),
                   max_jobs_per_session=number("VAE_EXPLORER_MAX_JOBS_PER_SESSION", cls.max_jobs_per_session, int),
                   runs_dir=Path(env.get("VAE_EXPLORER_RUNS_DIR") or cls.runs_dir),
                   torch_threads=number("VAE_EXPLORER_TORCH_THREADS", cls.torch_threads, int, zero_ok=True),
                   session_timeout=number("VAE_EXPLORER_SESSION_TIMEOUT", cls.session_timeout, float))

    @property
    def training(self) -> TrainingLimits:
        return TrainingLimits(self.max_epochs, self.max_seconds, self.session_timeout)

    def run_folder(self, name: str) -> Path:
        """The folder a saved run of this name goes to: inside the runs folder, never outside it."""
        if not RUN_NAME.fullmatch(name or ""):
            raise VAEError(f"{name!r} is not a usable folder name: use letters, digits, '.', '_' and '-' "
                           "(up to 64 characters).")
        return self.runs_dir / name
