"""Hostile DashScope look-alikes for the adversarial tests: servers that echo the request's
``Authorization`` header back, answer garbage, huge or malformed frames, fail at every phase, or
never answer. Each runs on 127.0.0.1 inside the test's trio run (``async with serve_http(...)``).

Not a test module: ``test_key_canary.py`` and ``test_hostile_servers.py`` share it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket
from voicekit_dashscope.protocol.realtime import ErrorEvent, ErrorInfo, SessionCreated, SessionUpdated
from voicekit_dashscope.protocol.realtime import encode as encode_realtime
from voicekit_dashscope.protocol.task import TaskFailed, TaskStarted
from voicekit_dashscope.protocol.task import encode as encode_task


def stream_call(plugin: Any, pcm: bytes) -> Callable[[], Awaitable[None]]:
    """A call that streams ``pcm`` (16 kHz mono int16) through an ASR plugin in 100 ms frames and
    reads every result: what a user's transcription does, for a hostile server to break."""
    from voicekit.asr.base import ASRConfig
    from voicekit.audio.frame import AudioFrame

    async def go() -> None:
        async with plugin.open_stream(ASRConfig(sample_rate=16000)) as stream:
            async def feed() -> None:
                for frame in AudioFrame(pcm, 16000).split(1600):
                    await stream.send_audio(frame)
                    await trio.sleep(0.01)
                await stream.finish()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                async for _ in stream:
                    pass

    return go


def canary_key() -> str:
    """A fresh key that looks like a real one (``sk-`` and 32 hex digits)."""
    return "sk-" + secrets.token_hex(16)


def leaked_runs(key: str, text: str, run: int = 8) -> list[str]:
    """Every ``run``-character piece of ``key`` that occurs in ``text``."""
    return sorted({key[i:i + run] for i in range(len(key) - run + 1) if key[i:i + run] in text})


def echo_text(auth: str, headers: dict[str, str]) -> str:
    """What a careless proxy says: the header, copied at many offsets (so that any length limit a
    client applies cuts some copy in the middle), and all request headers."""
    parts = [f"rejected Authorization: {auth}"]
    for pad in range(0, 48, 5):
        parts.append("." * pad + auth)
    parts.append("headers=" + json.dumps(headers))
    return " | ".join(parts)


def straddling_html(auth: str, cut: int = 200) -> str:
    """An HTML error page whose copy of the header straddles the ``cut``-th character."""
    token = auth.split()[-1] if auth else ""
    head = "<html><body><h1>500 Internal Server Error</h1><pre>Authorization: Bearer "
    pad = max(0, cut - len(token) + 1 - len(head))
    return head + "x" * pad + token + "</pre>" + echo_text(auth, {}) + "</body></html>"


# ----------------------------------------------------------------------------------------- HTTP

HTTP_KINDS = ("json-echo", "html-echo", "garbage", "huge", "hang", "drip", "empty", "not-json-200")


@attrs.define
class HostileHTTP:
    """Answers every request the same hostile way. ``status`` and ``kind`` may change between
    requests; ``requests`` counts them."""

    status: int = 500
    kind: str = "json-echo"
    code: str = "InternalError"
    requests: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            await self._handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk or len(data) > 1 << 20:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        # read (and drop) the body, whatever its framing
        length = int(headers.get("content-length", "0") or 0)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                rest += chunk
        else:
            while len(rest) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                rest += chunk
        self.requests += 1
        auth = headers.get("authorization", "")
        kind = self.kind
        if kind == "hang":
            await trio.sleep_forever()
        ctype = "application/json"
        if kind == "json-echo":
            body = json.dumps({"code": self.code, "message": echo_text(auth, headers),
                               "request_id": auth}).encode()
        elif kind == "html-echo":
            body, ctype = straddling_html(auth).encode(), "text/html"
        elif kind == "garbage":
            body, ctype = b"\x00\xff{{{" + auth.encode() + b"\xfe not json", "application/octet-stream"
        elif kind == "huge":
            body = b'{"code": "X", "message": "' + b"A" * (8 << 20) + auth.encode() + b'"}'
        elif kind == "not-json-200":
            body, ctype = ("<html>welcome to the captive portal " + auth + "</html>").encode(), "text/html"
        else:  # empty, drip
            body = b""
        status = 200 if kind == "not-json-200" else self.status
        reply = (f"HTTP/1.1 {status} Hostile\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
                 f"x-echo-authorization: {auth}\r\nconnection: close\r\n\r\n").encode()
        if kind == "drip":  # headers, then nothing at all
            reply = reply.replace(b"content-length: 0", b"content-length: 100")
            await stream.send_all(reply)
            await trio.sleep_forever()
        await stream.send_all(reply + body)
        await stream.aclose()


