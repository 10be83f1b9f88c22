"""The serve limits with an agent conversation (``voicekit serve --agent``), in one process over real
loopback sockets, with a stand-in agent whose pace the test controls (the journey against the
DashScope emulator is tests/serve/test_serve_agent.py).

An agent that is still connecting to its service has not fallen behind real time: it is not shed.
An agent that stops taking audio once it runs has: it is shed (1013, ``overloaded``) like a slow
pipeline session. A drain closes an agent conversation with 1012 at its deadline.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import servekit  # type: ignore[import-not-found]  # next to this file
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.audio.sinks import AudioSink
from voicekit.audio.sources import AudioSource
from voicekit.serve.agent import AgentRecipe, SentenceJoiner
from voicekit.serve.server import VoiceServer

CHUNK = b"\0" * 3200  # 100 ms of silence at 16 kHz


class PacedAgent:
    """Connects for ``connect_s`` seconds, then takes audio (and says one short reply at the
    start); after ``stall_after_s`` seconds of audio it stops taking any."""

    sample_rate = 24000

    def __init__(self, connect_s: float, stall_after_s: float | None = None) -> None:
        self.connect_s = connect_s
        self.stall_after_s = stall_after_s
        self._send, self.events = trio.open_memory_channel[ev.Event](100)
        self._t0 = 0.0

    def now(self) -> float:
        return trio.current_time() - self._t0

    async def run(self, source: AudioSource, sink: AudioSink) -> None:
        self._t0 = trio.current_time()
        try:
            await trio.sleep(self.connect_s)
            await self._send.send(ev.ReplyStarted(t=self.now(), turn_id=1, text="Hel"))
            for delta in ("Hel", "lo. I am", " here"):
                await self._send.send(ev.ReplyText(t=self.now(), turn_id=1, text=delta))
            await sink.write(AudioFrame(b"\0\1" * 2400, 24000, 1, 0.0))
            await self._send.send(ev.ReplyFinished(t=self.now(), turn_id=1, text="Hello. I am here",
                                                   samples_played=2400, sample_rate=24000))
            taken = 0.0
            async for frame in source.frames():
                taken += frame.duration
                if self.stall_after_s is not None and taken >= self.stall_after_s:
                    await trio.sleep_forever()
        finally:
            self._send.close()


def serving(agent: Any, **config: Any) -> AbstractAsyncContextManager[VoiceServer]:
    return servekit.serving(AgentRecipe(factory=lambda: agent, model="paced", reply_rate=24000), **config)


async def talk(port: int, seconds: float, *, end: bool = True) -> tuple[list[dict[str, Any]], int, int]:
    """Real-time silence for ``seconds``, then the end: (text messages, reply bytes, close code)."""
    texts: list[dict[str, Any]] = []
    audio = 0
    async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000}))

        async def send() -> None:
            start = trio.current_time()
            for i in range(round(seconds * 10)):
                await trio.sleep_until(start + i / 10)
                try:
                    await ws.send_message(CHUNK)
                except ConnectionClosed:
                    return
            if end:
                await ws.send_message(json.dumps({"type": "end"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while True:
                    message = await ws.get_message()
                    if isinstance(message, bytes):
                        audio += len(message)
                    else:
                        texts.append(json.loads(message))
            except ConnectionClosed as closed:
                code = closed.reason.code
            nursery.cancel_scope.cancel()
    return texts, audio, code


def events_of(texts: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [t["event"] for t in texts if t["type"] == "event" and t["event"]["event"] == kind]


@pytest.mark.slow
async def test_an_agent_still_connecting_is_not_shed() -> None:
    """3 s to connect, over twice --max-backlog: the conversation goes on and ends normally."""
    async with serving(PacedAgent(connect_s=3.0), max_backlog=1.2) as server:
        with trio.fail_after(30):
            texts, audio, code = await talk(server.port or 0, 5.0)
    assert code == 1000, texts
    assert [t for t in texts if t["type"] == "audio_format"] == [
        {"type": "audio_format", "sample_rate": 24000, "channels": 1, "format": "pcm_s16le"}]
    assert audio == 4800
    assert [e["text"] for e in events_of(texts, "reply_text")] == ["Hello.", "I am here"]
    assert server.stats.shed == 0


@pytest.mark.slow
async def test_an_agent_that_stops_taking_audio_is_shed() -> None:
    async with serving(PacedAgent(connect_s=0.2, stall_after_s=1.0), max_backlog=1.2) as server:
        with trio.fail_after(30):
            texts, _, code = await talk(server.port or 0, 8.0)
    assert code == 1013, texts
    assert [t["code"] for t in texts if t["type"] == "error"] == ["overloaded"]
    assert server.stats.shed == 1


@pytest.mark.slow
async def test_a_drain_closes_an_agent_conversation_at_its_deadline() -> None:
    async with serving(PacedAgent(connect_s=0.1), drain_timeout=1.0) as server:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                got: list[tuple[list[dict[str, Any]], int, int]] = []

                async def client() -> None:
                    got.append(await talk(server.port or 0, 20.0, end=False))

                nursery.start_soon(client)
                while server.active == 0:
                    await trio.sleep(0.05)
                await server.drain()
    texts, _, code = got[0]
    assert code == 1012 and [t["code"] for t in texts if t["type"] == "error"] == ["restarting"], texts
    assert server.stats.drained == 1


class UnreachableAgent(PacedAgent):
    """Its service cannot be reached."""

    async def run(self, source: AudioSource, sink: AudioSink) -> None:
        try:
            await trio.sleep(0.2)
            raise ConnectionRefusedError("cannot reach the service at ws://127.0.0.1:9")
        finally:
            self._send.close()


async def test_an_agent_that_fails_ends_only_its_conversation() -> None:
    async with serving(UnreachableAgent(connect_s=0.0)) as server:
        with trio.fail_after(20):
            texts, _, code = await talk(server.port or 0, 1.0)
            assert code == 1011, texts
            (error,) = events_of(texts, "error")
            assert error["where"] == "agent" and "cannot reach the service" in error["message"], error
            assert events_of(texts, "session_ended")[0]["reason"] == "error"
            assert [t["code"] for t in texts if t["type"] == "error"] == ["session_failed"]
            _, _, code = await talk(server.port or 0, 1.0)  # the server goes on
            assert code == 1011
    assert server.stats.end_reasons == ["error", "error"]


def test_reply_text_comes_a_sentence_at_a_time() -> None:
    joiner = SentenceJoiner()
    assert joiner.add(1, "It is") == []
    assert joiner.add(1, " 3.5 degrees") == []  # a decimal point ends no sentence
    assert joiner.add(1, " today. And") == ["It is 3.5 degrees today."]
    assert joiner.add(1, " tomorrow?") == ["And tomorrow?"]
    assert joiner.finish(1) is None
    joiner.add(2, "Well, I")
    assert joiner.finish(2) == "Well, I"
    joiner.add(3, "A long sentence that")
    assert joiner.finish(3, heard="A long") == "A long …"  # cut in its first sentence: what was heard
    joiner.add(4, "One. Two")
    assert joiner.finish(4, heard="One. Tw") is None  # cut later: the page has the first sentence
