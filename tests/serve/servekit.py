"""What the tests of ``voicekit serve`` share: raw clients (a WebSocket handshake from a chosen
loopback address with extra headers, a GET) and an ASR slower than real time. What the browser
tests share (Chromium, the page over DevTools) is in browserkit.py."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio
from trio_websocket import WebSocketConnection

from voicekit.asr.base import ASRConfig, ASRStream
from voicekit.audio.frame import AudioFrame
from voicekit.serve.agent import AgentRecipe
from voicekit.serve.config import ServeConfig, SessionRecipe
from voicekit.serve.server import VoiceServer
from voicekit.testing.fakes import FakeASR

__all__ = ["CHUNK", "SlowASR", "conversation_starts", "get", "serving", "speak_when_told", "upgrade"]

CHUNK = 640  # 20 ms of 16 kHz int16


@asynccontextmanager
async def serving(recipe: SessionRecipe | AgentRecipe, **config: Any) -> AsyncIterator[VoiceServer]:
    """A :class:`VoiceServer` for ``recipe`` on a free loopback port (``ServeConfig(**config)``),
    running in this trio run until the block ends."""
    server = VoiceServer(recipe, ServeConfig(port=0, **config))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


class SlowASR(FakeASR):
    """Takes ``cost`` seconds of trio time for every frame: slower than real time when over 20 ms."""

    def __init__(self, cost: float) -> None:
        super().__init__(["go forward ten meters"])
        self.cost = cost

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[ASRStream]:
        async with super().open_stream(config) as stream:
            plain = stream.send_audio

            async def slow(frame: AudioFrame) -> None:
                await trio.sleep(self.cost)
                await plain(frame)

            stream.send_audio = slow  # type: ignore[method-assign]
            yield stream


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` from 127.0.0.1:``port`` (a worker, HAProxy's stats, Chromium's DevTools):
    (status, headers with lower-case names, body). The body ends where the answer says, so a
    server that keeps the connection open does not make it wait."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    status, headers, body = 0, {}, b""
    async with stream:
        await stream.send_all(conn.send(h11.Request(method="GET", target=path, headers=[("host", f"127.0.0.1:{port}")]))
                              + conn.send(h11.EndOfMessage()))
        with trio.fail_after(10):
            while not isinstance(event := conn.next_event(), (h11.EndOfMessage, h11.ConnectionClosed)):
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status, headers = event.status_code, {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
    return status, headers, body


async def upgrade(port: int, source: str, headers: dict[str, str]) -> tuple[int, bytes, trio.SocketStream]:
    """A WebSocket handshake from ``source`` with extra ``headers``; (status, answer head, stream)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"{extra}\r\n".encode())
    answer = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in answer:
            data = await stream.receive_some(65536)
            if not data:
                break
            answer += data
    head, _, rest = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):  # a refusal: read its body too (a proxy may keep the connection)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        with trio.move_on_after(5):
            while (length is None or len(rest) < length) and (data := await stream.receive_some(65536)):
                rest += data
    return int(head.split()[1]), head + b"\r\n\r\n" + rest, stream


async def conversation_starts(port: int, source: str, headers: dict[str, str]) -> None:
    """The WebSocket is accepted and a hello gets ``ready``."""
    status, answer, stream = await upgrade(port, source, headers)
    async with stream:
        assert status == 101, answer
        hello = json.dumps({"type": "hello", "sample_rate": 16000}).encode()
        await stream.send_all(bytes([0x81, 0x80 | len(hello)]) + b"\0\0\0\0" + hello)  # masked, zero mask
        data = b""
        with trio.fail_after(10):
            while b'"ready"' not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, data
                data += chunk


async def speak_when_told(ws: WebSocketConnection, utterance: bytes, go: trio.Event,
                          messages: list[dict[str, Any]]) -> None:
    """The browser's part of a conversation after ``ready``: stream 20 ms of silence in real time
    until ``go`` is set, then ``utterance`` (16 kHz int16), then ``end``; meanwhile the server's
    JSON messages go to ``messages``. Returns (with ConnectionClosed in a group) when the server
    closes."""
    async def read() -> None:
        while True:
            message = await ws.get_message()
            if isinstance(message, str):
                messages.append(json.loads(message))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        while not go.is_set():
            await ws.send_message(b"\0" * CHUNK)
            await trio.sleep(0.02)
        for i in range(0, len(utterance), CHUNK):
            await ws.send_message(utterance[i:i + CHUNK])
            await trio.sleep(0.02)
        await ws.send_message(json.dumps({"type": "end"}))
