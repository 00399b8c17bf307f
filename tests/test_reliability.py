"""What the explorer promises when it runs publicly: untrusted models, hostile images, many users, faults.

Complements test_hub.py (pickles, damaged checkpoints), test_models.py (absurd configs),
test_images_decode.py (basic decoding), test_faults.py (kills and a full disk) and test_train.py (NaN).
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import threading
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import vae_core
from tests.app_conftest_helpers import ROOT, assert_clean, errors, image_urls, open_app
from vae_core.latent import explore
from vae_core.io import hub
from vae_core.config import TrainConfig
from vae_core.images import MAX_UPLOAD_BYTES, decode_image
from explorer.limits import Settings
from tests.waiting import wait_for
from vae_core.training.live import TrainingJob, TrainingLimits
from vae_core.models import MLPConfig
from vae_core.settings import LoadPolicy
from vae_core.io.run_folder import RunConfig


def encode(img, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def quick(fn, limit=3.0):
    """A hostile input must be answered quickly: a frozen session is a failure too."""
    t = time.perf_counter()
    try:
        return fn()
    finally:
        assert time.perf_counter() - t < limit, f"took {time.perf_counter() - t:.1f} s"


# ---------------------------------------------------------------------------------------------
# Hostile images, through decode_image


def asymmetric() -> np.ndarray:
    """A 3x4 RGB image whose every pixel differs, so any flip or rotation shows."""
    return (np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3) * 7)


# What each EXIF orientation asks for, written independently of Pillow (rows, columns of an HxWxC array).
ORIENTED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
            8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_exif_orientations_come_out_upright(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(asymmetric()), "PNG", exif=exif.tobytes())   # lossless, so pixels compare exactly
    out = np.asarray(decode_image(data))
    np.testing.assert_array_equal(out, ORIENTED[orientation](asymmetric()))


def test_a_bomb_above_pillows_own_limit_is_refused_without_decoding():
    bomb = encode(Image.new("1", (30000, 30000)), "PNG", optimize=True)         # 900 Mpx declared, tiny file
    assert len(bomb) < 200_000 and 30000 * 30000 > Image.MAX_IMAGE_PIXELS
    # Even with the app's own pixel limit lifted, Pillow's bomb check answers with a message.
    with pytest.raises(vae_core.VAEError, match="decompression bomb|pixels"):
        quick(lambda: decode_image(bomb, max_pixels=10 ** 12))


@pytest.mark.parametrize("name, make, match", [
    ("truncated JPEG", lambda: encode(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")[:700],
     "truncated or corrupt"),
    ("PNG with a broken chunk", lambda: (lambda d: d[:40] + b"\xff" * 20 + d[60:])(
        encode(Image.effect_noise((32, 32), 60), "PNG")), "truncated or corrupt|allowed format"),
    ("text named .png", lambda: b"hello, this is a text file pretending to be a PNG\n" * 10, "allowed format"),
    ("HTML named .jpg", lambda: b"<html><script>alert(1)</script></html>", "allowed format"),
    ("SVG", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "allowed format"),
    ("header only", lambda: b"\x89PNG\r\n\x1a\n", "allowed format|truncated or corrupt"),
])
def test_corrupt_and_mislabelled_files_get_a_message(name, make, match):
    with pytest.raises(vae_core.VAEError, match=match):
        quick(lambda: decode_image(make()))


def test_content_is_read_from_the_bytes_not_the_extension():
    # A JPEG uploaded as .png decodes as the JPEG it is; the name never decides.
    img = decode_image(encode(Image.new("RGB", (12, 8), (0, 200, 0)), "JPEG"))
    assert img.size == (12, 8) and img.getpixel((4, 4))[1] > 180


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animations_use_their_first_frame(fmt):
    data = animated(fmt)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    r, g, b = decode_image(data).convert("RGB").getpixel((3, 3))
    assert r > 200 and g < 60 and b < 60                                          # red: the first frame


def test_16_bit_greys_are_scaled_not_clipped():
    arr = np.array([[0, 4096, 32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)                                                 # mode I;16
    out = np.asarray(decode_image(encode(img, "PNG")))
    assert out.dtype == np.uint8 and list(out[0]) == [0, 16, 128, 255]          # 65535 -> 255, 32768 -> 128


def test_cmyk_palette_and_alpha_images_convert_correctly():
    cmyk = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))   # pure red in CMYK
    r, g, b = cmyk.getpixel((4, 4))
    assert cmyk.mode == "RGB" and r > 200 and g < 60 and b < 60

    pal = Image.new("P", (4, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putdata([0, 1, 0, 1])
    out = decode_image(encode(pal, "PNG", transparency=0))                     # index 0 transparent
    assert [out.getpixel((i, 0)) for i in range(4)] == [(255, 255, 255), (255, 0, 0)] * 2

    la = Image.new("LA", (2, 1))
    la.putdata([(30, 255), (30, 0)])                                           # opaque dark grey, then transparent
    out = decode_image(encode(la, "PNG"))
    assert out.getpixel((0, 0))[0] == 30 and out.getpixel((1, 0)) == (255, 255, 255)

    rgba = Image.new("RGBA", (2, 1))
    rgba.putdata([(0, 0, 255, 255), (0, 0, 255, 128)])                        # half-transparent blue: blended
    out = decode_image(encode(rgba, "PNG"))
    assert out.getpixel((0, 0)) == (0, 0, 255) and 120 <= out.getpixel((1, 0))[0] <= 135


def upload_limit_bytes() -> int:
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    return int(cfg["server"]["maxUploadSize"]) * 1024 * 1024


def test_the_upload_limit_is_set_and_the_app_enforces_it_too():
    limit = upload_limit_bytes()
    assert 0 < limit <= 50 * 2 ** 20
    # Streamlit's uploader refuses larger files in the browser; the app's own limit is no looser,
    # so a file that slips past the browser is still refused, before PIL sees a byte.
    assert MAX_UPLOAD_BYTES <= limit
    over = encode(Image.new("L", (8, 8)), "PNG") + b"\0" * MAX_UPLOAD_BYTES
    with pytest.raises(vae_core.VAEError, match=r"MB; the limit is"):
        quick(lambda: decode_image(over))


# ---------------------------------------------------------------------------------------------
# Hostile images, through the Interpolate page's real upload path


HOSTILE_UPLOADS = [
    ("notes.png", lambda: b"just text\n" * 20, "not an image"),
    ("cut.jpg", lambda: encode(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")[:700], "truncated or corrupt"),
    ("bomb.png", lambda: encode(Image.new("1", (30000, 30000)), "PNG", optimize=True), "pixels|decompression bomb"),
    ("huge.png", lambda: encode(Image.new("L", (8, 8)), "PNG") + b"\0" * MAX_UPLOAD_BYTES, "the limit is"),
]
GOOD_UPLOADS = [
    ("anim.gif", lambda: animated("GIF"), "first frame"),
    ("anim.png", lambda: animated("PNG"), "first frame"),
    ("deep.png", lambda: encode(Image.fromarray(np.full((20, 20), 40000, np.uint16)), "PNG"), None),
    ("cmyk.jpg", lambda: encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), None),
    ("rotated.jpg", lambda: encode(Image.new("RGB", (30, 10), "white"), "JPEG",
                                   exif=(lambda e: (e.__setitem__(0x0112, 6), e.tobytes())[1])(Image.Exif())), None),
    ("alpha.png", lambda: encode(Image.new("LA", (20, 20), (0, 0)), "PNG"), None),
]


def test_hostile_uploads_on_the_interpolate_page_get_messages_and_the_session_goes_on():
    at = open_app("interpolate")
    at.radio(key="interp_a_source").set_value("Upload").run()
    for name, make, match in HOSTILE_UPLOADS:
        t = time.perf_counter()
        at.file_uploader(key="interp_a_upload").set_value((name, make(), "image/png")).run()
        assert time.perf_counter() - t < 30, name
        assert not at.exception, (name, [e.value for e in at.exception])
        assert any(re.search(match, e) for e in errors(at)), (name, errors(at))
    for name, make, note in GOOD_UPLOADS:
        at.file_uploader(key="interp_a_upload").set_value((name, make(), "image/png")).run()
        assert_clean(at)
        assert any("what the model sees" in c for img in at.image for c in img.captions), name
        if note:
            assert any(note in i.value for i in at.info), (name, [i.value for i in at.info])
    # The session still works after all of it.
    at.radio(key="interp_a_source").set_value("Dataset").run()
    assert_clean(at)
    before = image_urls(at)
    at.slider(key="interp_steps").set_value(5).run()
    assert_clean(at)
    assert image_urls(at) != before


# ---------------------------------------------------------------------------------------------
# Untrusted models: Hub time-outs, size limits, pinned revisions, no remote code


def test_no_remote_code_and_a_torch_without_the_unpickling_cves():
    sources = [ROOT / "app.py", *ROOT.glob("explorer/**/*.py"), *ROOT.glob("vae_core/**/*.py")]
    assert len(sources) > 30
    for p in sources:
        text = p.read_text()
        assert not re.search(r"trust_remote_code\s*=\s*True", text), p
        assert not re.search(r"torch\.load\(|pickle\.loads?\(", text) or p.name == "convert.py", p
    pins = dict(re.findall(r"^(torch)\s*[=>~]=\s*([\d.]+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert tuple(int(v) for v in pins["torch"].split(".")[:2]) >= (2, 10)
    assert tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 10)


def test_a_pickle_in_a_run_folder_is_refused_in_the_app_and_never_runs(tmp_path):
    folder, marker = tmp_path / "evil", tmp_path / "PWNED"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mlp", "in_shape": [1, 28, 28], "latent_dim": 2}))
    for name in ("pytorch_model.bin", "model.pt", "weights.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Boom(marker)))
    at = open_app("sample")
    at.sidebar.radio(key="model_kind").set_value("Folder").run()
    at.sidebar.text_input(key="model_folder").set_value(str(folder)).run()
    assert not at.exception
    assert any("pickle" in e.value for e in at.sidebar.error)
    assert not marker.exists()


class _Boom:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """snapshot_download and model_info replaced: what they were asked, and what they return.

    With ``state["hang"]`` a download hangs, as a Hub that never answers does, until the test ends."""
    import huggingface_hub

    calls = {"download": [], "info": [], "timeouts": []}
    state = {"hang": False, "sizes": None, "folder": None, "error": None}
    test_over = threading.Event()

    def snapshot_download(repo_id, revision=None, **kw):
        calls["download"].append((repo_id, revision))
        calls["timeouts"].append(kw.get("etag_timeout"))
        if state["hang"]:
            test_over.wait(60)
        if state["error"] is not None:
            raise state["error"]
        return str(state["folder"] or tmp_path)

    def model_info(self, repo_id, revision=None, files_metadata=False, **kw):
        calls["info"].append((repo_id, revision, files_metadata))
        calls["timeouts"].append(kw.get("timeout"))
        if state["sizes"] is None:
            raise OSError("offline")
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=s) for n, s in state["sizes"].items()])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    yield SimpleNamespace(calls=calls, state=state)
    test_over.set()


def test_hub_requests_have_time_outs_and_a_slow_hub_gets_a_message(fake_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    before = (constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT)
    monkeypatch.setenv("VAE_EXPLORER_HUB_TIMEOUT", "99")             # the app's setting: the library never reads it
    policy = LoadPolicy(request_timeout=7, fetch_timeout=0.3)
    fake_hub.state["hang"] = True
    t = time.perf_counter()
    with pytest.raises(vae_core.VAEError, match="did not deliver.*within 0.3 s"):
        hub.download_repo("org/slow", policy=policy)
    assert time.perf_counter() - t < 2.0
    # The revision that was typed stays in the message.
    with pytest.raises(vae_core.VAEError, match="did not deliver 'org/slow@nope'"):
        vae_core.load_model("org/slow@nope", policy=policy)
    # Each request's time-out goes to huggingface_hub with the call; its module constants are left alone.
    assert fake_hub.calls["timeouts"] and set(fake_hub.calls["timeouts"]) == {7}
    assert (constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT) == before


def test_the_library_reads_no_app_setting_and_sets_no_hub_constant():
    """VAE_EXPLORER_* belong to the app (explorer.limits); huggingface_hub's constants to huggingface_hub."""
    import ast

    root = Path(vae_core.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Call, ast.Subscript)) and any(
                    w in ast.unparse(node.func if isinstance(node, ast.Call) else node.value) for w in ("environ", "getenv")):
                assert "VAE_EXPLORER_" not in ast.unparse(node), f"{path}: {ast.unparse(node)}"
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    assert not (isinstance(target, ast.Attribute) and "constants" in ast.unparse(target.value)), \
                        f"{path}: {ast.unparse(target)} ="


