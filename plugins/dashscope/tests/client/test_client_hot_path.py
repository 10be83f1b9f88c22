"""What the DashScope clients spend per audio message (issue 11): fewer messages, cheaper messages.

* the task plugins gather short frames into ``append_ms`` messages (a session sends 20 ms frames);
* a realtime audio append is encoded without building an event or running base64 through the JSON
  encoder, and is the very frame the general encoder writes;
* a free send lock is taken without a trip through the scheduler.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from testkit.common import FAKE_KEY, ToneScript, stream_through
from testkit.realtime import InstantTransport
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.client.realtime import RealtimeConnection
from voicekit_dashscope.protocol.realtime import (
    AudioAppend,
    ClientRealtimeProtocol,
    RealtimeProtocolError,
    get_realtime_model,
)
from voicekit_dashscope.protocol.realtime._codec import decode_client
from voicekit_dashscope.protocol.realtime._events import IdMaker
from voicekit_dashscope_emulator import DashScopeEmulator

from voicekit.errors import ConfigError


@pytest.fixture
def binary_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the binary WebSocket messages this process sends (audio, in the task protocol)."""
    sizes: list[int] = []
    send = trio_websocket.WebSocketConnection.send_message

    async def counting(self: Any, message: Any) -> None:
        if isinstance(message, (bytes, bytearray)):
            sizes.append(len(message))
        await send(self, message)

    monkeypatch.setattr(trio_websocket.WebSocketConnection, "send_message", counting)
    return sizes


async def test_task_stream_gathers_20ms_frames_into_100ms_messages(
        emulator: DashScopeEmulator, script: ToneScript, binary_sends: list[int]) -> None:
    asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url)
    results = await stream_through(asr, script.audio, chunk_ms=20)
    assert [r.text for r in results if r.is_final] == script.order  # nothing lost or repeated
    assert sum(binary_sends) == len(script.audio)
    assert max(binary_sends) == 3200  # 100 ms of 16 kHz PCM
    assert len(binary_sends) == -(-len(script.audio) // 3200)  # one message per 100 ms, not per frame


async def test_task_stream_append_ms_is_a_setting(
        emulator: DashScopeEmulator, script: ToneScript, binary_sends: list[int]) -> None:
    asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url, append_ms=40)
    results = await stream_through(asr, script.audio, chunk_ms=20)
    assert [r.text for r in results if r.is_final] == script.order
    assert max(binary_sends) == 1280
    assert sum(binary_sends) == len(script.audio)
    # frames as long as a message go out as they are
    binary_sends.clear()
    await stream_through(asr, script.audio, chunk_ms=100)
    assert max(binary_sends) == 3200
    with pytest.raises(ConfigError, match="append_ms"):
        FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url, append_ms=5)


def _open_protocol(seed: int) -> ClientRealtimeProtocol:
    p = ClientRealtimeProtocol(get_realtime_model("qwen3-asr-flash-realtime"), ids=IdMaker(seed))
    p.receive(json.dumps({"event_id": "event_1", "type": "session.created", "session": {"id": "sess_1"}}))
    return p


@pytest.mark.parametrize("pcm", [b"", b"\x01", bytes(range(256)) * 25, b"\x00\xff" * 1600])
def test_append_audio_writes_the_frame_the_encoder_writes(pcm: bytes) -> None:
    fast, general = _open_protocol(7), _open_protocol(7)
    frame = fast.append_audio(pcm)
    assert frame == general.send(AudioAppend(audio=pcm))
    assert fast.audio_bytes == general.audio_bytes == len(pcm)
    event = decode_client(frame)
    assert isinstance(event, AudioAppend) and event.audio == pcm and event.event_id


def test_append_audio_refuses_what_send_refuses() -> None:
    closed = ClientRealtimeProtocol(get_realtime_model("qwen3-asr-flash-realtime"))
    with pytest.raises(RealtimeProtocolError, match=r"before session\.created"):
        closed.append_audio(b"\x00\x00")
    p = _open_protocol(1)
    with pytest.raises(RealtimeProtocolError, match="15 MiB"):
        p.append_audio(bytes(15 * 1024 * 1024 + 2))
    assert p.audio_bytes == 0


async def test_a_free_send_lock_costs_no_scheduler_trip() -> None:
    spec = get_realtime_model("qwen3-asr-flash-realtime")
    conn = RealtimeConnection(InstantTransport(), spec)
    conn.protocol = _open_protocol(3)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other task")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)  # runs at this task's next trip through the scheduler
        await conn.send_audio(b"\x00\x00" * 160)
        await conn.send(AudioAppend(audio=b"\x00\x00"))
        assert ran == []  # neither send gave the other task a turn
        assert len(conn.transport.sent) == 2  # type: ignore[attr-defined]
    assert ran == ["other task"]


async def test_a_held_send_lock_keeps_messages_in_order() -> None:
    spec = get_realtime_model("qwen3-asr-flash-realtime")
    transport = InstantTransport()
    conn = RealtimeConnection(transport, spec)
    conn.protocol = _open_protocol(4)
    async with trio.open_nursery() as nursery:
        await conn.send_lock.acquire()  # someone is sending
        for i in range(3):
            nursery.start_soon(conn.send_audio, bytes([i, i]))
            await trio.testing.wait_all_tasks_blocked()
        conn.send_lock.release()
    assert [decode_client(t).audio for t in transport.sent] == [b"\x00\x00", b"\x01\x01", b"\x02\x02"]  # type: ignore[attr-defined]
