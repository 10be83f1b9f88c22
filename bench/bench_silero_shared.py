"""Many live Silero streams in one process: inline scoring vs one batched call per moment,
on the trio thread vs on a worker thread.

N streams of real speech (the five LibriVox clips, each stream starting at another place) are
paced in real time, 20 ms chunks, 20 ms VAD frames, started at the same moment, the way N
sessions would run them. Modes:

* ``inline``   — ``vad.is_speech(frame)`` alone: each stream scores its own windows on the trio
  thread, one ONNX call per window (what the endpointer does by itself);
* ``batched``  — ``await vad.prepare(chunk)`` first, ``inference="inline"``: every window due at
  the same moment, from all streams, in one ONNX call on the trio thread;
* ``thread``   — the same, ``inference="thread"``: the batch runs on a worker thread while the
  event loop goes on (can use a second core).

For each it prints CPU seconds per audio second per stream, how far behind real time the
streams ended (lag), the p99 lateness of a chunk's decision, and the batches formed.

    .venv/bin/python bench/bench_silero_shared.py                  # 20 and 100 streams, 10 s
    .venv/bin/python bench/bench_silero_shared.py --streams 200 --seconds 20

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import wave


def child(mode: str, n: int, seconds: float) -> dict[str, float]:
    import trio
    from voicekit_silero import SileroVAD
    from voicekit_silero.vad import batcher

    from voicekit.testing.data import librivox_clips

    pcm = b"".join(wave.open(str(p)).readframes(10**9) for p, _ in librivox_clips())
    need = int(seconds * 16000) * 2
    chunk = 640
    late: list[float] = []
    vads = [SileroVAD(frame_ms=20, inference="thread" if mode == "thread" else "inline") for _ in range(n)]
    for v in vads[:1]:  # the network is loaded and warm before the clock starts
        v.is_speech(bytes(chunk))
        v.reset()

    async def stream(i: int, start: float) -> None:
        vad = vads[i]
        off = (i * 48000 * 2) % len(pcm)
        audio = (pcm[off:] + pcm[:off]) * (1 + need // len(pcm))
        for k in range(need // chunk):
            due = start + (k + 1) * 0.02
            await trio.sleep_until(due)
            piece = audio[k * chunk : (k + 1) * chunk]
            if mode != "inline":
                await vad.prepare(piece)
            vad.is_speech(piece)
            late.append(trio.current_time() - due)

    stats: dict[str, float] = {}

    async def main() -> float:
        start = trio.current_time() + 0.1
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(stream, i, start)
        if mode != "inline":
            b = batcher(vads[0].model, 16000, vads[0].inference)
            stats.update(batches=b.batches, mean_batch=b.windows / max(1, b.batches), largest=b.largest)
        return trio.current_time() - start - seconds

    cpu = time.process_time()
    lag = trio.run(main)
    cpu = time.process_time() - cpu
    late.sort()
    out = {"cpu_per_audio_s": cpu / (seconds * n), "end_lag_s": lag,
           "p50_ms": 1000 * late[len(late) // 2], "p99_ms": 1000 * late[int(len(late) * 0.99)]}
    out.update(stats)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="20,100")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--modes", default="inline,batched,thread")
    ap.add_argument("--runs", type=int, default=1, help="runs per figure; the median is printed")
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(child(args._child[0], int(args._child[1]), float(args._child[2]))))
        return 0
    for n in (int(x) for x in args.streams.split(",")):
        for mode in args.modes.split(","):
            rows = []
            for _ in range(args.runs):
                r = subprocess.run([sys.executable, __file__, "--_child", mode, str(n), str(args.seconds)],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"{mode} x{n}: failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    return 1
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            d = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
            extra = (f", {d['batches']:.0f} batches of {d['mean_batch']:.1f} windows (largest {d['largest']:.0f})"
                     if "batches" in d else "")
            print(f"silero, {n:>3} live streams, {mode:<7}: {d['cpu_per_audio_s']:.4f} CPU s per audio s per stream, "
                  f"ended {d['end_lag_s']:.2f} s behind real time, chunk lateness p50 {d['p50_ms']:.1f} ms "
                  f"p99 {d['p99_ms']:.1f} ms{extra}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
