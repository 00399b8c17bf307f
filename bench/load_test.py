"""Load: N concurrent real browser sessions against one app server (a benchmark, not a CI test).

    python -m bench.load_test --sessions 10 --seconds 120
    python -m bench.load_test --sessions 1                 # the baseline

Starts `streamlit run app.py` on a free local port (tests.browser_helpers.streamlit_server), launches
ONE headless Debian Chromium with one browser context per session (much lighter than N browsers)
and runs a scripted exploration in every context at once (asyncio Playwright):

    open the app -> Sample: Resample (x2) -> Traverse: move a slider (x3) -> Latent map: wait for the chart

Each interaction (resample, slider, page switch) is timed by the page's own clock, from the input
event to the DOM change it should cause (a new image src, the page's title); opening the app and
drawing the chart are timed from the client. --think S makes every user look at each result for S seconds on average
before the next action (0, the default, is a stress test). To tell browser time from server time,
the CPU seconds of the server and of Chromium are read from /proc, and bench/server_timing (put on
the server's PYTHONPATH) logs every script run inside the server, fragments included. The server's memory (VmRSS of the server and its children, from /proc)
is read before the sessions, at its peak during them, and --settle seconds after they close.
Prints a markdown table; targets from the issue: 100% success, p95 interaction < 500 ms, memory
growth < 50 MB a session, and back within 100 MB of the start afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import statistics
import sys
import threading
import time
from pathlib import Path

from tests.browser_helpers import (ARM_INTERACTION, CHROMIUM_ARGS, INTERACTION_DONE, INTERACTION_SECONDS,
                                  chromium_path, streamlit_server)

MAX_SESSIONS = 50
MAX_SECONDS = 600
MAIN = '[data-testid="stMain"]'
IMG = f'{MAIN} [data-testid="stImage"] img'
SLIDER_THUMB = f'{MAIN} [data-testid="stSlider"] :is(input[type="range"], [role="slider"])'


# ---------------------------------------------------------------------------------------------
# The server's memory, from /proc (psutil is not a dependency)


def server_pid(port: int) -> int | None:
    """The `streamlit run` process that listens on ``port`` (found by its command line)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
            return int(d.name)
    return None


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and all its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        todo += _children(p)
    return total / 1024


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _browser_pids() -> list[int]:
    """Chromium's processes (the headless browser and its renderers) on this machine."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                # Chromium rewrites its command line into one space-separated string.
                exe = (d / "cmdline").read_bytes().replace(b"\0", b" ").split(b" ", 1)[0]
            except OSError:
                continue
            if exe.endswith((b"chromium", b"chrome", b"chrome-headless-shell")) or b"/chromium/" in exe:
                pids.append(int(d.name))
    return pids


class Watch:
    """Every ``every`` seconds in a thread: the server's RSS (``peak`` since start) and the CPU time
    that the server and the browsers have used since start (each process's last reading is kept, so
    processes that end during the run still count)."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every, self.peak = pid, every, 0.0
        self._cpu: dict[str, dict[int, float]] = {"server": {}, "browsers": {}}
        self._base: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-watch", daemon=True)

    def _sample(self):
        self.peak = max(self.peak, rss_mb(self.pid))
        for kind, pids in (("server", _tree(self.pid)), ("browsers", _browser_pids())):
            for p in pids:
                c = cpu_seconds(p)
                if c is not None:
                    self._cpu[kind][p] = c

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def cpu(self, kind: str) -> float:
        """CPU seconds used by ``kind`` ("server" or "browsers") since the watch started."""
        return sum(self._cpu[kind].values()) - self._base[kind]

    def __enter__(self):
        self._sample()
        self._base = {k: sum(v.values()) for k, v in self._cpu.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


# ---------------------------------------------------------------------------------------------
# One scripted session


async def wait_idle(page, timeout_ms: float) -> None:
    await page.locator('[data-testid="stApp"][data-test-script-state="running"]').wait_for(
        state="detached", timeout=timeout_ms)
    await page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout_ms)


async def timed(page, want: dict, action, timeout_ms: float) -> float:
    """Seconds from the input ``action()`` makes to the page showing ``want`` (a new first image,
    or a page title), both stamped by the page's own clock (tests.browser_helpers.ARM_INTERACTION):
    under load, Playwright's round trips through a busy client would otherwise count too. Polled
    every 50 ms, not every frame, so the harness does not make ten pages draw continuously."""
    await page.evaluate(ARM_INTERACTION, want)
    await action()
    await page.wait_for_function(INTERACTION_DONE, timeout=timeout_ms, polling=50)
    return await page.evaluate(INTERACTION_SECONDS)


