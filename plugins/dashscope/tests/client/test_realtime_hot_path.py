"""The realtime client's per-message path (issue 11): frames written straight to the socket.

What is pinned is correctness, not speed: every frame :class:`FrameWriter` writes is a valid masked
client frame whose text decodes to the append the protocol encoded and whose audio is the caller's
PCM; a session sends one append per 100 ms of audio (20 ms frames are gathered); frames stay whole
and in order when the socket is full and several tasks send at once; a closed connection still
raises the client's error; and a stream against the emulator transcribes every sentence.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from testkit.common import FAKE_KEY, ToneScript, stream_through
from testkit.realtime import InstantTransport
from voicekit_dashscope.asr.realtime import Qwen3ASRRealtime
from voicekit_dashscope.auth import ApiKey
from voicekit_dashscope.client.frames import OP_BINARY, OP_TEXT, FrameWriter, client_frame, mask
from voicekit_dashscope.client.realtime import SendLock, websocket_connector
from voicekit_dashscope.errors import ConnectionLostError
from voicekit_dashscope.protocol.realtime import (
    AudioAppend,
    ServerRealtimeProtocol,
    SessionCreated,
    SessionFinish,
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
    get_realtime_model,
)
from voicekit_dashscope.protocol.realtime._codec import decode_client
from voicekit_dashscope.protocol.realtime._events import IdMaker
from voicekit_dashscope_emulator import DashScopeEmulator
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, TextMessage

MODEL = "qwen3-asr-flash-realtime"


def server_side_messages(data: bytes) -> list[str | bytes]:
    """What a server's WebSocket layer (wsproto, which checks the masking) reads from ``data``."""
    conn = Connection(ConnectionType.SERVER)
    conn.receive_data(data)
    out: list[str | bytes] = []
    parts: list[Any] = []
    for event in conn.events():
        assert isinstance(event, (TextMessage, BytesMessage)), event
        parts.append(event.data)
        if event.message_finished:
            out.append("".join(parts) if isinstance(event, TextMessage) else b"".join(parts))
            parts = []
    return out


# ---- the frame itself


@pytest.mark.parametrize("size", [0, 1, 3, 125, 126, 127, 4271, 65535, 65536, 200_001])
def test_a_client_frame_is_read_back_as_the_same_text(size: int) -> None:
    text = "".join(chr(0x61 + i % 26) for i in range(size - 1)) + "é" if size else ""
    assert server_side_messages(client_frame(text.encode())) == [text]


def test_binary_frames_and_a_fresh_mask_per_frame() -> None:
    payload = os.urandom(3200)
    a, b = client_frame(payload, OP_BINARY), client_frame(payload, OP_BINARY)
    assert server_side_messages(a + b) == [payload, payload]
    assert a[4:8] != b[4:8] and a[8:] != b[8:]  # new key, so new bytes on the wire
    assert client_frame(b"x", OP_TEXT)[0] == 0x81 and a[0] == 0x82  # FIN + opcode
    key = b"\x01\x02\x03\x04"
    assert mask(mask(payload[:7], key), key) == payload[:7]  # its own inverse, any length
    assert mask(b"\x00" * 5, key) == key + key[:1]


def test_event_ids_keep_the_service_shape_and_never_repeat() -> None:
    ids = IdMaker()
    made = [ids("event") for _ in range(5000)]
    assert len(set(made)) == len(made)
    for i in made[:3] + made[-3:]:
        prefix, rest = i.split("_", 1)
        assert prefix == "event" and len(rest) == 21 and rest.isalnum()
    assert IdMaker(1)("event") == IdMaker(1)("event")  # seedable for tests
    assert IdMaker()("event")[:19] != ids("event")[:19]  # another maker, another random stem


# ---- a session against a recording server


class Recorder:
    """A realtime server that answers the session handshake and keeps every text frame it reads."""

    def __init__(self, *, read_delay: float = 0.0) -> None:
        self.frames: list[str] = []
        self.read_delay = read_delay
        self.port = 0

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        proto = ServerRealtimeProtocol(get_realtime_model(MODEL))
        await ws.send_message(proto.send(SessionCreated(session=proto.session)))
        try:
            while True:
                if self.read_delay:
                    await trio.sleep(self.read_delay)
                frame = await ws.get_message()
                assert isinstance(frame, str)
                self.frames.append(frame)
                event = proto.receive(frame)
                if isinstance(event, SessionUpdate):
                    await ws.send_message(proto.send(SessionUpdated(session=proto.session)))
                elif isinstance(event, SessionFinish):
                    await ws.send_message(proto.send(SessionFinished()))
        except trio_websocket.ConnectionClosed:
            pass

    @property
    def appends(self) -> list[AudioAppend]:
        events = [decode_client(f) for f in self.frames]
        return [e for e in events if isinstance(e, AudioAppend)]


@asynccontextmanager
async def recorder(**kwargs: Any) -> AsyncIterator[Recorder]:
    rec = Recorder(**kwargs)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, rec.handler, "127.0.0.1", 0, None)
        rec.port = server.port
        yield rec
        nursery.cancel_scope.cancel()


@pytest.fixture
def library_sends(monkeypatch: pytest.MonkeyPatch) -> list[str | bytes]:
    """Messages that go through trio-websocket's own ``send_message``."""
    sent: list[str | bytes] = []
    send = trio_websocket.WebSocketConnection.send_message

    async def counting(self: Any, message: Any) -> None:
        sent.append(message)
        await send(self, message)

    monkeypatch.setattr(trio_websocket.WebSocketConnection, "send_message", counting)
    return sent


