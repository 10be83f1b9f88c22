"""How many real-time-paced Fun-ASR streams one voicekit process sustains against the emulator.

The emulator runs in its own process (``voicekit_dashscope.cli emulate dashscope`` with scripted
fixtures, so recognition itself costs nothing and the figure is about the protocol, the client
and the endpointing). This process opens N streams at once with voicekit's ``fun-asr-realtime``
plugin, each sending 100 ms chunks of a tone script at real-time pace, and measures for every
final sentence the latency from "the last audio of the sentence was sent" to "its final result
arrived". That includes the server's end-of-sentence silence (``max_sentence_silence``), which is
also printed net of it. A level is *sustained* when every final arrives, senders never fall more
than 200 ms behind the real-time schedule, and the p99 net latency stays under 500 ms.

    python bench/bench_dashscope_streams.py [--levels 1,8,16,32,64,128] [--seconds 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import trio
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.emulator.engines import tone_audio

from voicekit.asr.base import ASRConfig
from voicekit.audio.frame import AudioFrame

SILENCE_MS = 700
KEY = "sk-bench-000000000000000000"


def script(seconds: float) -> tuple[bytes, list[tuple[float, float]], dict[str, str]]:
    segs: list[tuple[float, float]] = [(0.0, 0.5)]
    spans = []
    t = 0.5
    i = 0
    while t < seconds - 2.5:
        f, dur = 300.0 + 50 * i, 1.0 + 0.1 * (i % 4)
        segs += [(f, dur), (0.0, 1.2)]
        spans.append((t, t + dur))
        t += dur + 1.2
        i += 1
    sentences = {str(300.0 + 50 * k): f"sentence {k}" for k in range(i)}
    return tone_audio(segs), spans, sentences


async def one_stream(base_url: str, audio: bytes, spans: list[tuple[float, float]],
                     lat: list[float], lag: list[float], missing: list[int]) -> None:
    asr = FunASRRealtime(api_key=KEY, base_url=base_url, max_sentence_silence_ms=SILENCE_MS)
    chunks = AudioFrame(audio, 16000).split(1600)
    start: list[float] = []
    got = 0
    async with asr.open_stream(ASRConfig()) as stream:
        async def feed() -> None:
            t0 = trio.current_time()
            start.append(t0)
            for i, c in enumerate(chunks):  # like a microphone: a chunk leaves once it is complete
                due = t0 + (i + 1) * 0.1
                await trio.sleep_until(due)
                lag.append(trio.current_time() - due)
                await stream.send_audio(c)
            await stream.finish()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            async for r in stream:
                if r.is_final and r.end is not None:
                    got += 1
                    # the chunk holding the sentence's end was sent at t0 + ceil(end / 0.1) * 0.1
                    sent_at = start[0] + np.ceil(r.end / 0.1 - 1e-6) * 0.1
                    lat.append(trio.current_time() - sent_at)
    missing.append(len(spans) - got)


async def level(base_url: str, n: int, seconds: float) -> dict[str, float]:
    audio, spans, _ = script(seconds)
    lat: list[float] = []
    lag: list[float] = []
    missing: list[int] = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one_stream, base_url, audio, spans, lat, lag, missing)
            await trio.sleep(0.1 / max(1, n) * 3)  # stagger the starts a little
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    lat.sort()
    net = [x - SILENCE_MS / 1000 for x in lat]
    return {
        "streams": n, "finals": len(lat), "missing": sum(missing),
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
        "p50_net_ms": 1000 * statistics.median(net) if net else float("nan"),
        "p99_net_ms": 1000 * net[min(len(net) - 1, int(0.99 * len(net)))] if net else float("nan"),
        "max_send_lag_ms": 1000 * max(lag) if lag else 0.0,
        "client_cpu_pct": 100 * cpu / wall,
    }


async def main(levels: list[int], seconds: float) -> None:
    _, _, sentences = script(seconds)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"key": "tone", "sentences": sentences, "partial_every": 0.3}, f)
    proc = subprocess.Popen([sys.executable, "-m", "voicekit_dashscope.cli", "emulate", "dashscope",
                             "--port", "0", "--fixtures", f.name], stdout=subprocess.PIPE, text=True)
    try:
        base_url = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            if "base_url=" in line:
                base_url = line.strip().split("base_url=")[1]
                break
        print(f"emulator at {base_url}; {seconds:g} s of audio per stream, real-time paced, "
              f"max_sentence_silence={SILENCE_MS} ms; {os.cpu_count()} CPUs")
        print(f"{'streams':>7} {'finals':>6} {'miss':>4} {'p50 ms':>7} {'p99 ms':>7} {'p50 net':>7} "
              f"{'p99 net':>7} {'max lag':>7} {'cpu %':>6}  sustained")
        best = 0
        for n in levels:
            r = await level(base_url, n, seconds)
            ok = r["missing"] == 0 and r["max_send_lag_ms"] < 200 and r["p99_net_ms"] < 500
            best = n if ok else best
            print(f"{r['streams']:>7} {r['finals']:>6} {r['missing']:>4} {r['p50_ms']:>7.0f} {r['p99_ms']:>7.0f} "
                  f"{r['p50_net_ms']:>7.0f} {r['p99_net_ms']:>7.0f} {r['max_send_lag_ms']:>7.0f} "
                  f"{r['client_cpu_pct']:>6.0f}  {'yes' if ok else 'NO'}", flush=True)
            if not ok:
                break
        print(f"sustained: {best} concurrent real-time streams")
    finally:
        proc.terminate()
        proc.wait()
        os.unlink(f.name)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,8,16,32,64,96,128")
    ap.add_argument("--seconds", type=float, default=12.0)
    a = ap.parse_args()
    trio.run(main, [int(x) for x in a.levels.split(",")], a.seconds)