def test_the_app_passes_its_hub_time_outs_in_the_load_policy(monkeypatch):
    from explorer.limits import Settings

    policy = Settings.from_env({"VAE_EXPLORER_HUB_TIMEOUT": "3", "VAE_EXPLORER_HUB_FETCH_TIMEOUT": "40"}).load_policy
    assert (policy.request_timeout, policy.fetch_timeout) == (3, 40)
    with pytest.raises(vae_core.VAEError, match="VAE_EXPLORER_HUB_TIMEOUT"):
        Settings.from_env({"VAE_EXPLORER_HUB_TIMEOUT": "0"})


def test_a_revision_can_be_pinned(fake_hub, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    hub.download_repo("org/name", "0123abcd")
    with pytest.raises(vae_core.VAEError):
        vae_core.load_model("org/name@v1.2")                           # an empty config: refused after the fetch
    assert ("org/name", "0123abcd") in fake_hub.calls["download"]
    assert ("org/name", "v1.2") in fake_hub.calls["download"]


def test_oversized_repos_are_refused_before_and_after_download(fake_hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # The pickle is never fetched, so it does not count: the safetensors alone are too large.
    fake_hub.state["sizes"] = {"config.json": 300, "model.safetensors": 3 * 2 ** 30, "big.ckpt": 9 * 2 ** 30}
    with pytest.raises(vae_core.VAEError, match="3.0 GiB of files to fetch.*at most 2.0 GiB"):
        hub.download_repo("org/huge")
    with pytest.raises(vae_core.VAEError, match="^org/huge@v2 holds 3.0 GiB"):
        hub.download_repo("org/huge", "v2")
    assert fake_hub.calls["info"][0] == ("org/huge", None, True) and not fake_hub.calls["download"]
    # No metadata (an old server, or offline): the fetched files are measured instead.
    fake_hub.state["sizes"] = None
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4096)
    with pytest.raises(vae_core.VAEError, match="at most"):
        hub.download_repo("org/huge", policy=LoadPolicy(max_download_bytes=1024))


def test_an_unreachable_or_slow_hub_shows_a_sidebar_message_and_shipped_models_keep_working(
        fake_hub, monkeypatch):
    from huggingface_hub import errors as hf_errors

    monkeypatch.setenv("VAE_EXPLORER_HUB_FETCH_TIMEOUT", "0.3")      # the server's setting, read when it starts
    at = open_app("sample")
    shared = at.session_state["_ctx"].model
    before = image_urls(at)
    fake_hub.state["error"] = hf_errors.LocalEntryNotFoundError("offline and not cached")
    at.sidebar.radio(key="model_kind").set_value("Hub").run()
    at.sidebar.text_input(key="model_hub").set_value("someone/unreachable").run()
    assert not at.exception
    assert any("Cannot reach the Hugging Face Hub" in e.value for e in at.sidebar.error)
    fake_hub.state.update(error=None, hang=True)
    at.sidebar.text_input(key="model_hub").set_value("someone/slow").run()
    assert not at.exception
    assert any("did not deliver" in e.value for e in at.sidebar.error)
    at.sidebar.radio(key="model_kind").set_value("Shipped").run()
    assert_clean(at)
    assert at.session_state["_ctx"].model is shared and image_urls(at) == before


# ---------------------------------------------------------------------------------------------
# Many users on one server


def weights_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_the_shared_model_is_unchanged_by_another_sessions_training(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_EXPLORER_RUNS_DIR", str(tmp_path))
    viewer = open_app("sample")
    shared = viewer.session_state["_ctx"].model
    before, urls = weights_hash(shared), image_urls(viewer)
    assert not shared.training and not any(p.requires_grad for p in shared.parameters())

    trainer = open_app("train")
    assert trainer.session_state["_ctx"].model is shared                 # one cached copy for the process
    trainer.selectbox(key="train_dataset").set_value("digits")
    trainer.number_input(key="train_epochs").set_value(2)
    trainer.button(key="train_start").click().run()
    job = trainer.session_state["train_job"]
    job.join(60)
    trainer.run()
    assert job.snapshot().status == "finished", job.snapshot().error
    trainer.button(key="train_explore").click().run()                    # the trainer now explores its own run
    trainer.switch_page("explorer/pages/sample.py").run()
    assert_clean(trainer)
    assert trainer.session_state["_ctx"].model is job.model is not shared

    viewer.run()
    assert weights_hash(shared) == before and not shared.training
    assert viewer.session_state["_ctx"].model is shared and image_urls(viewer) == urls


def test_randomness_is_per_session(monkeypatch):
    a, b, c = open_app("sample"), open_app("sample"), open_app("sample")
    for at in (a, b):
        at.number_input(key="sample_seed").set_value(42).run()
    assert image_urls(a) == image_urls(b)
    first = image_urls(a)
    # A third session samples with another seed and resamples; the global RNG is stirred too.
    c.number_input(key="sample_seed").set_value(7).run()
    for _ in range(3):
        c.button(key="sample_resample").click().run()
    torch.manual_seed(1234)
    torch.rand(1000)
    a.run()
    b.button(key="sample_resample").click().run()                     # b moves on; a does not
    assert image_urls(a) == first and image_urls(b) != first and image_urls(c) != first
    b2 = open_app("sample")
    b2.number_input(key="sample_seed").set_value(42).run()
    b2.button(key="sample_resample").click().run()
    assert image_urls(b2) == image_urls(b)                               # same seed, same draw: same samples
    assert_clean(a)


def test_inference_runs_under_inference_mode():
    model = vae_core.load_model("mnist-mlp", device="cpu")
    x = torch.rand(3, *model.config.in_shape)
    z = explore.encode(model, x)
    stats = explore.UnitStats.uniform(explore.num_units(model))
    outs = {"encode": z, "decode": explore.decode(model, z), "sample_grid": explore.sample_grid(model, 4, seed=0),
            "interpolate": explore.interpolate(model, z[:1], z[1:2], 4, "spherical"),
            "traversal_grid": explore.traversal_grid(model, z[:1], [0, 1], stats, steps=3),
            "manifold_grid": explore.manifold_grid(vae_core.load_model("mnist-mlp-2d", device="cpu"), 3)}
    for name, out in outs.items():
        assert out.is_inference(), name
    assert explore.sample_grid(model, 4, seed=3).equal(explore.sample_grid(model, 4, seed=3))


def test_torch_threads_are_capped_from_the_environment(monkeypatch):
    from explorer import startup

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    monkeypatch.setenv("VAE_EXPLORER_TORCH_THREADS", "1")
    startup.configure_torch.clear()
    try:
        open_app()                                                       # app.py configures torch at start
        assert seen == [1]
        monkeypatch.delenv("VAE_EXPLORER_TORCH_THREADS")
        assert Settings.from_env().torch_threads == 0                    # the default leaves torch alone
        monkeypatch.setenv("VAE_EXPLORER_TORCH_THREADS", "0")
        startup.configure_torch.clear()
        open_app()
        assert seen == [1]                                               # 0: torch's own default, untouched
    finally:
        startup.configure_torch.clear()


def test_imports_pause_the_collector_then_freeze_and_later_garbage_is_still_collected():
    import gc
    import weakref

    from explorer.startup import imports_then_freeze

    class Node:
        pass

    for t in threading.enumerate():         # a server warm-up started earlier in this process would
        if t.name in ("preload", "warm-up"):    # pause and freeze too
            t.join(300)
            assert not t.is_alive()
    try:
        with imports_then_freeze():
            assert not gc.isenabled()
            import explorer.widgets  # noqa: F401
            garbage = Node()
            garbage.me = garbage                        # made while paused: collected before the freeze
            made_in_block = weakref.ref(garbage)
            del garbage
        assert gc.isenabled()
        assert made_in_block() is None
        assert gc.get_freeze_count() > 100_000          # torch's and streamlit's modules, at least
        node = Node()
        node.me = node                                  # a cycle: only the cyclic collector frees it
        ref = weakref.ref(node)
        del node
        gc.collect()
        assert ref() is None

        gc.unfreeze()
        with pytest.raises(ImportError), imports_then_freeze():
            import no_such_module  # noqa: F401
        assert gc.isenabled() and gc.get_freeze_count() == 0     # a failed block freezes nothing

        gc.disable()
        with imports_then_freeze():
            pass
        assert not gc.isenabled()                       # left as it was found
        gc.enable()
    finally:
        gc.unfreeze()
        gc.enable()


# ---------------------------------------------------------------------------------------------
# Training runs and their sessions


def long_run(epochs=100_000):
    """A run that would go on for minutes: only a stop ends it within a test."""
    return RunConfig(MLPConfig(in_shape=(1, 8, 8), latent_dim=2, hidden_dims=(16,)),
                     TrainConfig(dataset="digits", epochs=epochs, batch_size=64))


def limits(session_timeout):
    return TrainingLimits(max_epochs=100_000, max_seconds=60, session_timeout=session_timeout)


def no_reaper() -> bool:
    """No thread watches jobs from outside: each job's own thread checks its session."""
    return not any("reaper" in t.name for t in threading.enumerate())


def test_a_job_whose_session_is_gone_is_stopped_and_its_thread_ends():
    connected = threading.Event()
    connected.set()
    job = TrainingJob(long_run(), limits=limits(0.5), log_every=1, alive=connected.is_set).start()
    t0 = time.monotonic()
    # Three time-outs long, with the session connected: the run goes on.
    wait_for(lambda: time.monotonic() - t0 > 1.5 and job.snapshot().step > 0, 60, "1.5 s of training")
    assert job.is_alive() and job.snapshot().status == "running"
    connected.clear()                                                   # the tab is closed
    t = time.monotonic()
    job.join(5)
    assert not job.is_alive() and time.monotonic() - t < 3
    snap = job.snapshot()
    assert snap.status == "stopped" and "session ended" in snap.message
    assert job.model is None and job.data is None                       # its memory is let go
    assert no_reaper()


def test_a_heartbeat_keeps_a_job_alive_and_unwatched_jobs_are_left_alone():
    beating = TrainingJob(long_run(), limits=limits(0.4), log_every=1, watched=True).start()
    plain = TrainingJob(long_run(), limits=limits(0.4), log_every=1).start()   # CLI-style
    try:
        t0 = time.monotonic()
        # Reruns of its session touch it all along (every poll), for three time-outs.
        wait_for(lambda: (beating.touch(), time.monotonic() - t0 > 1.2)[1], 10, "1.2 s of heartbeats")
        assert beating.is_alive() and plain.is_alive()
        beating.join(3)                                                 # no more heartbeats: it stops
        assert not beating.is_alive() and "session ended" in beating.snapshot().message
        assert plain.is_alive()
    finally:
        for j in (beating, plain):
            j.stop()
            j.join(10)
    assert not beating.is_alive() and not plain.is_alive() and no_reaper()


@pytest.fixture
def train_app(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_EXPLORER_RUNS_DIR", str(tmp_path))
    at = open_app("train")
    at.selectbox(key="train_dataset").set_value("mnist-5k")              # 50 epochs: minutes, unless stopped
    at.number_input(key="train_epochs").set_value(50)
    at.number_input(key="train_latent").set_value(2)
    return at


def test_a_run_survives_reruns_and_clicks_and_stop_stops_it(train_app):
    at = train_app
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    assert job.is_alive()
    steps = []
    for action in (lambda: at.run(), lambda: at.switch_page("explorer/pages/sample.py").run(),
                   lambda: at.slider(key="sample_count").set_value(9).run(),
                   lambda: at.switch_page("explorer/pages/train.py").run(), lambda: at.run()):
        action()
        assert not at.exception
        assert at.session_state["train_job"] is job and job.is_alive()
        steps.append(job.snapshot().step)
        wait_for(lambda: job.snapshot().step > steps[-1], 30, "more training steps")   # it goes on meanwhile
    at.button(key="train_stop").click().run()
    job.join(5)
    assert not job.is_alive() and job.snapshot().status == "stopped"
    at.run()
    assert_clean(at)


def test_a_run_of_a_session_that_goes_away_ends_within_the_time_out(train_app, monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_SESSION_TIMEOUT", "1")
    at = train_app
    at.run()
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    at.run()
    assert job.is_alive()
    del at                                                              # the session goes away: no more reruns
    job.join(6)
    assert not job.is_alive() and "session ended" in job.snapshot().message
    assert job.model is None and no_reaper()


# ---------------------------------------------------------------------------------------------
# Faults during a run


def test_a_nan_loss_in_a_live_run_shows_a_message_and_the_app_keeps_working(train_app, monkeypatch):
    import importlib

    tr = importlib.import_module("vae_core.training.loop")
    real, calls = tr.training_step, {"n": 0}

    def poisoned(*a, **k):
        result = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 5:
            result.parts["loss"] = result.parts["loss"] * float("nan")
        return result

    monkeypatch.setattr(tr, "training_step", poisoned)
    at = train_app
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    job.join(30)
    at.run()
    assert not at.exception
    assert job.snapshot().status == "failed"
    assert any("NaN or Inf" in e for e in errors(at)), errors(at)
    at.switch_page("explorer/pages/sample.py").run()
    assert_clean(at)
    assert image_urls(at)


def test_an_exploding_gradient_stops_the_run_and_keeps_the_saved_checkpoint(tiny_run_config, tmp_path):
    from vae_core.training.loop import init_model

    model = init_model(tiny_run_config.model, tiny_run_config.train.seed)
    blown = {"on": False}
    for p in model.parameters():                                        # gradients overflow once switched on
        p.register_hook(lambda g: g * float("inf") if blown["on"] else g)
    out, saved = tmp_path / "run", None
    with pytest.raises(vae_core.VAEError, match="NaN or Inf.*last good checkpoint"):
        for ev in vae_core.train(tiny_run_config, out_dir=out, model=model, log_every=1):
            if ev.kind == "epoch":
                saved = (out / "model.safetensors").read_bytes()
                blown["on"] = True
    assert saved is not None and (out / "model.safetensors").read_bytes() == saved
    assert all(torch.isfinite(p).all() for p in vae_core.load_model(out).parameters())
