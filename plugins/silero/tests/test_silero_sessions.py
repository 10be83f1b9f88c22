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


def run_together(sources: list[ScriptedSource], vads: list[SileroVAD], batched: bool,
                 realtime: bool) -> tuple[list[list[dict[str, Any]]], dict[str, int]]:
    """One session per source and VAD, all at once on one trio run (MockClock); their events (minus
    session ids) and the counts of the run's batcher."""
    sessions = [
        Session(source, asr=FakeASR(["go forward", "one two three", "something else"] * 4, partial_every=0.0),
                vad=vad if batched else Unbatched(vad),
                config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=300), realtime=realtime))
        for vad, source in zip(vads, sources, strict=True)
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
        b = batcher(vads[0].model, 16000, "inline", vads[0].batch_window_ms / 1000)
        stats.update(batches=b.batches, windows=b.windows, largest=b.largest)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return logs, stats


def run_sessions(frame_ms: int, realtime: bool, batched: bool) -> tuple[list[list[dict[str, Any]]], dict[str, int]]:
    """Four sessions at once on one trio run; their events (minus session ids) and the batcher's counts."""
    vads = [SileroVAD(frame_ms=frame_ms) for _ in range(4)]
    logs, stats = run_together([ScriptedSource(s, realtime=realtime) for s in scripts()], vads, batched, realtime)
    stats["expected_windows"] = sum(round(ScriptedSource(s).duration * 16000) // 512 for s in scripts())
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


class LateSource(ScriptedSource):
    """A live source that starts ``delay`` seconds after its session (sessions out of phase)."""

    def __init__(self, script: list[Any], delay: float) -> None:
        super().__init__(script, realtime=True)
        self.delay = delay

    async def frames(self):  # type: ignore[no-untyped-def]
        await trio.sleep(self.delay)
        async for f in super().frames():
            yield f


def run_staggered(batched: bool, batch_window_ms: float = 0.0) -> tuple[list[list[dict[str, Any]]], dict[str, int]]:
    """Four live sessions whose sources start 0, 3, 6 and 9 ms apart (MockClock)."""
    vads = [SileroVAD(frame_ms=32, batch_window_ms=batch_window_ms) for _ in range(4)]
    sources = [LateSource(script, 0.003 * i) for i, script in enumerate(scripts())]
    return run_together(sources, vads, batched, realtime=True)


def test_sessions_out_of_phase_batch_only_with_a_batch_window() -> None:
    """Live sessions a few ms apart never have windows due in the same round: each batch holds
    one window. With ``batch_window_ms=10`` a window waits for the others (at most 10 ms), the four
    sessions share every call, and they hear the same: the same events at the same audio times,
    each event at most 10 ms (the window) later."""
    alone, _ = run_staggered(batched=False)
    apart, plain = run_staggered(batched=True)
    together, waited = run_staggered(batched=True, batch_window_ms=10)
    assert plain["largest"] == 1  # no batching without the window
    assert waited["windows"] == plain["windows"] > 0
    assert waited["largest"] == 4
    assert waited["batches"] <= waited["windows"] / 3.5
    assert apart == alone
    for a, t in zip(alone, together, strict=True):
        assert [e["kind"] for e in a].count("SpeechStarted") == 2
        assert [{k: v for k, v in e.items() if k != "t"} for e in t] == \
            [{k: v for k, v in e.items() if k != "t"} for e in a]
        late = [round(x["t"] - y["t"], 9) for x, y in zip(t, a, strict=True)]
        assert all(0.0 <= d <= 0.010 for d in late), late
        assert max(late) > 0.0  # the window does cost time: decisions wait for it


def test_a_window_cancelled_while_it_waits_leaves_the_batch_to_the_others() -> None:
    """The leader of a batch is cancelled during its batch window: the stream that joined it still
    gets its score (the same as inline), and the cancelled stream's window is scored inline later."""
    pcm = clip("goforward").pcm[16000 * 2 : 16000 * 2 + 1024]
    reference = SileroVAD(frame_ms=32).probability(pcm)
    a, b = SileroVAD(frame_ms=32, batch_window_ms=10), SileroVAD(frame_ms=32, batch_window_ms=10)
    got: dict[str, float] = {}

    async def main() -> None:
        async def first() -> None:
            with trio.move_on_after(0.005):
                await a.prepare(pcm)

        async def second() -> None:
            await trio.sleep(0.002)
            await b.prepare(pcm)
            got["b_at"] = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            nursery.start_soon(second)
        bt = batcher(a.model, 16000, "inline", 0.010)
        got.update(batches=bt.batches, windows=bt.windows)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert got == {"b_at": pytest.approx(0.012), "batches": 1, "windows": 1}  # b waited its own 10 ms
    assert b.probability(pcm) == reference
    assert a.probability(pcm) == reference  # not prepared: scored inline
