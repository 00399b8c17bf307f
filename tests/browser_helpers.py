"""The real-browser harness shared by tests/test_browser.py, bench/browser_latency.py and
docs/make_screenshots.py: start `streamlit run app.py` on a free local port, launch Debian's
Chromium through Playwright (never a downloaded browser), and small page helpers.

Importable as ``tests.browser_helpers`` from the repository root (pytest's rootdir, and
``python -m bench...``/``python -m docs...`` put the root on sys.path).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent

# The background-networking flags matter on a closed network: without them Chromium's own
# connections (updates, sync, QUIC probes) are refused and can stall page loads.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MISSING_CHROMIUM = ("Debian's Chromium is not installed (.ci/run installs it: apt-get install chromium); "
                    "the real-browser test needs it and never downloads a browser.")

# The navigation links' titles, as app.py names the pages, and the file name each page's screenshot gets.
PAGES = {"Sample": "sample", "Traverse": "traverse", "Interpolate": "interpolate", "Latent map": "latent_map",
         "Train": "train", "Analyze": "analyze"}


def chromium_path() -> str | None:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def streamlit_server(max_seconds: float = 20, timeout: float = 90, extra_env: dict | None = None,
                     port: int | None = None, log_sink: list | None = None):
    """Run ``streamlit run app.py`` on ``port`` (a free one by default); yields its URL; always ends
    it (and its children). ``log_sink`` receives the server's log lines once it has ended."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    runs = tempfile.mkdtemp(prefix="vae-browser-runs-")
    env = {**os.environ,
           "VAE_EXPLORER_MAX_SECONDS": str(max_seconds),   # a training run cannot run long
           "VAE_EXPLORER_RUNS_DIR": runs,                   # nothing is saved into the checkout
           "VAE_EXPLORER_TORCH_THREADS": "0",               # the local default (the AppTest helpers set
           "HF_HUB_OFFLINE": "1",                           # it in this process too); the Space sets 1
           **(extra_env or {})}
    log = tempfile.TemporaryFile()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    # A session of its own, so the whole process group (streamlit and anything it spawns) can be ended.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.poll()}")
        return _healthy(url)

    try:
        try:
            wait_for(up, timeout, f"{url}/_stcore/health")
        except AssertionError as e:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"streamlit did not answer {url}/_stcore/health ({e}):\n{tail}") from None
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if log_sink is not None:
            log.seek(0)
            log_sink.extend(log.read().decode(errors="replace").splitlines())
        log.close()
        shutil.rmtree(runs, ignore_errors=True)


def launch_chromium(playwright):
    """Headless Debian Chromium (no Playwright browser download); None when it is not installed."""
    path = chromium_path()
    if path is None:
        return None
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)


# ---------------------------------------------------------------------------------------------
# Page helpers

