"""Traverse in a real browser: from a slider key press to the new decoded image in the page.

    python -m bench.browser_latency              # 30 moves, ArrowRight/ArrowLeft alternating
    python -m bench.browser_latency --moves 60

Starts `streamlit run app.py` and Debian's headless Chromium (tests/browser_helpers.py, shared
with tests/test_browser.py); both moments are stamped by the page's clock (keydown, and the
decoded image's src changing). The server-side rerun time alone is bench/app_latency.py's.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from tests import browser_helpers as bh

TARGET_MS = 250


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def measure(moves: int, warm: int = 4) -> list[float]:
    from playwright.sync_api import sync_playwright

    with bh.streamlit_server() as url, sync_playwright() as p:
        browser = bh.launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            bh.open_app(page, url)
            bh.go_to(page, "Traverse")
            thumb = page.locator(bh.SLIDER_THUMB).first
            thumb.focus()
            times = []
            for i in range(warm + moves):
                dt = bh.press_and_time(page, thumb, "ArrowRight" if i % 2 == 0 else "ArrowLeft")
                bh.wait_idle(page)           # one move at a time: each timing is one full round trip
                if i >= warm:
                    times.append(1000 * dt)
            return times
        finally:
            browser.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=30)
    args = ap.parse_args(argv)
    if bh.chromium_path() is None:
        print(bh.MISSING_CHROMIUM, file=sys.stderr)
        return 2
    times = measure(args.moves)
    p50, p95, worst = statistics.median(times), percentile(times, 95), max(times)
    print(f"Traverse slider, key press to updated image in Chromium ({len(times)} moves):")
    print("| p50 (ms) | p95 (ms) | max (ms) | target (ms) |")
    print("|---:|---:|---:|---:|")
    print(f"| {p50:.0f} | {p95:.0f} | {worst:.0f} | {TARGET_MS} |")
    print(f"p95 {'meets' if p95 <= TARGET_MS else 'misses'} the {TARGET_MS} ms target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
