"""Memory per live session, webrtc VAD and Silero VAD, at 1, 20 and 100 sessions in one process.

Each measurement runs in a fresh child process: it imports voicekit and the VAD plugin, notes its
resident set size, then runs N sessions at once over the same real speech (the five LibriVox
clips with pauses, through one shared ``ScriptedSource`` script, fake ASR, an intent handler, fake
TTS and a null sink, as fast as possible) and notes its peak resident set size. It prints

* **MB per session** = (peak - after imports) / N — at N = 1 this includes loading the Silero
  network, which every later session shares;
* **marginal MB per session** = the growth from N = 20 to N = 100, divided by 80: what one more
  session costs once the process is warm.

    .venv/bin/python bench/bench_memory.py
    .venv/bin/python bench/bench_memory.py --sessions 1,20,100,200 --vads silero

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def child(vad_name: str, n: int) -> None:
    import wave

    import trio

    from voicekit.audio.frame import AudioFrame
    from voicekit.audio.sinks import NullSink
    from voicekit.handlers import Assistant, Turn
    from voicekit.session import Session, SessionConfig
    from voicekit.testing import FakeASR, FakeTTS, ScriptedSource, Silence, Speech, collect
    from voicekit.testing.data import librivox_clips
    from voicekit.vad.webrtc import WebRTCVAD

    if vad_name == "silero":
        import voicekit_silero  # noqa: F401  (import cost is not a session's)

    script: list[Silence | Speech] = []
    for path, _ in librivox_clips():
        with wave.open(str(path)) as w:
            script += [Speech(clip=AudioFrame(w.readframes(w.getnframes()), w.getframerate())), Silence(1.0)]
    turns = len(script) // 2

    a = Assistant("bench")

    @a.intent("go forward ten meters")
    async def move(turn: Turn) -> str:
        return "Moving forward ten meters."

    def make_vad() -> object:
        if vad_name == "silero":
            from voicekit_silero import SileroVAD

            return SileroVAD(frame_ms=30)
        return WebRTCVAD(16000, 30, 2)

    async def one() -> None:
        await collect(Session(ScriptedSource(script, realtime=False),  # type: ignore[arg-type]
                              asr=FakeASR(["go forward ten meters"] * turns), vad=make_vad(),  # type: ignore[arg-type]
                              assistant=a, tts=FakeTTS(chunk_ms=100), sink=NullSink(16000),
                              config=SessionConfig(realtime=False)))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)

    import logging

    logging.disable(logging.CRITICAL)
    base = _rss_mb()
    wall = time.perf_counter()
    trio.run(main)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"vad": vad_name, "n": n, "after_import_mb": base, "peak_mb": peak,
                      "per_session_mb": (peak - base) / n, "wall_s": time.perf_counter() - wall}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="1,20,100", help="comma-separated session counts")
    ap.add_argument("--vads", default="webrtc,silero")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(args._child[0], int(args._child[1]))
        return 0
    counts = [int(x) for x in args.sessions.split(",")]
    failed = 0
    for vad in args.vads.split(","):
        peaks: dict[int, float] = {}
        for n in counts:
            r = subprocess.run([sys.executable, __file__, "--_child", vad, str(n)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{vad} x{n}: failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                failed += 1
                continue
            d = json.loads(r.stdout.strip().splitlines()[-1])
            peaks[n] = d["peak_mb"]
            print(f"memory, {vad} VAD, {n:>3} sessions: {d['per_session_mb']:.2f} MB per session "
                  f"(after imports {d['after_import_mb']:.0f} MB, peak {d['peak_mb']:.0f} MB, {d['wall_s']:.1f} s)",
                  flush=True)
        if 20 in peaks and 100 in peaks:
            print(f"memory, {vad} VAD, marginal (20 -> 100 sessions): "
                  f"{(peaks[100] - peaks[20]) / 80:.2f} MB per session", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
