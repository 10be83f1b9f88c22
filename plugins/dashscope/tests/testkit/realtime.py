"""Shared pieces of the realtime (Qwen3-ASR / Qwen-Omni) tests: paced sources, a timing sink, a
transport that never waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio
from voicekit_dashscope_emulator.engines import FixtureEngine, tone_audio
from voicekit_dashscope_emulator.omni import OmniScript, RealtimeSettings, ToolRule
from voicekit_dashscope_emulator.realtime import RealtimeService

from voicekit.audio.frame import AudioFrame

RATE = 16000


class InstantTransport:
    """A realtime connection's transport whose sends never wait (as a WebSocket's do while its
    socket buffer has room): it records what is sent and receives nothing. ``keeps_order`` says
    whether it promises to send in call order (as the client's WebSocket transport does)."""

    def __init__(self, *, keeps_order: bool = False) -> None:
        self.keeps_order = keeps_order
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def receive(self) -> str:
        await trio.sleep_forever()
        raise AssertionError

    async def aclose(self) -> None:
        pass


class PacedSource:
    """An AudioSource playing PCM16 mono 16 kHz at real-time pace on trio's clock."""

    sample_rate = RATE
    channels = 1

    def __init__(self, pcm: bytes, chunk_ms: int = 20) -> None:
        self.pcm = pcm
        self.step = RATE * chunk_ms // 1000 * 2

    async def frames(self) -> AsyncIterator[AudioFrame]:
        t = 0.0
        start = trio.current_time()
        for i in range(0, len(self.pcm), self.step):
            frame = AudioFrame(self.pcm[i:i + self.step], RATE, 1, t)
            t += frame.duration
            await trio.sleep_until(start + t - frame.duration)
            yield frame

    async def aclose(self) -> None:
        pass


@attrs.define
class Write:
    t: float
    samples: int


class TimingSink:
    """Keeps every write with the trio time it happened (a device that never blocks)."""

    realtime = False
    channels = 1

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.writes: list[Write] = []

    async def write(self, frame: AudioFrame) -> None:
        self.writes.append(Write(trio.current_time(), frame.samples))

    async def aclose(self) -> None:
        pass

    def samples_between(self, t0: float, t1: float) -> int:
        return sum(w.samples for w in self.writes if t0 <= w.t < t1)


# user turns, as tones (the fixture engine answers the n-th utterance with the n-th sentence)
QUESTION = (440.0, 1.5)


def conversation(*turns: tuple[float, float, float]) -> bytes:
    """Tone audio from ``(silence_before_s, frequency_hz, seconds)`` turns, plus 6 s of silence."""
    segments: list[tuple[float, float]] = []
    for gap, freq, seconds in turns:
        segments += [(0.0, gap), (freq, seconds)]
    segments.append((0.0, 6.0))
    return tone_audio(segments)


def service(sentences: list[str], *, replies: tuple[str, ...] = ("It is sunny and warm today in the city.",),
            tool_rules: tuple[ToolRule, ...] = (), **settings: Any) -> RealtimeService:
    return RealtimeService(engine=FixtureEngine(sentences), settings=RealtimeSettings(vad="energy", **settings),
                           script=OmniScript(replies=replies, tool_rules=tool_rules))
