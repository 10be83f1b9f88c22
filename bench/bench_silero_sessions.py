"""Silero in real sessions: where the CPU goes, and what batching across sessions saves.

Three figures, each in a fresh process, rounds interleaved (the machine is shared: compare the
figures of one run, not across runs):

* ``onnx``     — the bare ONNX Runtime call on consecutive 32 ms windows of real speech, through
  ``InferenceSession.run`` as any Silero user calls it: the floor for one stream;
* ``vad``      — :class:`voicekit_silero.SileroVAD` ``is_speech`` on 32 ms frames: the floor plus
  the plugin's own work;
* ``sessions`` — N :class:`voicekit.session.Session` objects in one trio run, fast mode (as fast
  as possible), Silero at 32 ms frames, FakeASR, no reply audio; ``batched`` is the session as
  it is (each frame goes through ``vad.prepare`` first: the windows of every session due at the
  same moment are scored in one call), ``unbatched`` hides ``prepare`` from the session (one
  call per window, inline).

CPU seconds per audio second (per session for ``sessions``), the median of the rounds, and the
batches formed:

    .venv/bin/python bench/bench_silero_sessions.py                 # N = 1, 4, 16; 3 rounds
    .venv/bin/python bench/bench_silero_sessions.py --n 1,32 --rounds 5 --seconds 30

``--live N`` (N comma-separated) measures the live row instead: N real-time sessions in one
process on trio's real clock, starts spread over 3 s (golden-ratio offsets, as the peers
harness does), each hearing about ``--seconds`` of real commands with pauses, Silero at 32 ms
→ FakeASR → a one-intent assistant → FakeTTS → NullSink, barge-in at speech start. It prints:
CPU per session per audio second; the real-time factor (for the slowest session, its first
frame to its last VAD decision, over its audio time: 1.00 keeps real time); the VAD lag (how
long after the frame that completes a window the endpointer gets its decision, p50/p99/max);
speech start → SpeechStarted (speech start: the frame holding the first window Silero, alone,
scores as speech, delivered); barge-in (SpeechStarted → ReplyInterrupted); the batches; the load
average. ``--batch-window-ms`` sets SileroVAD's ``batch_window_ms`` (default 0: off); several
values are run interleaved:

    .venv/bin/python bench/bench_silero_sessions.py --live 20,100 --seconds 60 --rounds 1
    .venv/bin/python bench/bench_silero_sessions.py --live 100 --batch-window-ms 0,10 --rounds 2

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any


def speech_pcm(seconds: float) -> bytes:
    """``seconds`` of real speech at 16 kHz (the LibriVox clips, end to end, repeated)."""
    import wave

    from voicekit.testing.data import librivox_clips

    parts = []
    for path, _text in librivox_clips():
        with wave.open(str(path)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1
            parts.append(w.readframes(w.getnframes()))
    pcm = b"".join(parts)
    need = int(seconds * 16000) * 2
    return (pcm * (need // len(pcm) + 1))[:need]


def child(kind: str, n: int, seconds: float) -> dict[str, Any]:
    import numpy as np

    pcm = speech_pcm(seconds)
    audio_s = len(pcm) / 32000
    if kind in ("onnx", "vad"):
        from voicekit_silero import SileroVAD

        vad = SileroVAD(frame_ms=32)
        frames = [pcm[i : i + 1024] for i in range(0, len(pcm) - 1023, 1024)]
        if kind == "vad":
            c0 = time.process_time()
            for f in frames:
                vad.is_speech(f)
            cpu = time.process_time() - c0
        else:
            session = vad.model._session  # the ONNX Runtime session the plugin shares
            x = np.frombuffer(pcm, "<i2").astype(np.float32) / np.float32(32768.0)
            rows = [np.concatenate((x[max(0, i - 64) : i] if i else np.zeros(64, np.float32),
                                    x[i : i + 512]))[None, :] for i in range(0, x.size - 511, 512)]
            sr = np.array(16000, dtype=np.int64)
            state = np.zeros((2, 1, 128), dtype=np.float32)
            c0 = time.process_time()
            for row in rows:
                _, state = session.run(None, {"input": row, "state": state, "sr": sr})
            cpu = time.process_time() - c0
        return {"cpu_per_audio_s": cpu / audio_s, "us_per_window": cpu / len(frames) * 1e6}

    import trio
    import trio.testing
    from voicekit_silero import SileroVAD
    from voicekit_silero.vad import batcher

    from voicekit.audio.frame import AudioFrame
    from voicekit.session import Session, SessionConfig
    from voicekit.testing import FakeASR, ScriptedSource, Speech
    from voicekit.vad.endpointer import EndpointerConfig

    class Unbatched:
        capabilities = SileroVAD.capabilities

        def __init__(self, vad: SileroVAD) -> None:
            self.inner, self.sample_rate, self.frame_ms = vad, vad.sample_rate, vad.frame_ms

        def is_speech(self, pcm: bytes) -> bool:
            return self.inner.is_speech(pcm)

        def reset(self) -> None:
            self.inner.reset()

    batched = kind == "batched"
    vads = [SileroVAD(frame_ms=32) for _ in range(n)]
    step = len(pcm) // max(n, 1) // 1024 * 1024
    sessions = [
        Session(ScriptedSource([Speech(clip=AudioFrame(pcm[i * step :] + pcm[: i * step], 16000, 1, 0.0))],
                               realtime=False),
                asr=FakeASR(["hello"] * 1000, partial_every=0.0),
                vad=vad if batched else Unbatched(vad),
                config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=200)))
        for i, vad in enumerate(vads)
    ]
    stats: dict[str, Any] = {}

    async def drain(s: Session) -> None:
        async for _ in s.events():
            pass

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for s in sessions:
                nursery.start_soon(s.run)
                nursery.start_soon(drain, s)
        b = batcher(vads[0].model, 16000, "inline")
        stats.update(batches=b.batches, windows=b.windows, largest=b.largest)

    c0 = time.process_time()
    trio.run(main)
    cpu = time.process_time() - c0
    return {"cpu_per_audio_s": cpu / (audio_s * n), **stats}


def live_script(seconds: float) -> tuple[list[Any], list[float]]:
    """Alternating pauses and real utterances (the command recordings), about ``seconds`` long,
    and where the speech in each utterance begins (its first window Silero, alone and inline,
    scores as speech: the recordings open with some silence of their own)."""
    import wave

    from voicekit_silero import SileroVAD

    from voicekit.audio.frame import AudioFrame
    from voicekit.testing import Silence, Speech
    from voicekit.testing.data import speech

    clips, leads = [], []
    for name in ("goforward", "numbers", "something"):
        with wave.open(str(speech(name))) as w:
            clip = AudioFrame(w.readframes(w.getnframes()), 16000, 1, 0.0)
        vad = SileroVAD(frame_ms=32)
        first = next(i for i in range(0, len(clip.pcm) - 1023, 1024) if vad.is_speech(clip.pcm[i : i + 1024]))
        clips.append(clip)
        leads.append(first / 32000)
    script: list[Any] = []
    onsets: list[float] = []
    t, k = 0.0, 0
    while t < seconds:
        gap, c = (0.6, 1.0, 1.4)[k % 3], k % len(clips)
        script += [Silence(gap), Speech(clip=clips[c])]
        onsets.append(t + gap + leads[c])
        t += gap + clips[c].duration
        k += 1
    return script, onsets


#: what the fake recognizer hears; the replies ("OK: " + text, 0.3 s per word) run into the next
#: utterance, so most replies are interrupted, as in the peers harness
TEXTS = ["go forward ten meters and then turn to the left", "one two three four five six seven eight",
         "something else that I would like you to do now"]


def live_child(n: int, seconds: float, batch_window_ms: float) -> dict[str, Any]:
    """``n`` live sessions on trio's real clock, starts spread over 3 s; Silero (32 ms frames)
    → FakeASR → a one-intent assistant → FakeTTS → NullSink, barge-in on speech start."""
    import math
    import resource

    import trio
    from voicekit_silero import SileroVAD
    from voicekit_silero.vad import batcher

    import voicekit.logging
    from voicekit import events as ev
    from voicekit.audio.sinks import NullSink
    from voicekit.handlers import Assistant, Turn
    from voicekit.session import Session, SessionConfig, VADInterruption
    from voicekit.testing import FakeASR, FakeTTS, ScriptedSource
    from voicekit.vad.endpointer import EndpointerConfig

    voicekit.logging.configure("warning")

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    script, onsets_s = live_script(seconds)
    lags: list[float] = []  # VAD decision time - release of the frame that completed its window

    class Source(ScriptedSource):
        def __init__(self, stagger: float) -> None:
            super().__init__(script, realtime=True)
            self.stagger = stagger
            self.t0 = 0.0

        async def frames(self):  # type: ignore[no-untyped-def]
            await trio.sleep(self.stagger)
            self.t0 = trio.current_time()
            async for f in super().frames():
                yield f

    class TimedSilero(SileroVAD):
        """SileroVAD that notes, at each decision, how late it comes after its audio arrived."""

        source: Source
        decisions = 0
        last = 0.0  # when the last decision came

        def is_speech(self, pcm: bytes) -> bool:
            k = self.decisions = self.decisions + 1
            released = self.source.t0 + math.ceil(k * 32 / 20 - 1e-9) * 0.020
            self.last = trio.current_time()
            lags.append(self.last - released)
            return super().is_speech(pcm)

    kw = {"batch_window_ms": batch_window_ms} if batch_window_ms else {}
    sessions, sources, vads = [], [], []
    for i in range(n):
        src = Source((i * 1.618034) % 3.0)
        vad = TimedSilero(frame_ms=32, **kw)
        vad.source = src
        a = Assistant("bench")

        @a.intent(regex=r".+")
        async def answer(turn: Turn) -> str:
            return "OK: " + turn.text

        sessions.append(Session(
            src, asr=FakeASR(TEXTS * 200, partial_every=0.0),
            vad=vad, assistant=a, tts=FakeTTS(seconds_per_word=0.3), sink=NullSink(16000),
            interruption=VADInterruption(min_speech_ms=0),
            config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=200), realtime=True)))
        sources.append(src)
        vads.append(vad)
    logs: list[list[tuple[str, float]]] = [[] for _ in sessions]
    stats: dict[str, Any] = {}

    async def read(s: Session, out: list[tuple[str, float]]) -> None:
        async for e in s.events():
            if isinstance(e, (ev.SpeechStarted, ev.ReplyInterrupted)):
                out.append((type(e).__name__, e.t))

    async def main() -> None:
        c0 = cpu()
        async with trio.open_nursery() as nursery:
            for s, out in zip(sessions, logs, strict=True):
                nursery.start_soon(s.run)
                nursery.start_soon(read, s, out)
        stats["cpu"] = cpu() - c0
        stats["bases"] = [trio.current_time() - s.now() for s in sessions]
        v = vads[0]
        b = batcher(v.model, 16000, v.inference, v.batch_window_ms / 1000.0)
        stats.update(batches=b.batches, windows=b.windows, largest=b.largest)

    trio.run(main)
    onsets, barge = [], []
    for src, log, base in zip(sources, logs, stats.pop("bases"), strict=True):
        started = [base + t for k, t in log if k == "SpeechStarted"]
        for t in started:  # speech start (its first frame delivered) → SpeechStarted
            on = max((s for s in onsets_s if s <= t - src.t0), default=None)
            if on is not None:
                onsets.append(t - (src.t0 + math.ceil(on / 0.02 - 1e-9) * 0.02))
        for k, t in log:
            if k == "ReplyInterrupted":
                s = max((x for x in started if x <= base + t), default=None)
                if s is not None:
                    barge.append(base + t - s)
    audio = sources[0].duration
    return {"n": n, "audio_s": audio, "cpu_per_audio_s": stats["cpu"] / (audio * n),
            # the last decision of the slowest session, over its audio time: 1.00 keeps real time
            "realtime_factor": max((v.last - s.t0) / audio for v, s in zip(vads, sources, strict=True)),
            "lag": lags, "onset": onsets, "barge": barge, "loadavg": os.getloadavg(),
            "batches": stats["batches"], "windows": stats["windows"], "largest": stats["largest"]}


def run_child(kind: str, n: int, seconds: float, window_ms: float = 0.0) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(n), str(seconds), str(window_ms)],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


def live_main(ns: list[int], windows: list[float], rounds: int, seconds: float) -> None:
    plan = [(n, w) for n in ns for w in windows]
    runs: dict[tuple[int, float], list[dict[str, Any]]] = {p: [] for p in plan}
    for r in range(rounds):
        for n, w in plan[r % len(plan):] + plan[: r % len(plan)]:
            before = os.getloadavg()[0]
            res = run_child("live", n, seconds, w)
            res["load_before"] = before
            runs[(n, w)].append(res)
            print(f"round {r + 1}: live n={n} batch_window_ms={w:g}: cpu/audio_s={res['cpu_per_audio_s']:.5f} "
                  f"rt={res['realtime_factor']:.3f} lag p99={pct(res['lag'], 0.99) * 1e3:.1f} ms "
                  f"load {before:.2f}/{res['loadavg'][0]:.2f}", file=sys.stderr)
    print(f"Silero live sessions, {seconds:g} s of real commands each, starts over 3 s; {rounds} round(s), "
          "latencies pooled over the rounds, CPU the median")
    print("| N | batch window ms | CPU s per session-audio s | real-time factor | VAD lag p50/p99/max ms "
          "| speech start → VAD start p50/p99 ms | barge-in p50/p99 ms | windows per batch (max) "
          "| load before/after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (n, w), rs in runs.items():
        def pool(key: str, rs: list[dict[str, Any]] = rs) -> list[float]:
            return [x * 1e3 for r in rs for x in r[key]]
        lag, on, bi = pool("lag"), pool("onset"), pool("barge")
        cpu = statistics.median(r["cpu_per_audio_s"] for r in rs)
        rt = max(r["realtime_factor"] for r in rs)
        batches, wins = sum(r["batches"] for r in rs), sum(r["windows"] for r in rs)
        mean = wins / batches if batches else 0.0
        loads = ", ".join(f"{r['load_before']:.1f}/{r['loadavg'][0]:.1f}" for r in rs)
        print(f"| {n} | {w:g} | {cpu:.5f} | {rt:.3f} | {pct(lag, .5):.1f} / {pct(lag, .99):.1f} / {max(lag):.1f} "
              f"| {pct(on, .5):.1f} / {pct(on, .99):.1f} | {pct(bi, .5):.1f} / {pct(bi, .99):.1f} "
              f"| {mean:.1f} ({max(r['largest'] for r in rs)}) | {loads} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="1,4,16", help="session counts (comma-separated)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per session")
    ap.add_argument("--live", help="live mode: session counts (comma-separated), e.g. 20,100")
    ap.add_argument("--batch-window-ms", default="0",
                    help="live mode: SileroVAD batch_window_ms values to compare (comma-separated)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, n, sec, w = a.child[0], int(a.child[1]), float(a.child[2]), float(a.child[3])
        print(json.dumps(live_child(n, sec, w) if kind == "live" else child(kind, n, sec)))
        return
    if a.live:
        live_main([int(x) for x in a.live.split(",")], [float(x) for x in a.batch_window_ms.split(",")],
                  a.rounds, a.seconds)
        return
    plan = [("onnx", 1), ("vad", 1)] + [(k, int(n)) for n in a.n.split(",") for k in ("unbatched", "batched")]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {p: [] for p in plan}
    for r in range(a.rounds):
        for kind, n in plan[r % len(plan):] + plan[: r % len(plan)]:
            runs[(kind, n)].append(run_child(kind, n, a.seconds))
            print(f"round {r + 1}: {kind} n={n}: {runs[(kind, n)][-1]}", file=sys.stderr)
    med = {p: statistics.median(x["cpu_per_audio_s"] for x in rs) for p, rs in runs.items()}
    print(f"Silero, 32 ms windows, {a.seconds:g} s of real speech per stream, median of {a.rounds} rounds")
    print("| what | N | CPU s per audio s (per session) | note |")
    print("|---|---|---|---|")
    us = statistics.median(x["us_per_window"] for x in runs[("onnx", 1)])
    print(f"| bare ONNX Runtime call | 1 | {med[('onnx', 1)]:.5f} | {us:.0f} us per window |")
    us = statistics.median(x["us_per_window"] for x in runs[("vad", 1)])
    print(f"| SileroVAD.is_speech | 1 | {med[('vad', 1)]:.5f} | {us:.0f} us per window |")
    for n in (int(x) for x in a.n.split(",")):
        last = runs[("batched", n)][-1]
        mean = last["windows"] / last["batches"] if last.get("batches") else 0.0
        print(f"| sessions, one call per window | {n} | {med[('unbatched', n)]:.5f} | |")
        print(f"| sessions, batched across sessions | {n} | {med[('batched', n)]:.5f} | "
              f"{med[('batched', n)] / med[('unbatched', n)]:.2f}x unbatched; batches of "
              f"{mean:.1f} windows on average, {last.get('largest', 0)} at most |")


if __name__ == "__main__":
    main()
