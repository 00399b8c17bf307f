"""Uploads on a shared server (issue 30): counted per session as they arrive (300 PUTs in 7 s held +1.5 GB),
decoded once per session (a 16-bit 4096x4096 PNG took 4.45 s and +449 MB on every rerun, in each of
Interpolate's three inputs), and reduced to a pixel budget at decode."""
from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from starlette.exceptions import HTTPException
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFileRec

import vae_core
from explorer import widgets
from explorer.limits import Settings
from explorer.startup import UploadBudget
from vae_core import images


def rec(file_id: str, size: int) -> UploadedFileRec:
    return UploadedFileRec(file_id=file_id, name=f"{file_id}.png", type="image/png", data=b"x" * size)


def test_a_sessions_uploads_are_refused_beyond_their_count_and_bytes_and_name_the_setting():
    mgr = MemoryUploadedFileManager("/_stcore/upload_file")
    budget = UploadBudget.install(mgr, max_files=3, max_bytes=1000)
    assert UploadBudget.install(mgr, 3, 1000) is budget              # installed once, never wrapped twice
    for i in range(3):
        mgr.add_file("s1", rec(f"f{i}", 100))
    with pytest.raises(HTTPException) as e:
        mgr.add_file("s1", rec("f3", 100))
    assert e.value.status_code == 413 and "VAE_EXPLORER_MAX_UPLOAD_FILES" in e.value.detail
    mgr.add_file("s1", rec("f0", 200))                                # the same file again replaces it
    mgr.add_file("s2", rec("g0", 100))                                # another session has its own budget
    mgr.remove_file("s1", "f1")                                       # removed: no longer counted
    with pytest.raises(HTTPException) as e:
        mgr.add_file("s1", rec("f4", 750))                            # 200 + 100 + 750 > 1000 bytes
    assert "VAE_EXPLORER_MAX_UPLOAD_MB" in e.value.detail
    mgr.add_file("s1", rec("f4", 500))
    assert budget.held("s1") == (3, 800) and budget.refused == 2
    assert len(mgr.get_files("s1", ["f3"])) == 0                      # a refused file was never stored


def png(mode: str, size: tuple[int, int], value: int = 1000) -> bytes:
    arr = np.full(size[::-1], value, dtype=np.uint16 if mode == "I;16" else np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_an_upload_is_decoded_once_per_session_by_its_content(monkeypatch):
    calls = []
    real = images.decode_image
    monkeypatch.setattr(images, "decode_image", lambda data, **kw: calls.append(kw) or real(data, **kw))
    state: dict = {}
    data = png("L", (40, 30), 7)
    for _ in range(3):                                                # reruns, and the page's other inputs
        img, frames = widgets.decoded_upload(data, state)
    assert len(calls) == 1 and img.size == (40, 30) and frames == 1
    with pytest.raises(vae_core.VAEError):
        widgets.decoded_upload(b"not an image", state)
    with pytest.raises(vae_core.VAEError):
        widgets.decoded_upload(b"not an image", state)                # its refusal is kept too
    assert len(calls) == 2
    for i in range(Settings().max_upload_files + 2):                  # the cache is bounded
        widgets.decoded_upload(png("L", (8, 8), i), state)
    assert len(state[widgets.UPLOADS_KEY]) == Settings().max_upload_files


@pytest.mark.parametrize("mode,size,value,seen", [("I;16", (4096, 4096), 1000, 3), ("L", (3000, 2000), 77, 77)])
def test_huge_and_16_bit_uploads_are_reduced_to_the_pixel_budget(mode, size, value, seen):
    budget = Settings().max_upload_pixels
    img, _ = widgets.decoded_upload(png(mode, size, value), {})
    assert img.width * img.height <= budget and img.mode == "L"
    assert img.getextrema() == (seen, seen)                           # 16 bits scaled to 8


def test_a_16_bit_4096_square_png_decodes_within_a_memory_budget():
    """Measured in a process of its own (its peak resident memory): +449 MB at full size before; the
    budget of 1 MP leaves the 16-bit image itself (32 MB) and one copy."""
    code = textwrap.dedent("""
        import io, resource, sys
        import numpy as np
        from PIL import Image
        from explorer import widgets
        buf = io.BytesIO()
        Image.fromarray(np.full((4096, 4096), 1000, dtype=np.uint16)).save(buf, format="PNG")
        data = buf.getvalue()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        widgets.decoded_upload(data, {})
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    grew = float(out.stdout.split()[-1])
    assert grew < 150, f"decoding grew the process by {grew:.0f} MB"


def test_a_raw_client_flooding_uploads_into_its_session_is_refused_at_the_budget(tmp_path):
    """On a real server: files PUT straight to the session (no widget) stop at VAE_EXPLORER_MAX_UPLOAD_FILES."""
    import requests
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ClientState_pb2 import ClientState
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    from tests.test_session_runs import APP, server

    script = tmp_path / "app.py"
    script.write_text(APP)                  # a script run through explorer.startup.one_run, as app.py's
    with server(script, tmp_path / "runs.json") as url, \
            connect(f"ws://{url}/_stcore/stream", subprotocols=["streamlit"], max_size=None) as ws:
        ws.send(BackMsg(rerun_script=ClientState(query_string="", page_script_hash="")).SerializeToString())
        session = ""
        while not session:
            msg = ForwardMsg()
            msg.ParseFromString(ws.recv(timeout=60))
            if msg.HasField("new_session"):
                session = msg.new_session.initialize.session_id
        while True:                         # the run has installed the budget once its script finished
            msg = ForwardMsg()
            msg.ParseFromString(ws.recv(timeout=60))
            if msg.HasField("script_finished"):
                break
        codes = [requests.put(f"http://{url}/_stcore/upload_file/{session}/f{i}", timeout=30,
                              files={"file": (f"f{i}.png", b"x" * 1000, "image/png")}).status_code
                 for i in range(Settings().max_upload_files + 4)]
    assert codes == [204] * Settings().max_upload_files + [413] * 4
