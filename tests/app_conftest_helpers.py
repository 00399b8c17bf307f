"""Helpers for the AppTest suites (kept out of conftest.py so they never clash with another one)."""
from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
# The app sets torch to one intra-op thread for the whole server process; in a test process that
# would leak into every later test, so the app tests leave torch's threads alone.
os.environ.setdefault("VAE_EXPLORER_TORCH_THREADS", "0")
# No preload, heap freeze or UMAP warm-up in the test process (explorer.startup): AppTest runs the app here.
os.environ.setdefault("VAE_EXPLORER_WARMUP", "0")
APP = str(ROOT / "app.py")


def open_app(page: str | None = None, model: str | None = None, timeout: float = 120) -> AppTest:
    """Run app.py (the whole frame), optionally pick a shipped model, and switch to a page."""
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    if model:
        at.sidebar.selectbox(key="model_shipped").set_value(model).run()
    if page:
        at.switch_page(f"explorer/pages/{page}.py").run()
    return at


def image_urls(at: AppTest) -> list[str]:
    """Media URLs of every st.image on the page; they are content hashes, so they change with the pixels."""
    return [u for img in at.image for u in img.value]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def assert_clean(at: AppTest) -> None:
    """No exception reached the page and no error is shown."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, errors(at)


def png(size=(40, 30), colour="white", mode="RGB", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format=fmt)
    return buf.getvalue()


def plotly_array(value):
    """A Plotly JSON array, plain or typed ({"dtype", "bdata"[, "shape"]}: how Plotly writes numpy arrays)."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return out.reshape([int(s) for s in str(shape).split(",")]) if shape else out
    return np.asarray(value)
