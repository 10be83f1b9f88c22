"""Issue 11: the live path's hops, the input-finished signal, and barge-in that pauses at once."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from voicekit import events as ev
from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.audio.sinks import MemorySink
from voicekit.errors import ASRError
from voicekit.handlers import Assistant, Turn
from voicekit.session import Session, SessionConfig, VADInterruption
from voicekit.testing import EnergyVAD, FakeASR, FakeTTS, ScriptedSource, Silence, Speech, collect
from voicekit.testing.steps import StepCounter
from voicekit.vad.endpointer import EndpointerConfig

EP = EndpointerConfig(pre_roll_ms=200, start_ms=60, start_window_ms=100, end_silence_ms=600)


def story() -> Assistant:
    a = Assistant("story")

    @a.fallback
    async def tell(turn: Turn) -> str:
        return " ".join(["once upon a time there was a robot"] * 3)  # 24 words: 7.2 s of FakeTTS

    return a


class StampedSink(MemorySink):
    """A MemorySink that notes when (trio time) each write happened."""

    def __init__(self) -> None:
        super().__init__(16000)
        self.at: list[float] = []

    async def write(self, frame: AudioFrame) -> None:
        self.at.append(trio.current_time())
        await super().write(frame)


def make(script: list[object], texts: list[str], *, sink: MemorySink | None = None,
         policy: VADInterruption | None = None, assistant: Assistant | None = None) -> Session:
    return Session(ScriptedSource(script), asr=FakeASR(texts), vad=EnergyVAD(frame_ms=20),  # type: ignore[arg-type]
                   assistant=assistant or story(), tts=FakeTTS(seconds_per_word=0.3),
                   sink=sink or MemorySink(16000), interruption=policy,
                   config=SessionConfig(endpointer=EP, realtime=True))


# -- the input-finished signal ------------------------------------------------------------------


async def test_drained_comes_after_the_last_turn_and_before_its_reply_ends(
        autojump_clock: trio.testing.MockClock) -> None:
    handled: list[float] = []
    a = Assistant("a")

    @a.fallback
    async def answer(turn: Turn) -> str:
        handled.append(trio.current_time())
        return "one two three four five"  # 1.5 s of audio

    s = make([Silence(1.0), Speech(1.0), Silence(1.0), Speech(1.0), Silence(0.3)], ["first", "second"],
             assistant=a)
    seen: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run)

        async def watch() -> None:
            assert not s.input_drained
            await s.drained()
            seen.append(f"drained at {trio.current_time():.2f}")

        nursery.start_soon(watch)
        async for event in s.events():
            if isinstance(event, ev.TurnEnded | ev.ReplyFinished | ev.SessionEnded):
                seen.append(event.kind)
    assert s.input_drained
    # the input (4.3 s) ended during the second utterance's end-of-speech silence: its final came
    # at finish(), the turn started, then drained() returned, and only then the reply finished
    assert seen.index("drained at 4.30") > [i for i, k in enumerate(seen) if k == "turn_ended"][-1]
    assert seen.index("drained at 4.30") < len(seen) - 2  # before the last ReplyFinished
    assert seen[-1] == "session_ended"
    assert len(handled) == 2 and handled[-1] == pytest.approx(4.3)


async def test_drained_returns_when_the_session_fails(autojump_clock: trio.testing.MockClock) -> None:
    s = Session(ScriptedSource([Silence(0.5), Speech(1.0), Silence(1.0)]), asr=FakeASR([], fail_after_utterances=0),
                vad=EnergyVAD(frame_ms=20), config=SessionConfig(endpointer=EP))
    with pytest.RaisesGroup(ASRError, allow_unwrapped=True, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            with trio.fail_after(60):
                await s.drained()
    assert s.input_drained


# -- barge-in: pause at once, resume after a short sound -----------------------------------------


async def test_default_policy_goes_silent_at_speech_start_and_cuts_after_300_ms(
        autojump_clock: trio.testing.MockClock) -> None:
    sink = StampedSink()
    # the reply starts at 3.1 s; the user speaks from 5.0 s (speech start detected at 5.06 s)
    tl = await collect(make([Silence(1.0), Speech(1.5), Silence(2.5), Speech(1.0), Silence(3.0)],
                            ["tell me a story", "stop"], sink=sink))
    started = next(e for e in tl.of(ev.SpeechStarted) if e.t > 4)
    cut = tl.first(ev.ReplyInterrupted)
    assert started.t == pytest.approx(5.06)
    assert cut.t == pytest.approx(5.3, abs=0.021)  # the cut itself: after 300 ms of voiced speech
    # nothing written from the speech start until the next turn's reply (after "stop", at 6.6 s)
    assert not [t for t in sink.at if started.t + 1e-9 < t < 6.0]
    assert cut.samples_played / 16000 == pytest.approx(started.t - 3.1, abs=0.021)


async def test_default_policy_resumes_after_a_cough(autojump_clock: trio.testing.MockClock) -> None:
    sink = StampedSink()
    tl = await collect(make([Silence(1.0), Speech(1.5), Silence(2.5), Speech(0.12), Silence(9.0)],
                            ["tell me a story", ""], sink=sink))
    assert not tl.of(ev.ReplyInterrupted)
    done = tl.first(ev.ReplyFinished)
    assert done.samples_played == round(24 * 0.3 * 16000) == sink.samples  # every word
    gaps = [(a, b) for a, b in itertools.pairwise(sink.at) if b - a > 0.03]
    assert len(gaps) == 1  # one pause, from the speech start ...
    paused, resumed = gaps[0]
    assert paused == pytest.approx(5.04, abs=0.021)
    # ... to resume_after_ms (300) after the last voiced frame (5.12 s)
    assert resumed == pytest.approx(5.12 + 0.3, abs=0.021)


async def test_pause_off_keeps_playing_over_short_sounds(autojump_clock: trio.testing.MockClock) -> None:
    sink = StampedSink()
    await collect(make([Silence(1.0), Speech(1.5), Silence(2.5), Speech(0.12), Silence(9.0)],
                       ["tell me a story", ""], sink=sink, policy=VADInterruption(300)))
    assert not [(a, b) for a, b in itertools.pairwise(sink.at) if b - a > 0.03]


# -- hops per frame ------------------------------------------------------------------------------


async def test_a_paced_input_costs_about_one_task_step_per_frame(autojump_clock: trio.testing.MockClock) -> None:
    """The source's frames are endpointed and fed to the recognizer in the task that reads them,
    and the reply player writes at the input's ticks: no task switch that carries no work."""
    steps = StepCounter()
    s = make([Silence(1.0), Speech(1.5), Silence(12.0)], ["tell me a story"])
    trio.lowlevel.add_instrument(steps)
    try:
        tl = await collect(s)
    finally:
        trio.lowlevel.remove_instrument(steps)
    frames = round(14.5 / 0.02)
    assert tl.first(ev.ReplyFinished).samples_played == round(7.2 * 16000)
    # 725 frames, 360 reply chunks written at the input's ticks, and FakeTTS's own checkpoint per
    # chunk: 2.05 steps a frame; before issue 11 it took 5.05 (source task, listener task, their
    # channel, the player's own timer, its channel)
    assert steps.steps / frames < 2.5, steps.steps / frames


