"""The README's screenshots: one 1280x800 PNG per page of the explorer, in use.

    python -m docs.make_screenshots                     # writes docs/screenshots/*.png
    python -m docs.make_screenshots --out /tmp/shots
    python -m docs.make_screenshots --walk test-artifacts/walk   # every page with every shipped model

Drives `streamlit run app.py` with Debian's headless Chromium (tests/browser_helpers.py).
Takes about a minute or two on 2 cores (UMAP's first map compiles numba code); the walk takes
about ten, and saves a full-page PNG of each page with each shipped checkpoint (its name
first, e.g. mnist-vq_analyze.png) for a person to look at.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path

from tests import browser_helpers as bh

OUT = Path(__file__).resolve().parent / "screenshots"
LONG = 240_000


@contextlib.contextmanager
def app_page():
    """(page, navigation titles): a server, a 1280x800 headless Chromium page on the app, both ended after."""
    from playwright.sync_api import sync_playwright

    with bh.streamlit_server(max_seconds=300) as url, sync_playwright() as p:   # a busy machine still finishes the run
        browser = bh.launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            bh.open_app(page, url, LONG)
            yield page, [t.splitlines()[-1].strip() for t in bh.nav_titles(page)]
        finally:
            browser.close()


def shoot(out: Path) -> list[Path]:
    from playwright.sync_api import expect

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def snap(page, name, at: str | None = None):
        bh.wait_idle(page, LONG)
        bh.images_loaded(page, LONG)
        assert not bh.problems(page), (name, bh.problems(page))
        path = out / f"{name}.png"
        page.locator(bh.MAIN).evaluate("el => el.scrollTo(0, 0)")
        if at is not None:                        # a section below the fold: its heading at the top
            page.locator(f"{bh.MAIN} h3", has_text=at).first.evaluate("el => el.scrollIntoView()")
        bh.screenshot(page, path, full_page=False)
        written.append(path)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

    with app_page() as (page, titles):
        snap(page, "intro")                       # the first visit's orientation
        page.get_by_role("button", name="Hide this introduction").click()
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
        b = page.get_by_role("spinbutton", name="Index").nth(1)        # B: a digit of another class (mnist-5k is sorted)
        b.fill("3100")
        b.press("Enter")
        bh.wait_idle(page, LONG)
        page.get_by_role("radio", name="spherical").check(force=True)
        bh.wait_idle(page, LONG)
        snap(page, "interpolate")

        bh.go_to(page, "Latent map", LONG)
        page.locator('[data-testid="stRadio"] label', has_text="UMAP").click()
        expect(page.get_by_text("is running in the background")).to_be_hidden(timeout=LONG)
        expect(page.get_by_text(re.compile(r"images of .*, umap", re.I))).to_be_visible(timeout=LONG)
        snap(page, "latent_map")
        spot = bh.empty_spot(page)                # decode anywhere: a click between the clusters
        bh.hover_spot(page, spot)
        page.mouse.click(spot["px"], spot["py"])
        expect(page.get_by_text(re.compile(r"^decoded at \(")).first).to_be_visible(timeout=LONG)
        snap(page, "latent_map_spot")

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

        # Above the WebGL budget: all 25,000 dSprites as a raster, opened from a link (no server file named)
        base = "/".join(page.url.split("/")[:3])
        page.goto(f"{base}/latent_map?model=dsprites-beta4&data=dsprites&split=all&points=25000&method=PCA"
                  "&colour=posX", wait_until="domcontentloaded")
        expect(page.get_by_text("drawn as a density raster")).to_be_visible(timeout=LONG)
        snap(page, "latent_map_raster")

        # The hierarchical VAE's inspector and the VQ-VAE's codebook explorer.
        choose_model(page, "mnist-hvae")
        bh.go_to(page, "Sample", LONG)
        snap(page, "hvae_resample", at="Resample one layer")
        if "Analyze" in titles:
            choose_model(page, "mnist-vq")
            bh.go_to(page, "Analyze", LONG)
            snap(page, "vq_codebook", at="Codebook")
    return written


def choose_model(page, name: str) -> None:
    box = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Checkpoint")
    box.click()
    page.get_by_role("option", name=name, exact=True).click()
    bh.wait_idle(page, LONG)


def walk(out: Path) -> list[Path]:
    """Every page with every shipped checkpoint, full-page shots; stops at the first error shown."""
    from playwright.sync_api import expect

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with app_page() as (page, titles):
        names = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Checkpoint")
        names.click()
        models = [o.strip() for o in page.get_by_role("option").all_inner_texts()]
        page.keyboard.press("Escape")
        for model in models:
            choose_model(page, model)
            for title in titles:
                bh.go_to(page, title, LONG)
                if title == "Latent map":
                    typed = page.get_by_label("Or show images by index")
                    typed.fill(", ".join(str(i) for i in range(0, 5000, 199)))     # every class
                    typed.press("Enter")
                    expect(page.locator(f"{bh.MAIN} h3", has_text="selected")).to_be_visible(timeout=LONG)
                if title == "Analyze":                  # every analysis this model and dataset have
                    while True:
                        page.get_by_label("Analyses").click()
                        options = page.get_by_role("option")
                        if options.count() == 0 or "No results" in options.first.inner_text():
                            page.keyboard.press("Escape")
                            break
                        options.first.click()
                        bh.wait_idle(page, LONG)
                bh.wait_idle(page, LONG)
                bh.images_loaded(page, LONG)
                problems = bh.problems(page)
                if problems:
                    raise AssertionError(f"{model} on {title}: {problems}")
                path = out / f"{model}_{bh.PAGES.get(title, title.lower())}.png"
                bh.screenshot(page, path)
                written.append(path)
                print(f"wrote {path}", flush=True)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--walk", type=Path, default=None, metavar="FOLDER",
                    help="instead: every page with every shipped checkpoint, full-page shots into FOLDER")
    args = ap.parse_args(argv)
    if bh.chromium_path() is None:
        print(bh.MISSING_CHROMIUM, file=sys.stderr)
        return 2
    if args.walk is not None:
        walk(args.walk)
    else:
        shoot(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