async def timed_image_change(page, action, timeout_ms: float) -> float:
    """Seconds from ``action()`` until the first image on the page has a new src."""
    before = await page.evaluate(f"() => {{ const i = document.querySelector('{IMG}'); "
                                 "return i ? i.getAttribute('src') : ''; }")
    return await timed(page, {"src": before}, action, timeout_ms)


async def go_to(page, title: str, timeout_ms: float) -> float:
    """Seconds from the click on a navigation link until the page's title is drawn."""
    link = page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first
    dt = await timed(page, {"title": title}, link.click, timeout_ms)
    await wait_idle(page, timeout_ms)
    return dt


async def explore_session(browser, url: str, i: int, deadline: float, timings: list, failures: list,
                          think: float = 0.0) -> bool:
    """One user's exploration in its own browser context; records (kind, seconds) into ``timings``.
    Between interactions the user looks at the result for ``think`` seconds on average (0.5x to
    1.5x, seeded by the session's number)."""
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    step = "open"
    rng = random.Random(i)

    async def look():
        if think > 0:
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))

    def left_ms() -> float:
        return max(1000.0, (deadline - time.monotonic()) * 1000)

    try:
        t = time.perf_counter()
        await page.goto(url, wait_until="domcontentloaded", timeout=left_ms())
        await page.locator('[data-testid="stSidebarNav"]').wait_for(state="visible", timeout=left_ms())
        await page.locator(IMG).first.wait_for(state="visible", timeout=left_ms())
        await wait_idle(page, left_ms())
        timings.append(("open the app", time.perf_counter() - t))
        await look()

        step = "resample"
        resample = page.get_by_role("button", name="Resample")
        for _ in range(2):
            timings.append(("Sample: resample", await timed_image_change(page, resample.click, left_ms())))
            await wait_idle(page, left_ms())
            await look()

        step = "traverse"
        timings.append(("switch page", await go_to(page, "Traverse", left_ms())))
        await look()
        thumb = page.locator(SLIDER_THUMB).nth(i % 4)                 # sessions move different units
        await thumb.focus()
        for key in ("ArrowRight", "ArrowRight", "ArrowLeft"):
            timings.append(("Traverse: slider", await timed_image_change(page, lambda: thumb.press(key), left_ms())))
            await wait_idle(page, left_ms())
            await look()

        step = "latent map"
        t = time.perf_counter()
        await page.locator('[data-testid="stSidebarNavLink"]', has_text="Latent map").first.click()
        await page.locator(f'{MAIN} [data-testid="stPlotlyChart"]').first.wait_for(state="visible",
                                                                                     timeout=left_ms())
        timings.append(("Latent map: chart", time.perf_counter() - t))
        await wait_idle(page, left_ms())

        step = "check"
        problems = await page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').all_inner_texts()
        if problems:
            failures.append(f"session {i}: error on the page: {problems[0][:200]}")
            return False
        return True
    except Exception as e:                    # a timeout or a missing element: this session failed
        failures.append(f"session {i} failed at {step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        return False
    finally:
        await ctx.close()


async def drive(url: str, n: int, seconds: float, stagger: float, think: float = 0.0) -> tuple[list, list, list]:
    from playwright.async_api import async_playwright

    timings, failures = [], []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            deadline = time.monotonic() + seconds

            async def one(i):
                await asyncio.sleep(i * stagger)                     # users arrive over a few seconds
                return await explore_session(browser, url, i, deadline, timings, failures, think)

            try:
                ok = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), seconds + 30)
            except asyncio.TimeoutError:
                ok = [False] * n
                failures.append(f"the run passed its limit of {seconds:g} s")
        finally:
            await browser.close()
    return list(ok), timings, failures


