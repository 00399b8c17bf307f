"""In a real browser: a link's hostile names and values are shown as text, and nothing is fetched elsewhere.

Playwright drives Debian's headless Chromium against `streamlit run app.py` (tests/browser_helpers.py);
the test records every request the page makes and checks that each one goes to the app's own server
(or to the font server of Streamlit's own icons), never to a host the link names.
"""
from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest

from tests import browser_helpers as bh

pytest.importorskip("playwright.sync_api", reason="the real-browser test needs playwright (requirements.txt)")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

HOSTILE = {
    "**Your session expired.** [Log in again](https://evil.example/login)": "1",
    "model": "[Fix it here](https://evil.example/x)",
    "data": "![x](https://evil.example/pixel.png)",
    "<img src=https://evil.example/tag.png>": "<b>bold</b> _em_ `tick`",
}


def test_a_hostile_link_is_shown_as_text_and_makes_no_request_to_another_host():
    if bh.chromium_path() is None:
        pytest.skip(bh.MISSING_CHROMIUM)
    with bh.streamlit_server(port=int(__import__("os").environ.get("VAE_TEST_PORT", "0")) or None) as url, \
            sync_playwright() as p:
        browser = bh.launch_chromium(p)
        try:
            page = browser.new_page()
            requested = []
            page.on("request", lambda r: requested.append(r.url))
            query = "&".join(f"{quote(k)}={quote(v)}" for k, v in HOSTILE.items())
            page.goto(f"{url}/?{query}", wait_until="domcontentloaded")
            warning = page.locator(f'{bh.MAIN} [data-testid="stAlertContentWarning"]')
            expect(warning).to_be_visible(timeout=90_000)
            bh.wait_idle(page, 90_000)
            text = warning.inner_text().replace("\u200b", "")    # (zero-width spaces keep autolinks away)
            assert "**Your session expired.** [Log in again](https://evil.example/login)" in text
            assert "[Fix it here](https://evil.example/x)" in text
            assert warning.locator("a, img, strong, em, b, code").count() == 0      # no markup rendered
            assert page.locator('a[href*="evil.example"], img[src*="evil.example"]').count() == 0
            own = urlsplit(url).netloc
            elsewhere = [u for u in requested if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                         and urlsplit(u).netloc != own]
            # The app's own page icon comes from Google's font server (Streamlit's material icons); nothing
            # else leaves the server, and nothing goes where the link points.
            assert [u for u in elsewhere if urlsplit(u).netloc != "fonts.gstatic.com"] == []
        finally:
            browser.close()
