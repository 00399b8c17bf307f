"""Server memory after a real browser walks every page with every shipped checkpoint.

    python -m bench.memory_walk                    # UMAP on the Latent map of each model; t-SNE once
    python -m bench.memory_walk --maps none        # the pages' default views only
    python -m bench.memory_walk --models mnist-vq --per-page   # one model, a reading after each page

Starts `streamlit run app.py` as a user would (start-up tuning on: preload, heap freeze, UMAP
warm-up), opens it in headless Debian Chromium (tests.browser_helpers), and for each shipped
checkpoint picks it in the sidebar with the dataset it was trained on, then opens Sample,
Traverse, Interpolate, Latent map (waiting for the UMAP map of 5,000 codes, and once for a
t-SNE map), Train and Analyze (its default analyses, on 1,000 images). The server's resident
memory (VmRSS of the process and its children, from /proc) is read after each model's walk,
at the end, and ``--settle`` seconds later. Target (issue 17): under 800 MB after the walk.
"""
from __future__ import annotations

import argparse
import sys
import time

from bench.load_test import rss_mb, server_pid
from tests import browser_helpers as bh

TARGET_MB = 800
LONG = 180_000          # ms: a page's run on a busy machine
MAP_TIMEOUT = 900_000   # ms: a UMAP or t-SNE map of 5,000 codes on a machine shared with other work


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the sidebar's selectbox ``label`` and wait for the rerun to end."""
    box = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name=label)
    if box.input_value() == option:
        return
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    bh.wait_idle(page, LONG)


def wait_for_map(page, method: str) -> None:
    """Pick ``method`` on the Latent map and wait until its map (not the stand-in PCA) is drawn."""
    from playwright.sync_api import expect

    page.locator(bh.MAIN).get_by_text(method, exact=True).click()
    caption = page.locator(f'{bh.MAIN} [data-testid="stCaptionContainer"]', has_text="images of").last
    expect(caption).to_contain_text(f", {method}", timeout=MAP_TIMEOUT)
    bh.wait_idle(page, LONG)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", default="umap", choices=["umap", "none"],
                    help="umap: a UMAP map per model and one t-SNE map (default); none: default views only")
    ap.add_argument("--models", nargs="+", help="walk only these shipped checkpoints (default: all of them)")
    ap.add_argument("--per-page", action="store_true", help="a reading after every page, not only after each model")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds after the walk before the last reading")
    args = ap.parse_args(argv)
    if bh.chromium_path() is None:
        print(bh.MISSING_CHROMIUM)
        return 2
    import vae_core
    from playwright.sync_api import sync_playwright

    names = args.models or vae_core.shipped_checkpoints()
    readings: list[tuple[str, float]] = []
    t0 = time.monotonic()
    with bh.streamlit_server(max_seconds=20) as url, sync_playwright() as pw:
        pid = server_pid(int(url.rsplit(":", 1)[1]))
        if pid is None:
            print("could not find the server process")
            return 2
        readings.append(("server up, no visitor yet", rss_mb(pid)))
        browser = bh.launch_chromium(pw)
        peak = 0.0
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            bh.open_app(page, url, LONG)
            readings.append(("first page drawn", rss_mb(pid)))
            tsne_done = args.maps == "none"
            for name in names:
                choose(page, "Checkpoint", name)
                data = vae_core.open_model(name)[1].trained_on or "mnist-5k"
                choose(page, "Dataset", data)
                for title in bh.PAGES:
                    bh.go_to(page, title, LONG)
                    if title == "Latent map" and args.maps == "umap":
                        wait_for_map(page, "UMAP")
                        if not tsne_done:
                            wait_for_map(page, "t-SNE")
                            tsne_done = True
                    problems = bh.problems(page)
                    if problems:
                        print(f"{name}, {title}: {problems[0][:300]}")
                    peak = max(peak, rss_mb(pid))
                    if args.per_page:
                        readings.append((f"{name}: {title}", rss_mb(pid)))
                readings.append((f"after every page with {name} ({data})", rss_mb(pid)))
        finally:
            browser.close()
        walked = rss_mb(pid)
        time.sleep(args.settle)
        settled = rss_mb(pid)
    print(f"\n## Server memory over a walk of every page with every shipped checkpoint "
          f"({len(names)} models, maps: {args.maps}, {time.monotonic() - t0:.0f} s)\n")
    print("| moment | server RSS (MB) |\n|---|---:|")
    for what, mb in readings:
        print(f"| {what} | {mb:.0f} |")
    print(f"| peak during the walk | {peak:.0f} |")
    print(f"| end of the walk | {walked:.0f} |")
    print(f"| {args.settle:g} s later | {settled:.0f} |")
    print(f"\ntarget: under {TARGET_MB} MB after the walk: {'met' if settled < TARGET_MB else 'NOT met'} "
          f"({settled:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
