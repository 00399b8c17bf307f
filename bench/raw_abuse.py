"""The raw-websocket abuser of ``bench.load_test --abuse``: what a client without a browser can send to a
Streamlit server, as fast as it can (issue 30's probes), beside the browser abuser and the ordinary sessions.

    fast reruns     one session sends a rerun (of a link to the wide model) every RERUN_EVERY_S, never waiting
    upload flood    one session PUTs 1 MB files with new ids, straight to the upload endpoint
    closed tabs     sessions open a UMAP link on the latent map (a job on the server's queue), then close
    wide models     sessions open a link to the widest hostile Hub model the benchmark's cache holds
    cheap sessions  CHEAP_SESSIONS websockets held open at once, each with one run and nothing read

Each probe counts what it did and what the server refused; ``run`` returns when ``until`` is set.
Concurrent resizes need the sidebar's checkbox, which no link carries: the browser abuser's probes and
tests/test_budgets.py cover them. Talks Streamlit's protocol (BackMsg / ForwardMsg protobufs) directly.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import urllib.request

RERUN_EVERY_S = 0.05
CHEAP_SESSIONS = 40
UPLOAD_BYTES = 2 ** 20


def _rerun(query: str = "", page: str = "") -> bytes:
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ClientState_pb2 import ClientState

    return BackMsg(rerun_script=ClientState(query_string=query, page_name=page)).SerializeToString()


async def _session(ws_url: str):
    from websockets.asyncio.client import connect

    return await connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60)


async def _drain(ws) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def _session_id(ws, timeout: float = 60) -> str:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async with asyncio.timeout(timeout):
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await ws.recv())
            if msg.HasField("new_session"):
                return msg.new_session.initialize.session_id


async def fast_reruns(ws_url: str, until: asyncio.Event, counts: dict, query: str = "") -> None:
    ws = await _session(ws_url)
    drain = asyncio.create_task(_drain(ws))
    try:
        while not until.is_set():
            await ws.send(_rerun(query))
            counts["fast reruns sent"] = counts.get("fast reruns sent", 0) + 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(until.wait(), RERUN_EVERY_S)
    finally:
        await ws.close()
        drain.cancel()


def _put(url: str, session: str, file_id: str) -> int:
    boundary = "vaeexplorerbench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_id}.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"x" * UPLOAD_BYTES + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}/_stcore/upload_file/{session}/{file_id}", data=body, method="PUT",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def upload_flood(url: str, ws_url: str, until: asyncio.Event, counts: dict) -> None:
    ws = await _session(ws_url)
    await ws.send(_rerun())
    session = await _session_id(ws)
    drain = asyncio.create_task(_drain(ws))
    try:
        for i in itertools.count():
            if until.is_set():
                break
            code = await asyncio.to_thread(_put, url, session, f"flood{i}")
            key = "uploads accepted" if code in (200, 204) else f"uploads refused ({code})"
            counts[key] = counts.get(key, 0) + 1
    finally:
        await ws.close()
        drain.cancel()


async def open_and_close(ws_url: str, until: asyncio.Event, counts: dict, name: str, query: str, page: str,
                         hold_s: float) -> None:
    """Sessions that open a link, stay ``hold_s`` seconds (reading nothing) and leave, over and over."""
    while not until.is_set():
        try:
            ws = await _session(ws_url)
            await ws.send(_rerun(query, page))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(until.wait(), hold_s)
            await ws.close()
            counts[name] = counts.get(name, 0) + 1
        except Exception as e:              # the server refusing or dropping a connection is data, not a crash
            counts[f"{name}: {type(e).__name__}"] = counts.get(f"{name}: {type(e).__name__}", 0) + 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(until.wait(), 1.0)


async def cheap_sessions(ws_url: str, until: asyncio.Event, counts: dict) -> None:
    held = []
    try:
        for _ in range(CHEAP_SESSIONS):
            if until.is_set():
                break
            try:
                ws = await _session(ws_url)
                await ws.send(_rerun())
                held.append(ws)
            except Exception as e:
                counts[f"cheap sessions: {type(e).__name__}"] = counts.get(f"cheap sessions: {type(e).__name__}", 0) + 1
        counts["cheap sessions held"] = len(held)
        await until.wait()
    finally:
        for ws in held:
            with contextlib.suppress(Exception):
                await ws.close()


async def run(url: str, until: asyncio.Event, counts: dict, wide_repo: str | None = None) -> None:
    """Every probe at once until ``until`` is set; ``counts`` is filled as they go."""
    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    probes = [fast_reruns(ws_url, until, counts, f"hub={wide_repo}" if wide_repo else ""),
              upload_flood(url, ws_url, until, counts),
              open_and_close(ws_url, until, counts, "closed tabs with a UMAP job", "method=umap&points=5000",
                             "latent_map", 2.0),
              cheap_sessions(ws_url, until, counts)]
    if wide_repo:
        probes.append(open_and_close(ws_url, until, counts, "wide-model links", f"hub={wide_repo}", "sample", 3.0))
    results = await asyncio.gather(*probes, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            counts.setdefault("probe errors", []).append(f"{type(r).__name__}: {r}")
