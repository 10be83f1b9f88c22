"""End of speech → handler called, on the real clock, paced like a microphone (issue 11).

One live session: scripted audio (``--turns`` utterances of 1 s, 0.8 s apart) released every 20 ms
on trio's real clock, the energy VAD, a scripted recognizer that answers at each end of speech (no
partials), an intent handler that notes when it is called, a tone for the reply and a null sink.
The figure is from the ``SpeechEnded`` event (the endpointer's decision) to the handler's first
line, split at the final ``Transcript`` and ``IntentMatched`` events (each event's ``t`` is the
moment it was emitted, although subscribers receive a turn's events only after its handler's first
step); and the CPU seconds the process spent per second of audio. ``--raw`` also prints every
turn's figure, to pool several runs (the machine is noisy: compare medians of runs, interleaved).

    .venv/bin/python bench/bench_handoff.py [--turns 20] [--raw]
"""

from __future__ import annotations

import argparse
import resource
import statistics

import trio

from voicekit import events as ev
from voicekit.audio.sinks import NullSink
from voicekit.handlers import Assistant, Turn
from voicekit.session import Session, SessionConfig
from voicekit.testing import EnergyVAD, FakeASR, FakeTTS, ScriptedSource, Silence, Speech
from voicekit.vad.endpointer import EndpointerConfig


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def summary(name: str, xs: list[float]) -> str:
    s = sorted(xs)
    p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
    return f"{name}: median {statistics.median(s):.3f} ms, p99 {p99:.3f} ms, max {s[-1]:.3f} ms (n={len(s)})"


async def run(turns: int, raw: bool = False) -> None:
    called: list[float] = []
    a = Assistant("bench")

    @a.fallback
    async def answer(turn: Turn) -> str:
        called.append(trio.current_time())
        return "okay"

    script: list[object] = [Silence(0.5)]
    for _ in range(turns):
        script += [Speech(1.0), Silence(0.8)]
    audio_s = 0.5 + turns * 1.8
    session = Session(ScriptedSource(script), asr=FakeASR(["go forward"] * turns, partial_every=0),  # type: ignore[arg-type]
                      vad=EnergyVAD(), assistant=a, tts=FakeTTS(seconds_per_word=0.3), sink=NullSink(16000),
                      config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=200), realtime=True))
    events: list[tuple[float, ev.Event]] = []
    c0 = cpu()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        async for event in session.events():
            events.append((trio.current_time() - session.now() + event.t, event))
    used = cpu() - c0
    ends = [t for t, e in events if isinstance(e, ev.SpeechEnded)]
    finals = [t for t, e in events if isinstance(e, ev.Transcript) and e.is_final]
    intents = [t for t, e in events if isinstance(e, ev.IntentMatched)]
    if not (len(ends) == len(finals) == len(intents) == len(called) == turns):
        raise SystemExit(f"bench_handoff: expected {turns} turns, got {len(ends)} ends, {len(called)} handler calls")
    handoff = [(h - e) * 1000 for e, h in zip(ends, called, strict=True)]
    print(summary("end of speech -> handler called", handoff))
    for name, xs, ys in (("  end of speech -> final transcript event", ends, finals),
                         ("  final -> IntentMatched event", finals, intents),
                         ("  IntentMatched -> handler called", intents, called)):
        print(summary(name, [(y - x) * 1000 for x, y in zip(xs, ys, strict=True)]))
    print(f"CPU s per audio s: {used / audio_s:.4f} ({audio_s:.0f} s of audio, whole session)")
    if raw:
        print("raw ms:", " ".join(f"{x:.4f}" for x in handoff))


def main() -> None:
    import voicekit.logging

    voicekit.logging.configure("warning")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--raw", action="store_true", help="also print each turn's end of speech -> handler (ms)")
    args = parser.parse_args()
    trio.run(run, args.turns, args.raw)


if __name__ == "__main__":
    main()
