"""The paced live session whose task steps per input frame ``test_live_steps.py`` pins and
``bench/bench_live_paced.py`` prints: 20 ms frames on trio's MockClock, utterances, replies played
through a paced player, a barge-in, silence between."""

from __future__ import annotations

import time

import trio
import trio.testing

from voicekit.audio.sinks import NullSink
from voicekit.handlers import Assistant, Turn
from voicekit.session import Session, SessionConfig, VADInterruption
from voicekit.testing import FakeASR, FakeTTS, ScriptedSource, Silence, Speech
from voicekit.testing.scripted import EnergyVAD
from voicekit.testing.steps import StepCounter
from voicekit.vad.endpointer import EndpointerConfig

RATE = 16000


def script(seconds: float) -> list[Silence | Speech]:
    """Four-second cycles: a 0.6 s request, a reply of ~1.5 s, silence; every third cycle the
    user talks again 0.5 s into the reply (a barge-in)."""
    out: list[Silence | Speech] = []
    k = 0
    while sum(s.seconds for s in out) + 4.0 <= seconds:
        out += [Silence(0.5), Speech(0.6)]
        if k % 3 == 2:
            out += [Silence(0.7), Speech(0.4), Silence(1.8)]
        else:
            out += [Silence(2.9)]
        k += 1
    return out


def build(seconds: float, *, policy: str = "block") -> tuple[Session, list[str]]:
    said: list[str] = []
    assistant = Assistant("steps")

    @assistant.intent(regex=r".+")
    async def answer(turn: Turn) -> str:
        said.append(turn.text)
        return "fine thank you " + turn.text

    session = Session(
        ScriptedSource(script(seconds), sample_rate=RATE, chunk_ms=20, realtime=True),
        asr=FakeASR(["hello there"] * 100, partial_every=0.0), vad=EnergyVAD(RATE, frame_ms=20),
        assistant=assistant, tts=FakeTTS(seconds_per_word=0.3), sink=NullSink(RATE),
        interruption=VADInterruption(min_speech_ms=0),
        config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=200), realtime=True,
                             audio_policy=policy))
    return session, said


def count_steps(seconds: float = 20.0, *, policy: str = "block", real_clock: bool = False) -> dict[str, float]:
    """Run the session on MockClock (or, ``real_clock``, in real time, adding the CPU seconds per
    audio second); task steps, loop rounds and per-task steps per input frame."""
    session, said = build(seconds, policy=policy)
    events: list[object] = []

    async def main() -> None:
        async def read() -> None:
            async for e in session.events():
                events.append(e)

        async with trio.open_nursery() as n:
            n.start_soon(session.run)
            n.start_soon(read)

    counter = StepCounter()
    clock = None if real_clock else trio.testing.MockClock(autojump_threshold=0)
    cpu0 = time.process_time()
    trio.run(main, clock=clock, instruments=[counter])
    cpu = time.process_time() - cpu0
    seconds = session.source.duration  # type: ignore[attr-defined]
    frames = round(seconds * 50)
    kinds: dict[str, int] = {}
    for e in events:
        kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
    return {"frames": frames, "cpu_per_audio_s": cpu / seconds, "steps_per_frame": counter.steps / frames,
            "wakeups_per_frame": counter.rounds / frames, "turns": len(said),
            "interrupted": kinds.get("ReplyInterrupted", 0), "finished": kinds.get("ReplyFinished", 0),
            **{"task:" + ".".join(k.split(".")[-2:]): v / frames for k, v in counter.by_task.most_common()}}
