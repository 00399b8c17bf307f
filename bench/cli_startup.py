"""Fixed cost of a short command-line run: `python -m vae_core train --epochs 1` on mnist-5k, whole process.

    python -m bench.cli_startup [--repeats 5]

Each repeat starts, in turn (so drifting machine load hits all alike), fresh processes for:
- `python -c "import torch"`: the floor every torch program pays;
- `python -c "import torch, torch._dynamo"`: that plus torch's compiler package, which
  torch.optim's first call imports (vae_core's FusedAdam does not: vae_core/training/optim.py);
- `python -m vae_core train --dataset mnist-5k --epochs 1 --quiet --out TMP`: the whole run
  (imports, data, 31 steps, the held-out evaluation, the checkpoint and its sample grid).
Prints the best and the median wall time of each, and the CPU time (user + system, all threads) of
the process: on a machine shared with other work the wall time grows with the load, the CPU time
much less, and on an idle machine the wall time lies between CPU / threads and the CPU time. The
target (issue 17) is a wall time under 2 s.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 2.0


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wall(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process."""
    t, c = time.perf_counter(), cpu_children()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return time.perf_counter() - t, cpu_children() - c


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "python -c 'import torch' (the floor)": [sys.executable, "-c", "import torch"],
            "python -c 'import torch, torch._dynamo'": [sys.executable, "-c", "import torch, torch._dynamo"],
            "python -m vae_core train --dataset mnist-5k --epochs 1": [
                sys.executable, "-m", "vae_core", "train", "--dataset", "mnist-5k", "--epochs", "1", "--quiet",
                "--out", str(Path(tmp) / "run")],
        }
        for cmd in runs.values():                             # the OS file cache warm, mnist-5k cached
            wall(cmd)
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, cmd in runs.items():
                times[name].append(wall(cmd))
    print(f"\n{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; best and median of "
          f"{args.repeats} interleaved fresh processes\n")
    print("| process | wall, best (s) | wall, median (s) | CPU, best (s) | ratio to the torch import (wall) |\n"
          "|---|---:|---:|---:|---:|")
    floor = [w for w, _ in list(times.values())[0]]
    for name, ts in times.items():
        ws = [w for w, _ in ts]
        print(f"| {name} | {min(ws):.2f} | {statistics.median(ws):.2f} | {min(c for _, c in ts):.2f} | "
              f"{min(ws) / min(floor):.2f}x |")
    cli = [w for w, _ in list(times.values())[-1]]
    print(f"\nthe training run: {min(cli):.2f} s best, {min(cli) - min(floor):.2f} s above the torch import; "
          f"target under {TARGET_S:g} s: {'met' if min(cli) < TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
