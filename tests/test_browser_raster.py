"""The latent map above its point budget, in a real browser: a server-drawn raster, and a box on it
selects exactly the images whose points lie inside the box.

A server of its own, whose WebGL budget is 1,000 points, so the default 5,000-point map is a raster.
"""
from __future__ import annotations

import re

import pytest

from tests import browser_helpers as bh

pytest.importorskip("playwright.sync_api", reason="the real-browser test needs playwright (requirements.txt)")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

LONG = 90_000
ARTIFACTS = bh.ROOT / "test-artifacts" / "browser"
BOX = """() => {
    const gd = document.querySelector('[data-testid="stMain"] .js-plotly-plot');
    const sel = gd._fullLayout.selections || [];
    const b = sel[sel.length - 1];
    return b ? [b.x0, b.x1, b.y0, b.y1] : null;
}"""
IMAGES = """() => document.querySelector('[data-testid="stMain"] .js-plotly-plot')._fullLayout.images.length"""


def server_points():
    """The 5,000 points the app maps by default, computed here the way the page does (jobs.codes_for,
    then PCA): mnist-mlp's posterior means of the seeded subset of mnist-5k."""
    from vae_core import load_dataset
    from vae_core.latent import explore, projections as project
    from vae_core.io import loading

    model = loading.load_model("checkpoints/mnist-mlp")
    model = model[0] if isinstance(model, tuple) else model
    sub, _ = load_dataset("mnist-5k", "all").seeded_subset(5000, seed=0)
    return project.pca(explore.encode_dataset(model, sub))


def test_a_box_on_the_density_raster_selects_the_images_inside_it():
    if bh.chromium_path() is None:
        pytest.skip(bh.MISSING_CHROMIUM)
    with bh.streamlit_server(extra_env={"VAE_EXPLORER_MAX_MAP_POINTS": "1000"}) as url, sync_playwright() as p:
        browser = bh.launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            bh.open_app(page, url)
            bh.go_to(page, "Latent map", timeout=LONG)
            expect(page.get_by_text("drawn as a density raster")).to_be_visible(timeout=LONG)
            plot = page.locator(f"{bh.MAIN} .js-plotly-plot .nsewdrag").first
            expect(plot).to_be_visible(timeout=LONG)
            bh.wait_idle(page)
            assert page.evaluate(IMAGES) == 1                                  # the raster, one image
            page.locator(f"{bh.MAIN} .js-plotly-plot").first.hover()           # the toolbar shows on hover
            page.locator(f'{bh.MAIN} .modebar-btn[data-title="Box Select"]').first.click()
            box = plot.bounding_box()
            x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.25
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + box["width"] * 0.4, y0 + box["height"] * 0.5, steps=8)
            page.mouse.up()
            heading = page.locator(f"{bh.MAIN} h3", has_text="selected")
            expect(heading).to_be_visible(timeout=LONG)
            bh.wait_idle(page)
            bx0, bx1, by0, by1 = page.evaluate(BOX)
            pts = server_points()
            inside = ((pts[:, 0] >= min(bx0, bx1)) & (pts[:, 0] <= max(bx0, bx1)) &
                      (pts[:, 1] >= min(by0, by1)) & (pts[:, 1] <= max(by0, by1)))
            expected = int(inside.sum())
            assert expected > 100, expected
            assert heading.inner_text().startswith(f"{expected:,} images selected"), (heading.inner_text(), expected)
            expect(page.get_by_text(re.compile(rf"Images 1 to 10 of {expected:,}"))).to_be_visible()
            expect(page.locator(bh.EXCEPTION)).to_have_count(0)
            assert not bh.problems(page), bh.problems(page)
            bh.screenshot(page, ARTIFACTS / "latent_map_raster_box.png")
        finally:
            browser.close()