async def test_a_session_sends_the_callers_pcm_in_one_append_per_100_ms(library_sends: list[str | bytes]) -> None:
    pcm = os.urandom(16000 * 2 * 3 + 640)  # 3.02 s of (noise) audio
    async with recorder() as rec:
        asr = Qwen3ASRRealtime(api_key=FAKE_KEY, base_url=f"ws://127.0.0.1:{rec.port}")
        results = await stream_through(asr, pcm, chunk_ms=20)
    assert results == []
    appends = rec.appends
    assert b"".join(a.audio for a in appends) == pcm  # every byte, in order, once
    assert [len(a.audio) for a in appends] == [3200] * 30 + [640]  # 10 messages per second of audio
    assert len({a.event_id for a in appends}) == len(appends)
    types = [json.loads(f)["type"] for f in rec.frames]
    assert types[0] == "session.update" and types[-1] == "session.finish"
    # the client wrote them itself: none went through the library's per-message path
    assert [m for m in library_sends if "input_audio_buffer.append" in str(m)[:80]] == []


async def test_frames_stay_whole_and_in_order_when_the_socket_is_full() -> None:
    """A slow reader fills the socket: sends wait for room (part of a frame may already be out)
    while another task's sends queue behind them; the server reads every frame intact."""
    async with recorder(read_delay=0.002) as rec:
        connect = websocket_connector(ApiKey(FAKE_KEY), base=f"ws://127.0.0.1:{rec.port}/api-ws/v1/realtime")
        async with connect(MODEL) as transport:
            writer = getattr(transport, "writer", None)
            assert isinstance(writer, FrameWriter) and writer.fast
            created = json.loads(await transport.receive())
            assert created["type"] == "session.created"
            waits = []  # sends that found the socket full and waited for room
            stream_send_all = writer._stream.send_all

            async def send_all(data: Any) -> None:
                waits.append(len(data))
                await stream_send_all(data)

            writer._stream.send_all = send_all

            async def sender(tag: str) -> None:
                for i in range(40):
                    pcm = bytes([i]) * 100_000  # ~133 KB of JSON: more than a socket buffer takes at once
                    append = f'{{"event_id": "{tag}_{i}", "type": "input_audio_buffer.append", "audio": ' \
                             f'"{base64.b64encode(pcm).decode()}"}}'
                    await transport.send(append)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender, "a")
                nursery.start_soon(sender, "b")
            with trio.fail_after(30):
                while len(rec.frames) < 80:
                    await trio.sleep(0.05)
            assert waits  # the full-socket path ran
    appends = rec.appends
    for tag in "ab":
        mine = [a for a in appends if a.event_id and a.event_id.startswith(tag + "_")]
        assert [a.event_id for a in mine] == [f"{tag}_{i}" for i in range(40)]
        assert all(a.audio == bytes([i]) * 100_000 for i, a in enumerate(mine))


async def test_sending_on_a_closed_connection_is_the_clients_error() -> None:
    async with recorder() as rec:
        connect = websocket_connector(ApiKey(FAKE_KEY), base=f"ws://127.0.0.1:{rec.port}/api-ws/v1/realtime")
        async with connect(MODEL) as transport:
            await transport.receive()
            await transport.aclose()
            with pytest.raises(ConnectionLostError, match="closed while sending"):
                await transport.send('{"type": "session.finish"}')


# ---- the lock around a stream's sends


async def test_send_lock_is_free_without_a_scheduler_trip_and_first_come_first_served() -> None:
    lock = SendLock()
    order: list[int] = []
    ran: list[str] = []

    async def waiter(i: int) -> None:
        async with lock:
            order.append(i)
            await trio.sleep(0.01)

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await lock.acquire()  # free: taken at once, no other task runs
        assert ran == [] and lock.locked()
        for i in range(5):
            nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()  # waiter i is parked before i + 1 comes
        lock.release()
    assert order == [0, 1, 2, 3, 4] and not lock.locked()
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()


# ---- end to end


async def test_a_realtime_stream_against_the_emulator_still_transcribes(
        emulator: DashScopeEmulator, script: ToneScript) -> None:
    asr = Qwen3ASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url, silence_duration_ms=500)
    results = await stream_through(asr, script.audio, chunk_ms=20)
    assert [r.text for r in results if r.is_final] == script.order
    partials = [r for r in results if not r.is_final]
    assert partials and all(r.text for r in partials)


# ---- a replay leaves room for other tasks


async def test_a_backlog_is_sent_with_other_tasks_running_between_its_messages() -> None:
    """Sends that find room do not checkpoint, so a replay of many logged chunks (after a
    reconnect) must give the scheduler a turn between them: else the connection's reader, its
    pings and every other stream wait until the whole backlog is out."""
    from voicekit_dashscope.asr.realtime_stream import RealtimeASRStream
    from voicekit_dashscope.client.realtime import RealtimeConnection

    from voicekit.asr.base import ASRConfig
    from voicekit.audio.frame import AudioFrame

    transport = InstantTransport(keeps_order=True)
    plugin = Qwen3ASRRealtime(connector=lambda model: None)  # type: ignore[arg-type, return-value]
    stream = RealtimeASRStream(plugin, plugin.session(16000, ASRConfig()), 16000)
    conn = RealtimeConnection(transport, plugin.spec)
    conn.protocol.receive(json.dumps({"event_id": "e1", "type": "session.created", "session": {"id": "s1"}}))
    for _ in range(10):  # one second logged while no connection was open
        await stream.send_audio(AudioFrame(bytes(3200), 16000))
    assert transport.sent == []
    seen: list[int] = []

    async def other() -> None:
        while len(seen) < 20:
            seen.append(len(transport.sent))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        stream.conn = conn
        await stream.send_audio(AudioFrame(bytes(3200), 16000))  # sends the backlog and this chunk
    assert len(transport.sent) == 11
    assert any(0 < n < 11 for n in seen), seen  # the other task ran while the backlog went out
