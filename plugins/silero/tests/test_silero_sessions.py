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


def test_one_session_alone_scores_inline_and_hears_the_same() -> None:
    """Alone in its run, a session's windows skip the batcher (a batch would hold one window)."""
    vad = SileroVAD(frame_ms=32)
    logs: dict[str, list[tuple[str, float]]] = {}
    stats: dict[str, int] = {}

    async def one(name: str, backend: Any) -> None:
        session = Session(ScriptedSource(scripts()[0], realtime=False),
                          asr=FakeASR(["go forward", "one two three"], partial_every=0.0), vad=backend,
                          config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=300)))
        out = logs.setdefault(name, [])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            async for e in session.events():
                out.append((type(e).__name__, e.t))

    async def main() -> None:
        await one("prepared", vad)
        b = batcher(vad.model, 16000, "inline")
        stats.update(windows=b.windows, streams=len(b.streams))

    calls = vad.model.calls
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    scored = vad.model.calls - calls
    vad.reset()
    trio.run(one, "plain", Unbatched(vad), clock=trio.testing.MockClock(autojump_threshold=0))
    assert stats == {"windows": 0, "streams": 1}
    assert scored == round(ScriptedSource(scripts()[0]).duration * 16000) // 512
    assert [k for k, _ in logs["prepared"]].count("SpeechStarted") == 2
    assert logs["prepared"] == logs["plain"]