@asynccontextmanager
async def serve_http(server: HostileHTTP) -> AsyncIterator[HostileHTTP]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------------ WebSocket

# task protocol (/api-ws/v1/inference) and realtime protocol (/api-ws/v1/realtime)
WS_KINDS = (
    "reject-echo",  # refuse the handshake with `status` and an echoing body
    "reject-auth",  # refuse with 401
    "hang",  # accept, then say nothing
    "garbage",  # accept, then a non-JSON frame echoing the key
    "huge",  # accept, then a 20 MB frame
    "failed-echo",  # task-failed / error event (code `code`) whose message echoes the key
    "failed-after-start",  # the same, after task-started / session.updated and some audio
    "close-echo",  # close 1011 with a reason echoing (part of) the key
    "wrong-first",  # an unexpected first event
    "binary",  # a binary frame where JSON text is due
)


@attrs.define
class HostileWS:
    kind: str = "failed-echo"
    status: int = 500
    code: str = "InternalError"
    connections: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def handle(self, request: WebSocketRequest) -> None:
        self.connections += 1
        auth = dict((k.decode().lower(), v.decode()) for k, v in request.headers).get("authorization", "")
        realtime = "/realtime" in request.path
        kind = self.kind
        if kind in ("reject-echo", "reject-auth"):
            status = 401 if kind == "reject-auth" else self.status
            body = json.dumps({"code": self.code, "message": echo_text(auth, {"path": request.path})})
            await request.reject(status, extra_headers=[(b"x-echo", auth.encode())], body=body.encode())
            return
        ws = await request.accept()
        try:
            await self._session(ws, auth, realtime, kind)
        except ConnectionClosed:
            pass

    async def _session(self, ws: Any, auth: str, realtime: bool, kind: str) -> None:
        echo = echo_text(auth, {})
        if kind == "hang":
            await trio.sleep_forever()
        if kind == "garbage":
            await ws.send_message('{"header": {"event": "task-st' + echo)
            await trio.sleep_forever()
        if kind == "huge":
            await ws.send_message('{"type": "' + "A" * (20 << 20) + auth + '"}')
            await trio.sleep_forever()
        if kind == "binary":
            await ws.send_message(b"\x00\x01" + auth.encode())
            await trio.sleep_forever()
        if kind == "close-echo":
            await ws.aclose(1011, ("upstream: " + auth)[:120])
            return
        if realtime:
            if kind == "wrong-first":
                await ws.send_message(json.dumps({"type": "response.done", "why": echo}))
                await trio.sleep_forever()
            await ws.send_message(encode_realtime(SessionCreated(session={"model": "x"})))
            if kind == "failed-echo":
                await ws.send_message(encode_realtime(ErrorEvent(error=ErrorInfo(code=self.code, message=echo))))
                await trio.sleep_forever()
            await ws.get_message()  # session.update
            await ws.send_message(encode_realtime(SessionUpdated(session={"model": "x"})))
            for _ in range(5):
                await ws.get_message()
            await ws.send_message(encode_realtime(ErrorEvent(error=ErrorInfo(code=self.code, message=echo))))
            await ws.aclose(1011, "failed")
            return
        run = json.loads(await ws.get_message())
        task_id = run.get("header", {}).get("task_id", "0" * 32)
        if kind == "wrong-first":
            await ws.send_message(json.dumps({"header": {"task_id": task_id, "event": "task-finished",
                                                         "attributes": {"echo": echo}}, "payload": {}}))
            await trio.sleep_forever()
        if kind == "failed-after-start":
            await ws.send_message(encode_task(TaskStarted(task_id)))
            for _ in range(5):
                await ws.get_message()
        await ws.send_message(encode_task(TaskFailed(task_id, self.code, echo)))
        await ws.aclose(1000)


@asynccontextmanager
async def serve_ws(server: HostileWS) -> AsyncIterator[HostileWS]:
    async with trio.open_nursery() as nursery:
        ws_server = await nursery.start(serve_websocket, server.handle, "127.0.0.1", 0, None)
        server.port = ws_server.port
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
