"""The frame: sidebar pickers, model summary, navigation, and bad model/dataset input."""
import os
import subprocess
import sys
from pathlib import Path

from streamlit.web.server.app_discovery import discover_asgi_app

from tests.app_conftest_helpers import assert_clean, image_urls, open_app


def test_opens_with_a_shipped_mnist_model():
    at = open_app()
    assert_clean(at)
    assert at.sidebar.radio(key="model_kind").value == "Shipped"
    assert at.sidebar.selectbox(key="model_shipped").value == "mnist-mlp"
    summary = " ".join(m.value for m in at.sidebar.markdown)
    assert "mlp" in summary and "latent 20" in summary and "parameters" in summary and "mnist-5k" in summary
    assert "ELBO (nats per image)" in summary                    # the card's metrics table
    assert not any("Device in use" in c.value for c in at.sidebar.caption)      # the Device box says it, once
    boxes = [b.key for b in at.sidebar.selectbox]
    assert boxes.index("model_shipped") < boxes.index("device")                # the model, then where it runs
    for key in ("device", "dataset", "split"):
        assert at.sidebar.selectbox(key=key).value
    assert image_urls(at)                                       # the default page (Sample) shows a grid


def test_every_page_runs_with_the_default_model():
    at = open_app()
    for page in ("sample", "traverse", "interpolate", "latent_map", "train"):
        at.switch_page(f"explorer/pages/{page}.py").run()
        assert_clean(at)
        assert at.sidebar.selectbox(key="model_shipped").value == "mnist-mlp"   # one sidebar on every page


def test_unknown_hub_id_shows_an_error_and_the_sidebar_still_works():
    at = open_app()
    at.sidebar.radio(key="model_kind").set_value("Hub").run()
    at.sidebar.text_input(key="model_hub").set_value("nobody-xyz/no-such-model").run()
    assert not at.exception
    assert any("no-such-model" in e.value for e in at.sidebar.error)
    assert any("Choose a working model" in i.value for i in at.info)
    said = [e.value for e in at.error] + [i.value for i in at.info] + [c.value for c in at.caption]
    assert sum("no-such-model" in t for t in said) == 1                         # said once, beside the picker
    at.run()                                                     # a rerun does not hit the network again
    assert any("Retry" == b.label for b in at.sidebar.button)
    at.sidebar.radio(key="model_kind").set_value("Shipped").run()
    assert_clean(at)
    assert image_urls(at)


def test_a_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    at = open_app()
    at.sidebar.radio(key="model_kind").set_value("Folder").run()
    assert not at.exception and not at.error                      # nothing typed yet: no red message
    assert any("Enter a run folder path" in c.value for c in at.sidebar.caption)
    at.sidebar.text_input(key="model_folder").set_value(str(tmp_path)).run()
    assert not at.exception
    assert any("config.json" in e.value for e in at.sidebar.error)
    at.sidebar.text_input(key="model_folder").set_value(str(tmp_path / "missing")).run()
    assert any("No folder" in e.value for e in at.sidebar.error)


def test_every_shipped_model_samples_without_error():
    at = open_app()
    for name in at.sidebar.selectbox(key="model_shipped").options:
        at.sidebar.selectbox(key="model_shipped").set_value(name).run()
        assert_clean(at)
        assert image_urls(at), name


def _all_messages(at) -> list[str]:
    return [m.value for kind in ("error", "warning", "info") for m in getattr(at, kind)] + \
        [m.value for kind in ("error", "warning", "info") for m in getattr(at.sidebar, kind)]


def test_dataset_of_another_shape_is_explained_once_and_can_be_resized():
    at = open_app("traverse")
    at.sidebar.selectbox(key="dataset").set_value("digits").run()
    assert not at.exception
    # One message, on the page that needs the data, pointing to where the resize box really is.
    said = [m for m in _all_messages(at) if "1x28x28" in m]
    assert len(said) == 1 and "digits" in said[0] and "In the sidebar" in said[0] and "under Split" in said[0], said
    assert "below" not in said[0]
    at.sidebar.checkbox(key="resize_data").check().run()
    assert_clean(at)
    assert image_urls(at)