def test_a_reply_paced_on_the_players_own_clock_raises_no_cancelled_per_chunk() -> None:
    """Once the input has ended the player keeps time itself, a wait per 20 ms chunk: it uses
    voicekit.audio._clock.sleep_until like the sources (same deadlines, so the writes stay 20 ms
    apart on MockClock), not trio.sleep_until, which raises and catches Cancelled at each wake."""
    sink = StampedSink()
    cancelled = 0

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal cancelled
        if event == "exception" and isinstance(arg[1], trio.Cancelled) and frame.f_code.co_name == "sleep_until":
            cancelled += 1
        return tracer

    async def main() -> None:
        # the input ends 1 s after the request: the 7.2 s reply plays on the player's own clock
        await collect(make([Silence(0.5), Speech(1.0), Silence(1.0)], ["tell me a story"], sink=sink))

    sys.settrace(tracer)
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        sys.settrace(None)
    assert sink.samples == round(7.2 * 16000)
    gaps = [b - a for a, b in itertools.pairwise(sink.at)]
    assert len(gaps) > 300 and all(abs(g - 0.02) < 1e-9 for g in gaps[-300:]), gaps[-300:]
    assert cancelled == 0


# -- a handler's Ctrl-C ------------------------------------------------------------------------


def test_keyboard_interrupt_from_a_handler_always_propagates() -> None:
    """Whichever order trio runs the handler and the reply reader in, a handler's Ctrl-C reaches
    the caller: the handler's channel is closed without a checkpoint, where a cancel (the reader
    has gone) would have replaced the KeyboardInterrupt."""
    a = Assistant("ki")

    @a.fallback
    async def hostile(turn: Turn) -> str:
        raise KeyboardInterrupt

    async def main() -> None:
        await collect(make([Silence(0.5), Speech(1.0), Silence(2.0)], ["boom"], assistant=a))

    for _ in range(24):  # trio runs a batch's tasks in either order: try both many times
        with pytest.raises(BaseException) as info:  # the group is checked below
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        exc: BaseException = info.value
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        assert isinstance(exc, KeyboardInterrupt), repr(info.value)


# -- the hand-off from the end of speech to the handler ------------------------------------------


class MarkedVAD(EnergyVAD):
    """Notes the scheduler round of each VAD decision: the frame that ends the speech is decided
    in the round that emits SpeechEnded (the next frame comes 20 ms later)."""

    def __init__(self, rounds: StepCounter) -> None:
        super().__init__(frame_ms=20)
        self.rounds = rounds
        self.last = 0

    def is_speech(self, pcm: bytes) -> bool:
        self.last = self.rounds.rounds
        return super().is_speech(pcm)


