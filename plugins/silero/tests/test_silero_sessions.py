"""Real sessions in one process score their Silero windows together, and hear exactly what they
would hear alone: same events, same timestamps."""

from __future__ import annotations

import wave
from typing import Any, ClassVar

import attrs
import pytest
import trio
import trio.testing
from voicekit_silero import SileroVAD
from voicekit_silero.vad import batcher

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.session import Session, SessionConfig
from voicekit.testing import FakeASR, ScriptedSource, Silence, Speech
from voicekit.testing.data import speech
from voicekit.vad.base import VADCapabilities
from voicekit.vad.endpointer import EndpointerConfig

pytestmark = [pytest.mark.slow, pytest.mark.realspeech]


def clip(name: str) -> AudioFrame:
    with wave.open(str(speech(name))) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return AudioFrame(w.readframes(w.getnframes()), 16000, 1, 0.0)


class Unbatched:
    """The same Silero stream seen through the plain VADBackend API only (no ``prepare``)."""

    capabilities: ClassVar[VADCapabilities] = SileroVAD.capabilities

    def __init__(self, vad: SileroVAD) -> None:
        self.inner = vad
        self.sample_rate = vad.sample_rate
        self.frame_ms = vad.frame_ms

    def is_speech(self, pcm: bytes) -> bool:
        return self.inner.is_speech(pcm)

    def reset(self) -> None:
        self.inner.reset()


def scripts() -> list[list[Any]]:
    go, numbers, something = clip("goforward"), clip("numbers"), clip("something")
    return [
        [Silence(0.5), Speech(clip=go), Silence(1.0), Speech(clip=numbers), Silence(1.0)],
        [Silence(0.7), Speech(clip=numbers), Silence(0.9), Speech(clip=something), Silence(1.0)],
        [Silence(0.3), Speech(clip=something), Silence(1.1), Speech(clip=go), Silence(1.0)],
        [Silence(1.0), Speech(clip=go), Silence(0.6), Speech(clip=something), Silence(1.0)],
    ]


def run_sessions(frame_ms: int, realtime: bool, batched: bool) -> tuple[list[list[dict[str, Any]]], dict[str, int]]:
    """Four sessions at once on one trio run; their events (minus session ids) and the batcher's counts."""
    vads = [SileroVAD(frame_ms=frame_ms) for _ in range(4)]
    sessions = [
        Session(ScriptedSource(script, realtime=realtime),
                asr=FakeASR(["go forward", "one two three", "something else"] * 4, partial_every=0.0),
                vad=vad if batched else Unbatched(vad),
                config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=300), realtime=realtime))
        for vad, script in zip(vads, scripts(), strict=True)
    ]
    logs: list[list[dict[str, Any]]] = [[] for _ in sessions]
    stats: dict[str, int] = {}

    async def read(session: Session, out: list[dict[str, Any]]) -> None:
        async for e in session.events():
            d = attrs.asdict(e, recurse=True)
            d.pop("session_id", None)
            if d.get("vad") == "Unbatched":
                d["vad"] = "SileroVAD"
            out.append({"kind": type(e).__name__, **d})

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for s, out in zip(sessions, logs, strict=True):
                nursery.start_soon(s.run)
                nursery.start_soon(read, s, out)
        b = batcher(vads[0].model, 16000, "inline")
        stats.update(batches=b.batches, windows=b.windows, largest=b.largest)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    windows = sum(round(ScriptedSource(s).duration * 16000) // 512 for s in scripts())
    stats["expected_windows"] = windows
    return logs, stats


@pytest.mark.parametrize("realtime", [False, True], ids=["fast", "live"])
@pytest.mark.parametrize("frame_ms", [32, 30])
def test_sessions_in_one_process_share_batches_and_hear_the_same(frame_ms: int, realtime: bool) -> None:
    alone, plain = run_sessions(frame_ms, realtime, batched=False)
    together, stats = run_sessions(frame_ms, realtime, batched=True)
    assert plain["windows"] == 0  # the plain API scores inline, window by window
    # every window of every session went through the batcher, most of them several to a call
    assert stats["windows"] == stats["expected_windows"]
    assert stats["largest"] == 4
    assert stats["batches"] < stats["windows"] / 2
    for a, t in zip(alone, together, strict=True):
        assert [e["kind"] for e in a].count("SpeechStarted") == 2
        assert [e["kind"] for e in a].count("SpeechEnded") == 2
        assert t == a  # the same events, in the same order, at the same times


def test_one_session_alone_scores_without_waiting_for_company() -> None:
    vad = SileroVAD(frame_ms=32)
    session = Session(ScriptedSource(scripts()[0], realtime=False),
                      asr=FakeASR(["go forward", "one two three"], partial_every=0.0), vad=vad,
                      config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=300)))
    stats: dict[str, int] = {}
    starts: list[ev.Event] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            async for e in session.events():
                if isinstance(e, ev.SpeechStarted):
                    starts.append(e)
        b = batcher(vad.model, 16000, "inline")
        stats.update(batches=b.batches, windows=b.windows, largest=b.largest)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(starts) == 2
    assert stats["largest"] == 1 and stats["batches"] == stats["windows"] > 100
