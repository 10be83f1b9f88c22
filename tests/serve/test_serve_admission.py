"""Admission control, readiness, shedding and drain of ``voicekit serve``, in one process over real
loopback sockets (the fleet behind HAProxy is tests/serve/test_serve_fleet.py)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import trio
from servekit import SlowASR, get, serving  # type: ignore[import-not-found]  # next to this file
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from voicekit.plugins.build import load_assistant, make_vad
from voicekit.serve.server import SessionRecipe
from voicekit.testing.fakes import FakeASR

CHUNK = b"\0" * 640  # 20 ms of silence at 16 kHz




def recipe(asr: FakeASR | None = None) -> SessionRecipe:
    return SessionRecipe(asr=asr or FakeASR(["go forward ten meters"]), assistant=load_assistant("robot"),
                         vad_factory=lambda: make_vad("webrtc", sample_rate=16000))




async def hello(ws: WebSocketConnection) -> dict[str, Any]:
    await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000}))
    return dict(json.loads(await ws.get_message()))


async def until_closed(ws: WebSocketConnection, send_audio: bool = False) -> tuple[list[Any], int, str]:
    """Read (and, if asked, keep streaming silence in real time) until the server closes."""
    got: list[Any] = []
    try:
        async with trio.open_nursery() as nursery:
            if send_audio:
                async def stream() -> None:
                    while True:
                        await ws.send_message(CHUNK)
                        await trio.sleep(0.02)
                nursery.start_soon(stream)
            while True:
                message = await ws.get_message()
                got.append(json.loads(message) if isinstance(message, str) else message)
    except* ConnectionClosed:
        pass
    assert ws.closed is not None
    return got, int(ws.closed.code), str(ws.closed.reason)


async def test_health_readiness_and_metrics() -> None:
    async with serving(recipe(), max_sessions=1) as server:
        assert server.port
        assert (await get(server.port, "/healthz"))[:3:2] == (200, b"ok\n")
        status, _, body = await get(server.port, "/readyz")
        assert status == 200 and json.loads(body) == {"ready": True, "reason": "ready", "active": 0,
                                                      "max_sessions": 1, "draining": False,
                                                      "loop_lag": json.loads(body)["loop_lag"]}
        async with open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as ws:
            assert (await hello(ws))["type"] == "ready"
            status, headers, body = await get(server.port, "/readyz")
            assert status == 503 and headers["retry-after"] == "2"
            assert json.loads(body)["reason"] == "max_sessions"
            status, headers, text = await get(server.port, "/metrics")
            assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
            assert re.search(rb"^voicekit_serve_sessions_active 1\.0$", text, re.M)
            assert re.search(rb"^voicekit_serve_ready 0\.0$", text, re.M)
            assert b"voicekit_serve_event_loop_lag_seconds_bucket" in text
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as second:
                refusal = await hello(second)
                assert refusal["code"] == "busy"
                assert (await until_closed(second))[1:] == (1013, "server busy")
        with trio.fail_after(5):
            while (await get(server.port, "/readyz"))[0] != 200:
                await trio.sleep(0.02)
        text = (await get(server.port, "/metrics"))[2]
        assert re.search(rb'^voicekit_serve_sessions_refused_total\{reason="max_sessions"\} 1\.0$', text, re.M)
        # the same host check as the page: a rebinding page cannot read the metrics
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 403")


@pytest.mark.slow
async def test_a_session_that_falls_behind_real_time_is_shed() -> None:
    """Each 20 ms frame costs the ASR 50 ms: the session falls behind, is told so, and is closed
    with 1013 before its audio is dropped in silence; the server stays ready for others."""
    async with serving(recipe(SlowASR(0.05)), max_backlog=0.5) as server:
        async with open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as ws:
            assert (await hello(ws))["type"] == "ready"
            start = trio.current_time()
            with trio.fail_after(10):
                got, code, reason = await until_closed(ws, send_audio=True)
            assert (code, reason) == (1013, "fell behind real time")
            assert trio.current_time() - start < 5
            warnings = [m["event"] for m in got if isinstance(m, dict) and m["type"] == "event"
                        and m["event"]["event"] == "warning" and m["event"]["where"] == "serve"]
            assert warnings and "behind real time" in warnings[0]["message"]
            assert [m["code"] for m in got if isinstance(m, dict) and m["type"] == "error"] == ["overloaded"]
        assert server.stats.shed == 1
        text = (await get(server.port, "/metrics"))[2]
        assert re.search(rb"^voicekit_serve_sessions_shed_total 1\.0$", text, re.M)
        assert re.search(rb'^voicekit_serve_sessions_ended_total\{reason="backlog"\} 1\.0$', text, re.M)


async def test_a_client_faster_than_real_time_is_not_behind() -> None:
    """Sending 3 s of audio at once is not lagging: only audio that waits counts."""
    async with serving(recipe(), max_backlog=0.5) as server:
        async with open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as ws:
            assert (await hello(ws))["type"] == "ready"
            for _ in range(150):
                await ws.send_message(CHUNK)
            await ws.send_message(json.dumps({"type": "end"}))
            with trio.fail_after(10):
                _, code, _ = await until_closed(ws)
            assert code == 1000 and server.stats.shed == 0


@pytest.mark.slow
async def test_a_lagging_event_loop_refuses_new_conversations() -> None:
    async with serving(recipe(), max_loop_lag=0.05) as server:
        assert server.port
        port = server.port

        async def hog() -> None:  # something holds the event loop: 100 ms of every 110
            for _ in range(30):
                time.sleep(0.1)
                await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hog)
            with trio.fail_after(5):
                while server.readiness()[1] != "loop_lag":
                    await trio.sleep(0.01)
            status, _, body = await get(port, "/readyz")
            assert status == 503 and json.loads(body)["reason"] == "loop_lag", body
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
                refusal = await hello(ws)
                assert refusal["code"] == "busy" and "overloaded" in refusal["message"], refusal
                assert (await until_closed(ws))[1:] == (1013, "server overloaded")
        assert server.stats.refused_loop_lag >= 1
        with trio.fail_after(5):  # the loop is free again: ready within about a second
            while (await get(port, "/readyz"))[0] != 200:
                await trio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("at_upgrade", [False, True])
async def test_drain(at_upgrade: bool) -> None:
    """drain(): not ready at once, new conversations refused (1013 after the hello, or 503 at the
    upgrade), one that ends in time finishes normally, the rest are closed with 1012 at the deadline."""
    async with serving(recipe(), drain_timeout=1.0, refuse_at_upgrade=at_upgrade) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with open_websocket_url(url) as finishing, open_websocket_url(url) as lingering, \
                trio.open_nursery() as nursery:
            assert (await hello(finishing))["type"] == "ready" and (await hello(lingering))["type"] == "ready"
            drained = trio.Event()

            async def drain() -> None:
                await server.drain()
                drained.set()

            nursery.start_soon(drain)
            await trio.sleep(0.05)
            status, _, body = await get(server.port or 0, "/readyz")
            assert status == 503 and json.loads(body)["reason"] == "draining"
            if at_upgrade:
                with pytest.raises(ConnectionRejected) as rejected:
                    async with open_websocket_url(url):
                        pass
                assert rejected.value.status_code == 503
                assert dict(rejected.value.headers or ())[b"retry-after"] == b"2"
            else:
                async with open_websocket_url(url) as late:
                    assert (await hello(late))["code"] == "busy"
                    assert (await until_closed(late))[1:] == (1013, "server draining")
            await finishing.send_message(json.dumps({"type": "end"}))
            assert (await until_closed(finishing))[1] == 1000
            start = trio.current_time()
            with trio.fail_after(5):
                got, code, reason = await until_closed(lingering, send_audio=True)
            assert (code, reason) == (1012, "server restarting")
            assert trio.current_time() - start < 2
            assert [m["code"] for m in got if isinstance(m, dict) and m["type"] == "error"] == ["restarting"]
            with trio.fail_after(10):
                await drained.wait()
        assert server.stats.drained == 1 and server.stats.refused_draining == 1