class PlainStream:
    """A FakeASR stream seen through a wrapper that does not deliver inline."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def send_audio(self, frame: AudioFrame) -> None:
        await self.inner.send_audio(frame)

    async def speech_started(self, t: float) -> None:
        await self.inner.speech_started(t)

    async def speech_ended(self, t: float) -> None:
        await self.inner.speech_ended(t)

    async def finish(self) -> None:
        await self.inner.finish()

    def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        return self.inner.__aiter__()  # type: ignore[no-any-return]


class PlainASR(FakeASR):
    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[PlainStream]:  # type: ignore[override]
        async with super().open_stream(config) as stream:
            yield PlainStream(stream)


@pytest.mark.parametrize(("asr", "hops"), [(FakeASR, 1), (PlainASR, 2)])
async def test_handler_is_called_in_the_round_after_the_end_of_speech(
        autojump_clock: trio.testing.MockClock, asr: type[FakeASR], hops: int) -> None:
    """A recognizer that delivers inline hands its final to the turn in the feeding task: the
    handler runs in the very next scheduler round (a plain stream costs one round more)."""
    rounds = StepCounter()
    vad = MarkedVAD(rounds)
    after: list[int] = []
    a = Assistant("a")

    @a.fallback
    async def answer(turn: Turn) -> str:
        after.append(rounds.rounds - vad.last)
        return "ok"

    s = Session(ScriptedSource([Silence(0.5), Speech(1.0), Silence(1.0), Speech(1.0), Silence(1.0)]),
                asr=asr(["first", "second"], partial_every=0), vad=vad, assistant=a,
                config=SessionConfig(endpointer=EP, realtime=True))
    trio.lowlevel.add_instrument(rounds)
    try:
        tl = await collect(s)
    finally:
        trio.lowlevel.remove_instrument(rounds)
    assert [e.text for e in tl.of(ev.TurnEnded)] == ["first", "second"]
    assert after == [hops, hops]


class SpawnCounter(StepCounter):
    """StepCounter that also counts the tasks spawned."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1


class StepMarkedVAD(EnergyVAD):
    """Notes the task step count at each VAD decision: the frame that ends the speech is decided in
    the feeding task's step that emits SpeechEnded (the next frame comes 20 ms later)."""

    def __init__(self, counter: StepCounter) -> None:
        super().__init__(frame_ms=20)
        self.counter = counter
        self.last = 0
        self.spawned = 0

    def is_speech(self, pcm: bytes) -> bool:
        self.last = self.counter.steps
        if isinstance(self.counter, SpawnCounter):
            self.spawned = self.counter.spawned
        return super().is_speech(pcm)


@pytest.mark.parametrize(("asr", "steps"), [(FakeASR, 1), (PlainASR, 3)])
async def test_the_handler_takes_the_step_after_the_end_of_speech_alone(
        autojump_clock: trio.testing.MockClock, asr: type[FakeASR], steps: int) -> None:
    """Between the end of speech and the handler's first line no task takes a step that carries no
    hand-off work: with an inline recognizer the handler's step is the very next one (a plain stream
    adds the recognizer task's step and the event reader's step for SpeechEnded). The turn's events
    reach a subscriber only after the handler's first step, so a subscriber (``collect`` reads every
    event here) never runs ahead of it in the same round; their times stay exact. And no task is
    spawned on the way: a task started ahead, already in its cancel scope, takes the handler."""
    counter = SpawnCounter()
    vad = StepMarkedVAD(counter)
    between: list[int] = []
    spawned: list[int] = []
    called: list[float] = []
    seen_before_call: list[str] = []
    a = Assistant("a")
    texts = ["one", "two", "three", "four", "five", "six"]

    @a.fallback
    async def answer(turn: Turn) -> str:
        between.append(counter.steps - vad.last)
        spawned.append(counter.spawned - vad.spawned)
        called.append(trio.current_time())
        return "ok"

    script: list[object] = [Silence(0.5)]
    for _ in texts:
        script += [Speech(0.6), Silence(0.9)]
    s = Session(ScriptedSource(script), asr=asr(texts, partial_every=0), vad=vad, assistant=a,
                config=SessionConfig(endpointer=EP, realtime=True))
    events: list[tuple[int, ev.Event]] = []
    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            async for event in s.events():
                events.append((len(called), event))
                if isinstance(event, ev.IntentMatched) and len(called) < event.turn_id:
                    seen_before_call.append(f"turn {event.turn_id}")
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert [e.text for _, e in events if isinstance(e, ev.TurnEnded)] == texts
    # trio runs the tasks of a round in either order: six turns would show a reader going first
    assert between == [steps] * len(texts), between
    assert spawned == [0] * len(texts), spawned
    if asr is FakeASR:
        assert not seen_before_call, seen_before_call
    # the held events keep their times: the end of speech, the turn and the call at one instant
    ends = [e.t for _, e in events if isinstance(e, ev.SpeechEnded)]
    matched = [e.t for _, e in events if isinstance(e, ev.IntentMatched)]
    t0 = called[0] - matched[0]
    assert [m + t0 for m in matched] == pytest.approx(called, abs=1e-9)
    assert ends == pytest.approx(matched, abs=1e-9)
    assert ends[0] == pytest.approx(0.5 + 0.6 + EP.end_silence_ms / 1000, abs=0.021)
