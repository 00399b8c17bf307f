"""The README's screenshots: one 1280x800 PNG per page of the explorer, in use.

    python -m docs.make_screenshots                     # writes docs/screenshots/*.png
    python -m docs.make_screenshots --out /tmp/shots

Drives `streamlit run app.py` with Debian's headless Chromium (tests/browser_helpers.py).
Takes about a minute or two on 2 cores (UMAP's first map compiles numba code).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tests import browser_helpers as bh

OUT = Path(__file__).resolve().parent / "screenshots"
LONG = 240_000


def shoot(out: Path) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def snap(page, name):
        bh.wait_idle(page, LONG)
        assert not bh.problems(page), (name, bh.problems(page))
        path = out / f"{name}.png"
        page.locator(bh.MAIN).evaluate("el => el.scrollTo(0, 0)")
        bh.screenshot(page, path, full_page=False)
        written.append(path)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

    with bh.streamlit_server(max_seconds=60) as url, sync_playwright() as p:
        browser = bh.launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            bh.open_app(page, url, LONG)
            titles = [t.splitlines()[-1].strip() for t in bh.nav_titles(page)]

            snap(page, "sample")

            bh.go_to(page, "Traverse", LONG)
            thumb = page.locator(bh.SLIDER_THUMB).first
            thumb.focus()
            for _ in range(30):                       # z's most informative unit, well off its base value
                thumb.press("ArrowRight")
            bh.wait_idle(page, LONG)
            page.evaluate("document.activeElement && document.activeElement.blur()")   # no focus ring
            snap(page, "traverse")

            bh.go_to(page, "Interpolate", LONG)
            page.get_by_role("radio", name="spherical").check(force=True)
            bh.wait_idle(page, LONG)
            snap(page, "interpolate")

            bh.go_to(page, "Latent map", LONG)
            page.locator('[data-testid="stRadio"] label', has_text="UMAP").click()
            expect(page.get_by_text("is running in the background")).to_be_hidden(timeout=LONG)
            expect(page.get_by_text(re.compile(r"images of .*, umap", re.I))).to_be_visible(timeout=LONG)
            snap(page, "latent_map")

            bh.go_to(page, "Train", LONG)
            latent = page.get_by_role("spinbutton", name="Latent size")
            latent.fill("2")
            latent.press("Enter")
            bh.wait_idle(page, LONG)
            epochs = page.get_by_role("spinbutton", name=re.compile(r"^Epochs"))
            epochs.fill("5")
            epochs.press("Enter")
            bh.wait_idle(page, LONG)
            page.locator('[data-testid="stButton"] button', has_text="Start").click()
            expect(page.get_by_text(re.compile(r"^finished: step"))).to_be_visible(timeout=LONG)
            expect(page.get_by_text("What next")).to_be_visible(timeout=LONG)
            snap(page, "train")

            if "Analyze" in titles:
                bh.go_to(page, "Analyze", LONG)
                snap(page, "analyze")

            if "Augment" in titles:
                bh.go_to(page, "Augment", LONG)
                snap(page, "augment")

            if "Class & style" in titles:                 # last: it switches the sidebar to the shipped M2
                bh.go_to(page, "Class & style", LONG)
                page.locator('[data-testid="stButton"] button', has_text="Open mnist-m2").click()
                bh.wait_idle(page, LONG)
                snap(page, "classes")
        finally:
            browser.close()
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if bh.chromium_path() is None:
        print(bh.MISSING_CHROMIUM, file=sys.stderr)
        return 2
    shoot(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
