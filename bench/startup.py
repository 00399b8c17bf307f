"""Start-up: from `streamlit run app.py` to the first page being interactive in a browser.

    python -m bench.startup              # 5 cold server starts for each kind of visit
    python -m bench.startup --runs 9

Chromium is launched first (a user's browser is already open). Then, for each run, the clock
starts as `streamlit run` is spawned (tests/browser_helpers.streamlit_server); the page is
loaded as soon as the server answers its health check, and the clock stops when the Sample page
is interactive: its grid of samples is decoded, its script run is over and the Resample button
takes a click. That moment is stamped by the page's own clock, checked on every animation frame
(Playwright's `expect` polls with growing gaps, which added up to 0.4 s to earlier readings).

It also prints what the server logged of its own start (explorer.startup): how long the
background import of torch and the explorer took in each run.

Each run is a new server process with the operating system's file cache warm, as on a machine
where the app was installed and has run before. Two kinds of visit:
- first: a new browser profile each time, so Streamlit's front end (70 script files) is fetched
  and compiled from nothing, as on a user's very first visit;
- return: one profile and one port for every run, so the browser has the front end cached, as
  when a user starts the app again.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import time

from tests import browser_helpers as bh

TARGET_S = 3.0

# The Sample page is ready: no run in progress, the grid decoded, Resample enabled. Returns the
# wall-clock time in milliseconds (the same clock as Python's time.time on this machine).
_READY = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') === 'running') return false;
    const status = document.querySelector('[data-testid="stStatusWidget"]');
    if (status && status.getClientRects().length) return false;
    const img = document.querySelector('[data-testid="stMain"] [data-testid="stImage"] img');
    if (!img || !img.complete || img.naturalWidth === 0) return false;
    const resample = [...document.querySelectorAll('[data-testid="stMain"] button')]
        .find(b => b.innerText.trim() === 'Resample');
    return resample && !resample.disabled ? Date.now() : false;
}"""


PRELOAD = re.compile(r"preload: torch and the explorer imported in ([\d.]+) s")


def one_start(context, port: int | None, log: list) -> float:
    from playwright.sync_api import expect

    t0 = time.time()
    with bh.streamlit_server(port=port, log_sink=log) as url:
        page = context.new_page()
        try:
            page.goto(url, wait_until="commit")
            ready_ms = page.wait_for_function(_READY, polling="raf", timeout=60_000).json_value()
            # The same moment, seen by Playwright: nothing on the page is wrong.
            expect(page.get_by_role("button", name="Resample")).to_be_enabled()
            if bh.problems(page):
                raise RuntimeError(f"the Sample page shows a problem: {bh.problems(page)}")
            return ready_ms / 1000 - t0
        finally:
            page.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="cold server starts for each kind of visit")
    args = ap.parse_args(argv)
    if bh.chromium_path() is None:
        print(bh.MISSING_CHROMIUM, file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    viewport = {"width": 1280, "height": 800}
    rows, log = {}, []
    with sync_playwright() as p:
        browser = bh.launch_chromium(p)
        try:
            browser.new_page().close()                      # the browser itself is up before the clock starts
            first = []
            for _ in range(args.runs):
                with contextlib.closing(browser.new_context(viewport=viewport)) as context:
                    first.append(one_start(context, None, log))
            rows["first visit"] = first
            port = bh.free_port()
            with contextlib.closing(browser.new_context(viewport=viewport)) as context:
                one_start(context, port, [])                # fills the browser's cache; not counted
                rows["return visit"] = [one_start(context, port, log) for _ in range(args.runs)]
        finally:
            browser.close()
    print(f"`streamlit run app.py` to an interactive Sample page ({args.runs} cold server starts each):")
    print("| visit | median (s) | worst (s) | target (s) |\n|---|---:|---:|---:|")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times):.2f} | {max(times):.2f} | {TARGET_S:g} |")
    preload = [float(m.group(1)) for line in log if (m := PRELOAD.search(line))]
    if preload:
        print(f"server log: the background import of torch and the explorer took {statistics.median(preload):.2f} s "
              f"(median of {len(preload)} starts; worst {max(preload):.2f} s)")
    worst = max(max(t) for t in rows.values())
    print(f"worst {worst:.2f} s {'meets' if worst <= TARGET_S else 'misses'} the {TARGET_S:g} s target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