APP = '[data-testid="stApp"]'
MAIN = '[data-testid="stMain"]'
EXCEPTION = '[data-testid="stException"]'
ERROR = '[data-testid="stAlertContentError"]'
# Streamlit 1.67's slider is react-aria: the focusable thumb is a visually hidden range input
# (role "slider"); older versions drew a div with role="slider". Either matches.
SLIDER_THUMB = f'{MAIN} [data-testid="stSlider"] :is(input[type="range"], [role="slider"])'


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until no script run is in progress (the app's own flag, and the status widget gone)."""
    from playwright.sync_api import expect

    expect(page.locator(f'{APP}[data-test-script-state="running"]')).to_have_count(0, timeout=timeout)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_be_hidden(timeout=timeout)


def open_app(page, url: str, timeout: float = 90_000) -> None:
    from playwright.sync_api import expect

    page.goto(url, wait_until="domcontentloaded")
    expect(page.locator('[data-testid="stSidebarNav"]')).to_be_visible(timeout=timeout)
    expect(page.locator(f'{MAIN} h1')).to_be_visible(timeout=timeout)
    wait_idle(page, timeout)


def nav_titles(page) -> list[str]:
    return [t.strip() for t in page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()]


def go_to(page, title: str, timeout: float = 90_000) -> None:
    """Click a page's navigation link and wait until its title is drawn and the run is over."""
    from playwright.sync_api import expect

    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
    expect(page.locator(f'{MAIN} h1', has_text=title)).to_be_visible(timeout=timeout)
    wait_idle(page, timeout)


def images_loaded(page, timeout: float = 60_000) -> None:
    """Wait until every image in the main area has loaded its current src (the browser fetches
    each after the DOM changes), so a screenshot shows them."""
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img')]
        .every(el => el.complete && el.naturalWidth > 0)""", timeout=timeout)


def problems(page) -> list[str]:
    """Texts of exception boxes and error alerts on the page (an empty list when all is well)."""
    return page.locator(f"{EXCEPTION}, {ERROR}").all_inner_texts()


def decoded_image(page):
    """The Traverse page's image decoded from the sliders (the first image on the page)."""
    return page.locator(f'{MAIN} [data-testid="stImage"] img').first


def press_and_time(page, thumb, key: str, timeout: float = 30_000) -> float:
    """Press ``key`` on a slider thumb; seconds from the key going down until the decoded image's
    ``src`` changed in the page (its media URL is a content hash, so it changes with the pixels).
    Both moments are stamped by the page's own clock (ARM_INTERACTION)."""
    page.evaluate(ARM_INTERACTION, {"src": decoded_image(page).get_attribute("src")})
    thumb.press(key)
    page.wait_for_function(INTERACTION_DONE, timeout=timeout, polling="raf")
    return page.evaluate(INTERACTION_SECONDS)


# Stamps one interaction with the page's own clock, so that the harness's round trips (Playwright's
# driver, and under load a busy client) are not counted: from the first pointerdown or keydown
# after arming to the first DOM change after it that shows the result, which is the first image
# in the main area getting a new src ({"src": before}) or the page's h1 reading the title
# ({"title": title}). Used with INTERACTION_DONE and INTERACTION_SECONDS.
ARM_INTERACTION = """want => {
    const shown = () => {
        const main = document.querySelector('[data-testid="stMain"]');
        if (!main) return false;
        if (want.title !== undefined) {
            const h = main.querySelector('h1');
            return !!h && h.textContent.includes(want.title);
        }
        const img = main.querySelector('[data-testid="stImage"] img');
        return !!img && img.getAttribute('src') !== want.src;
    };
    window.__interaction?.stop();                        // an earlier arming that never finished
    const input = new AbortController();
    const t = window.__interaction = {act: null, done: null, stop: () => { input.abort(); obs.disconnect(); }};
    const start = () => { if (t.act === null) { t.act = performance.now(); input.abort(); } };
    for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, start, {capture: true, signal: input.signal});
    const obs = new MutationObserver(() => {
        if (t.act !== null && t.done === null && shown()) { t.done = performance.now(); t.stop(); }
    });
    obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true,
                                attributeFilter: ['src']});
}"""
INTERACTION_DONE = "() => window.__interaction.done !== null"
INTERACTION_SECONDS = "() => (window.__interaction.done - window.__interaction.act) / 1000"


def screenshot(page, path, full_page: bool = True) -> None:
    """Save a PNG of the page; ``full_page`` grows the viewport to the app's scroll height first
    (Streamlit scrolls inside its own container, so Playwright's full_page alone sees one screen)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    if full_page:
        height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
            '[data-testid="stMain"], [data-testid="stAppViewContainer"], [data-testid="stMainBlockContainer"]')]
            .map(e => e.scrollHeight), window.innerHeight)""")
        page.set_viewport_size({"width": size["width"], "height": min(int(height), 6000)})
        # Two animation frames: the layout at the new size is painted (no rerun happens).
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    try:
        page.screenshot(path=str(path))
    finally:
        if full_page:
            page.set_viewport_size(size)