# ---------------------------------------------------------------------------------------------


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10, help=f"concurrent browser sessions (at most {MAX_SESSIONS})")
    ap.add_argument("--seconds", type=float, default=120, help=f"time limit of the sessions (at most {MAX_SECONDS})")
    ap.add_argument("--settle", type=float, default=30, help="seconds after the sessions close before 'after'")
    ap.add_argument("--stagger", type=float, default=0.5, help="seconds between session starts")
    ap.add_argument("--think", type=float, default=0.0,
                    help="mean seconds a user looks at a result before the next interaction (0: none, a stress test)")
    ap.add_argument("--no-warm-up", action="store_true", help="skip the single session that fills the caches first")
    args = ap.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS:
        ap.error(f"--sessions must be between 1 and {MAX_SESSIONS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        ap.error(f"--seconds must be in (0, {MAX_SECONDS}]")
    if chromium_path() is None:
        print("Chromium is not installed (apt-get install chromium); this benchmark never downloads a browser.")
        return 2

    # Many sessions on one server: measure it as the public Space runs it, with torch on one thread.
    # bench/server_timing times every script run inside the server (its sitecustomize hook).
    run_log = Path(tempfile.mkstemp(prefix="vae-load-runs-", suffix=".txt")[1])
    hook = str(Path(__file__).resolve().parent / "server_timing")
    env = {"VAE_EXPLORER_TORCH_THREADS": "1", "VAE_BENCH_RUN_LOG": str(run_log),
           "PYTHONPATH": os.pathsep.join(filter(None, [hook, os.environ.get("PYTHONPATH")]))}
    with streamlit_server(max_seconds=20, extra_env=env) as url:
        pid = server_pid(int(url.rsplit(":", 1)[1]))
        if pid is None:
            print("could not find the server process")
            return 2
        start = rss_mb(pid)
        warm = start
        if not args.no_warm_up:
            # One session first: loading the model, the dataset and the codes are process-wide caches,
            # paid once per server, not per session.
            ok, _, fails = asyncio.run(drive(url, 1, args.seconds, 0))
            if not all(ok):
                print("warm-up session failed:", *fails, sep="\n  ")
            time.sleep(3)
            warm = rss_mb(pid)
        run_log.write_text("")                           # only the N sessions' runs from here on
        t0 = time.monotonic()
        with Watch(pid) as watch:
            ok, timings, failures = asyncio.run(drive(url, args.sessions, args.seconds, args.stagger, args.think))
        wall = time.monotonic() - t0
        peak = watch.peak
        time.sleep(args.settle)
        after = rss_mb(pid)

    runs = [float(w) + float(r) for w, r, *_ in (line.split() for line in run_log.read_text().splitlines() if line)]
    if os.environ.get("VAE_BENCH_KEEP_RUN_LOG"):
        print(f"server run log kept: {run_log}")
    else:
        run_log.unlink(missing_ok=True)
    n = args.sessions
    kinds = sorted({k for k, _ in timings}, key=[k for k, _ in timings].index)
    interactions = [s for k, s in timings if k not in ("open the app", "Latent map: chart")]
    print(f"\n## Load test: {n} concurrent browser session(s), {os.cpu_count()} CPU cores, "
          f"{wall:.1f} s wall, think time {args.think:g} s\n")
    print("| measure | value |\n|---|---|")
    print(f"| sessions succeeded | {sum(ok)}/{n} ({100 * sum(ok) / n:.0f}%) |")
    print(f"| interactions (resample, slider, page switch) p50 / p95 | "
          f"{1000 * statistics.median(interactions) if interactions else float('nan'):.0f} ms / "
          f"{1000 * percentile(interactions, 95):.0f} ms (n={len(interactions)}) |")
    for k in kinds:
        xs = [s for kk, s in timings if kk == k]
        print(f"| {k} p50 / p95 | {1000 * statistics.median(xs):.0f} ms / {1000 * percentile(xs, 95):.0f} ms "
              f"(n={len(xs)}) |")
    if runs:
        print(f"| server: request to end of a script run, p50 / p95 | {1000 * statistics.median(runs):.0f} ms / "
              f"{1000 * percentile(runs, 95):.0f} ms (n={len(runs)} runs) |")
    cores = os.cpu_count() or 1
    print(f"| CPU time: server / browsers (of {cores * wall:.0f} core-seconds) | {watch.cpu('server'):.1f} s / "
          f"{watch.cpu('browsers'):.1f} s |")
    print(f"| server RSS at start / after warm-up session | {start:.0f} MB / {warm:.0f} MB |")
    print(f"| server RSS peak during the sessions | {peak:.0f} MB (+{peak - warm:.0f} MB, "
          f"{(peak - warm) / n:.1f} MB a session) |")
    print(f"| server RSS {args.settle:g} s after they closed | {after:.0f} MB ({after - warm:+.0f} MB vs warm, "
          f"{after - start:+.0f} MB vs start) |")
    if failures:
        print("\nFailures:")
        for f in failures:
            print(f"- {f}")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