def test_choosing_a_model_selects_the_dataset_it_was_trained_on():
    at = open_app("analyze")
    assert at.sidebar.selectbox(key="dataset").value == "mnist-5k"
    at.sidebar.selectbox(key="model_shipped").set_value("dsprites-beta4").run()
    assert at.session_state["_ctx"].info.trained_on == "dsprites"
    assert at.sidebar.selectbox(key="dataset").value == "dsprites"            # its card says so
    assert_clean(at)
    assert not [m for m in _all_messages(at) if "expects" in m]
    at.sidebar.selectbox(key="dataset").set_value("mnist-5k").run()          # the user's own choice stands
    assert at.sidebar.selectbox(key="dataset").value == "mnist-5k"
    assert len([m for m in _all_messages(at) if "1x64x64" in m]) == 1         # and its mismatch is said once
    at.sidebar.selectbox(key="model_shipped").set_value("mnist-mlp").run()
    assert at.sidebar.selectbox(key="dataset").value == "mnist-5k"
    assert_clean(at)


def test_the_dataset_pickers_leave_datasets_too_large_for_a_shared_server_to_the_cli():
    from vae_core.data import DATASETS
    large = {name for name, spec in DATASETS.items() if not spec.in_app}
    assert "dsprites-full" in large and DATASETS["dsprites-full"].nbytes > 2 ** 31
    at = open_app()
    options = at.sidebar.selectbox(key="dataset").options
    assert not set(options) & large
    assert {"mnist-5k", "digits", "dsprites"} <= set(options)
    at.switch_page("explorer/pages/train.py").run()
    assert not set(at.selectbox(key="train_dataset").options) & large


def test_streamlit_run_serves_app_py_as_an_app_whose_start_imports_the_explorer_in_the_background():
    """`streamlit run app.py` finds ``app`` (Streamlit's ASGI mode); its lifespan returns at once and
    a background thread imports torch and the explorer, with the collector back on and the
    imported modules frozen afterwards. Run in a fresh interpreter, where nothing is imported yet."""
    root = Path(__file__).resolve().parent.parent
    found = discover_asgi_app(root / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"
    probe = """
import asyncio, gc, sys, threading, time
import app
assert "torch" not in sys.modules and "vae_core" not in sys.modules     # importing app.py is light

async def start():
    t0 = time.perf_counter()
    async with app.startup.lifespan(app.app):
        return time.perf_counter() - t0, [t for t in threading.enumerate() if t.name == "preload"]

entered, (thread,) = asyncio.run(start())
assert entered < 0.5 and thread.is_alive()                                 # the server does not wait
thread.join(120)
assert not thread.is_alive()
assert "explorer.sidebar" in sys.modules and "torch" in sys.modules
assert gc.isenabled() and gc.get_freeze_count() > 100_000
print("ok")
"""
    env = {**os.environ, "VAE_EXPLORER_WARMUP": "1"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_the_start_up_switch_turns_the_preload_off():
    """VAE_EXPLORER_WARMUP=0 (the tests' setting): the lifespan starts nothing, so no freeze reaches the process."""
    root = Path(__file__).resolve().parent.parent
    probe = """
import asyncio, gc, sys, threading
import app

async def start():
    async with app.startup.lifespan(app.app):
        return [t.name for t in threading.enumerate()]

assert "preload" not in asyncio.run(start())
from explorer import startup
assert startup.warm_up().done.is_set() and startup.warm_up().thread is None
assert gc.get_freeze_count() == 0 and "torch" not in sys.modules
print("ok")
"""
    env = {**os.environ, "VAE_EXPLORER_WARMUP": "0"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
