"""Barge-in latency on the local (non-Omni) path, on real-time paced audio.

A session hears a real recording ("go somewhere and do something"), answers with a long espeak-ng
reply, and 4 s later a second real recording ("go forward ten meters") interrupts it. Latency is
measured from the first voiced frame of the interrupting speech (where the VAD, run on the clip
alone, first hears speech) to the moment the last reply sample written to the sink would have
played. Everything runs on the real clock, paced like a microphone and a speaker.

    .venv/bin/python bench/bench_bargein.py [--trials 3]
"""

from __future__ import annotations

import argparse
import statistics
import wave

import trio

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.handlers import Assistant, Turn
from voicekit.plugins.build import make_asr, make_tts
from voicekit.session import Session, SessionConfig
from voicekit.session.interruption import InterruptionPolicy, SemanticInterruption, VADInterruption
from voicekit.testing import ScriptedSource, Silence, Speech
from voicekit.testing.data import speech
from voicekit.vad.endpointer import Endpointer, SpeechStart
from voicekit.vad.webrtc import WebRTCVAD


def clip(name: str) -> AudioFrame:
    with wave.open(str(speech(name))) as w:
        return AudioFrame(w.readframes(w.getnframes()), w.getframerate())


def first_voiced(frame: AudioFrame) -> float:
    ep = Endpointer(WebRTCVAD(16000, 30, 2))
    for item in ep.push(frame):
        if isinstance(item, SpeechStart):
            return item.voiced_at
    raise RuntimeError("no speech in clip")


class TimedSink:
    def __init__(self, rate: int) -> None:
        self.sample_rate = rate
        self.channels = 1
        self.realtime = False
        self.last_end = 0.0

    async def write(self, frame: AudioFrame) -> None:
        await trio.lowlevel.checkpoint()
        self.last_end = trio.current_time() + frame.duration

    async def aclose(self) -> None:
        pass


def story() -> Assistant:
    a = Assistant("story")

    @a.fallback
    async def tell(turn: Turn) -> str:
        return ("Once upon a time there was a small robot that lived on a long straight line. "
                "Every morning it rolled forward to see the sun, and every evening it rolled back home.")

    return a


async def trial(policy: InterruptionPolicy) -> float | None:
    first, second = clip("something"), clip("goforward")
    at = first.duration + 0.5 + 4.0  # the interrupting speech starts here in the input
    script = [Silence(0.5), Speech(clip=first), Silence(4.0), Speech(clip=second), Silence(3.0)]
    tts = make_tts("espeak")
    sink = TimedSink(tts.capabilities.sample_rate)
    source = ScriptedSource(script, realtime=True)
    session = Session(source, asr=make_asr("moonshine"), vad=WebRTCVAD(16000, 30, 2), assistant=story(),
                      tts=tts, sink=sink, interruption=policy, config=SessionConfig(realtime=True))
    start = trio.current_time()
    cut_end: float | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        async for event in session.events():
            if isinstance(event, ev.ReplyInterrupted) and cut_end is None:
                cut_end = sink.last_end  # the cut reply's last sample; the next reply comes later
    if cut_end is None:
        return None
    onset = start + at + first_voiced(second)
    return cut_end - onset


def main() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    policies: list[tuple[str, object]] = [
        ("vad, min_speech_ms=0", lambda: VADInterruption(0)),
        ("vad, min_speech_ms=100", lambda: VADInterruption(100)),
        ("vad, min_speech_ms=300 (default)", lambda: VADInterruption(300)),
        ("semantic (pause at once, decide on partials)", lambda: SemanticInterruption()),
    ]
    for name, make in policies:
        results = [trio.run(trial, make()) for _ in range(args.trials)]  # type: ignore[operator]
        got = [r * 1000 for r in results if r is not None]
        if not got:
            print(f"{name}: never interrupted")
            continue
        print(f"{name}: barge-in latency median {statistics.median(got):.0f} ms "
              f"(min {min(got):.0f}, max {max(got):.0f}; {len(got)}/{len(results)} interrupted)")
    print("(semantic: playback is paused — silent — from the speech start; the figure is when the reply "
          "was finally cut)")


if __name__ == "__main__":
    main()
