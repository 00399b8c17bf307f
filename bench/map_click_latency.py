"""Decode anywhere on the latent map, in a real browser: from a click on empty map space to the
decoded image in the page, for each shipped MNIST model.

    python -m bench.map_click_latency                 # 20 clicks a model, every shipped MNIST model, PCA
    python -m bench.map_click_latency --clicks 40 --models mnist-mlp --method UMAP

Starts `streamlit run app.py` and Debian's headless Chromium (tests/browser_helpers.py). Each click
is on another of the emptiest spots of the map (far from every image's point), so each click
decodes a new image; both moments are stamped by the page's own clock (the pointer going
down, and the decoded image's src changing), as bench/browser_latency.py does for Traverse.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from bench.browser_latency import TARGET_MS, percentile
from tests import browser_helpers as bh

MISSED_S = 15          # a click that shows no new image within this is counted as missed, not timed
MODELS = ("mnist-mlp", "mnist-conv", "mnist-cvae", "mnist-vq", "mnist-mlp-2d")


def choose_model(page, name: str) -> None:
    from playwright.sync_api import expect

    box = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Checkpoint")
    box.click()
    page.get_by_role("option", name=name, exact=True).click()
    bh.wait_idle(page, 120_000)
    expect(box).to_have_value(name)


def click_and_time(page, spot: dict, timeout: float = 30_000) -> float:
    """Seconds from the pointer going down on ``spot`` to the decoded image's new src in the page."""
    first = page.locator(f'{bh.MAIN} [data-testid="stImage"] img')
    bh.hover_spot(page, spot)                # as a hand does: Plotly picks the point on the move, not the press
    page.evaluate(bh.ARM_INTERACTION, {"src": first.first.get_attribute("src") if first.count() else None})
    page.mouse.click(spot["px"], spot["py"])
    page.wait_for_function(bh.INTERACTION_DONE, timeout=timeout, polling="raf")
    return page.evaluate(bh.INTERACTION_SECONDS)


def measure(models, method: str, clicks: int, warm: int = 3) -> dict[str, list[float]]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    out = {}
    with bh.streamlit_server() as url, sync_playwright() as p:
        browser = bh.launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            bh.open_app(page, url)
            bh.go_to(page, "Latent map")
            for name in models:
                choose_model(page, name)
                label = "Codes (2-D latent)" if name.endswith("-2d") and method == "PCA" else method
                page.locator(f'{bh.MAIN} [data-testid="stRadio"] label', has_text=label).first.click()
                bh.wait_idle(page, 300_000)
                expect(page.get_by_text(f"images of mnist-5k, {'posterior means' if '2-D' in label else label}")
                       ).to_be_visible(timeout=300_000)
                bh.wait_idle(page)
                # Each click on a spot never clicked before: Plotly takes a click on a spot it still holds
                # as selected (from an earlier click) as a deselection, and nothing is decoded.
                spots = bh.empty_spots(page, warm + clicks, apart=20)
                times, missed = [], 0
                for i in range(len(spots)):
                    try:
                        dt = click_and_time(page, spots[i], timeout=MISSED_S * 1000)
                    except PlaywrightTimeout:
                        missed, dt = missed + 1, None
                    bh.wait_idle(page)
                    if i >= warm and dt is not None:
                        times.append(1000 * dt)
                out[f"{name} ({label})"] = times, missed
        finally:
            browser.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--method", default="PCA", choices=["PCA", "t-SNE", "UMAP"])
    args = ap.parse_args(argv)
    if bh.chromium_path() is None:
        print(bh.MISSING_CHROMIUM, file=sys.stderr)
        return 2
    results = measure(args.models, args.method, args.clicks)
    print(f"Latent map, click on empty space to decoded image in Chromium ({args.clicks} clicks a model):")
    print("| model (map) | p50 (ms) | p95 (ms) | max (ms) | p95 / target | missed clicks |")
    print("|---|---:|---:|---:|---:|---:|")
    worst = 0.0
    for name, (times, missed) in results.items():
        p95 = percentile(times, 95)
        worst = max(worst, p95)
        print(f"| {name} | {statistics.median(times):.0f} | {p95:.0f} | {max(times):.0f} | {p95 / TARGET_MS:.2f} "
              f"| {missed} |")
    print(f"worst p95 {worst:.0f} ms {'meets' if worst <= TARGET_MS else 'misses'} the {TARGET_MS} ms target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
