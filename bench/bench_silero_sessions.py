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

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
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


def run_child(kind: str, n: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(n), str(seconds)],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="1,4,16", help="session counts (comma-separated)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per session")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), float(a.child[2]))))
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
