"""How many real-time-paced DashScope streams one voicekit client process sustains, and what each costs it.

The server runs in separate processes, so that what this process spends is the client's own:
by default ``bench/dashscope_light_server.py`` (``--server light``: voicekit's sans-IO protocol
modules answering from the known script, no audio work), or the full emulator (``--server
emulator``: ``voicekit emulate dashscope --fixtures``, a scripted engine behind the emulator's VAD,
which at hundreds of streams costs more than the client). This process opens N streams at once
with voicekit's ``fun-asr-realtime`` plugin (``--api task``, the WebSocket task protocol) or its
``qwen3-asr-flash-realtime`` plugin (``--api realtime``, the realtime protocol with server VAD).
Ten sender tasks feed them ``--chunk-ms`` chunks of a tone script at real-time pace (a shared
clock, so the harness costs next to nothing per stream), and the bench measures:

* the **client's own CPU** (``getrusage`` of this process only, user + system): per stream-second
  of audio (all of it, and the streaming alone: from the moment every stream is open to the last
  close; opening a stream — connect, handshake, session update — is printed apart, per stream)
  and per WebSocket message (sent + received, counted at the WebSocket layer);
* for every final sentence, the latency from "the last audio of the sentence was sent" to "its
  final arrived" — which includes the server's end-of-sentence silence (700 ms), also printed
  net of it;
* the server processes' CPU (from ``/proc``), to show when they, not the client, are the limit.

A level is *sustained* when every stream gets every final with its own text, in order (``miss``
counts finals missing, wrong or extra), the senders' p99 lag behind the real-time schedule
stays under 200 ms (the maximum is printed too: one stall of a busy machine should not decide) and
the p99 net latency stays under ``--bound-ms`` (500). ``--servers K``
spreads the streams over K server processes. ``$BENCH_EMULATOR_PYTHONPATH`` replaces
``PYTHONPATH`` for the server processes only (to keep one server while comparing two clients).

    python bench/bench_dashscope_streams.py [--api task|realtime] [--levels 64,128,256,384,512]
        [--chunk-ms 100] [--server light|emulator] [--servers 2] [--profile out.pstats]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio
import trio_websocket
from dashscope_light_server import script  # the script both sides know (same folder)

from voicekit.asr.base import ASRConfig
from voicekit.audio.frame import AudioFrame

SILENCE_MS = 700
KEY = "sk-bench-000000000000000000"
RATE = 16000


class Counts:
    """WebSocket messages sent and received by this process (all streams)."""

    sent = 0
    received = 0


@contextmanager
def counting_messages() -> Iterator[None]:
    """Count at the WebSocket layer: trio-websocket's ``send_message`` / ``get_message`` and the
    realtime client's :class:`~voicekit_dashscope.client.frames.FrameWriter`, which writes frames
    itself (and calls ``send_message`` when it falls back, which is then counted there)."""
    from voicekit_dashscope.client.frames import FrameWriter

    cls = trio_websocket.WebSocketConnection
    send, get, fsend = cls.send_message, cls.get_message, FrameWriter.send

    async def send_message(self: Any, message: Any) -> None:
        Counts.sent += 1
        await send(self, message)

    async def get_message(self: Any) -> Any:
        msg = await get(self)
        Counts.received += 1
        return msg

    async def frame_send(self: Any, message: Any) -> None:
        if self.fast and self.ws._close_reason is None:  # else it falls back to send_message
            Counts.sent += 1
        await fsend(self, message)

    cls.send_message, cls.get_message = send_message, get_message  # type: ignore[method-assign]
    FrameWriter.send = frame_send  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.send_message, cls.get_message = send, get  # type: ignore[method-assign]
        FrameWriter.send = fsend  # type: ignore[method-assign]


def make_plugin(api: str, base_url: str) -> Any:
    if api == "task":
        from voicekit_dashscope.asr.task import FunASRRealtime

        return FunASRRealtime(api_key=KEY, base_url=base_url, max_sentence_silence_ms=SILENCE_MS)
    from voicekit_dashscope.asr.realtime import Qwen3ASRRealtime

    return Qwen3ASRRealtime(api_key=KEY, base_url=base_url, silence_duration_ms=SILENCE_MS)


GROUPS = 10  # sender tasks: each feeds its share of the streams, one tenth of a chunk after the previous


class Group:
    """Streams fed by one sender task (a shared clock: the harness costs ~nothing per stream)."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.streams: list[Any] = []


async def one_stream(api: str, base_url: str, group: Group, opened: trio.Semaphore, go: trio.Event,
                     chunk_s: float, lat: list[float], missing: list[int], expected: list[str]) -> None:
    asr = make_plugin(api, base_url)
    texts: list[str] = []
    await opened.acquire()
    async with asr.open_stream(ASRConfig(sample_rate=RATE)) as stream:
        opened.release()
        group.streams.append(stream)
        await go.wait()
        async for r in stream:
            if r.is_final:
                texts.append(r.text)
            if r.is_final and r.end is not None:
                # the chunk holding the sentence's end was sent at t0 + ceil(end / chunk) * chunk
                sent_at = group.t0 + math.ceil(r.end / chunk_s - 1e-6) * chunk_s
                lat.append(trio.current_time() - sent_at)
    # every sentence's own transcript, in order: a final missing, wrong or extra counts
    wrong = sum(got != want for got, want in zip(texts, expected, strict=False))
    missing.append(wrong + abs(len(texts) - len(expected)))


async def feed(group: Group, chunks: list[AudioFrame], chunk_s: float, lag: list[float]) -> None:
    """Like a microphone per stream: a chunk leaves once it is complete (real-time paced)."""
    for i, c in enumerate(chunks):
        due = group.t0 + (i + 1) * chunk_s
        await trio.sleep_until(due)
        for stream in group.streams:
            await stream.send_audio(c)
        lag.append(trio.current_time() - due)  # of the group's last stream
    for stream in group.streams:
        await stream.finish()


def cpu_self() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_stime


def cpu_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def level(api: str, urls: list[str], pids: list[int], n: int, seconds: float,
                chunk_ms: int) -> dict[str, float]:
    audio, _, sentences = script(seconds)
    expected = list(sentences.values())  # the texts of the finals, in order
    chunks = AudioFrame(audio, RATE).split(RATE * chunk_ms // 1000)
    audio_s = len(audio) / 2 / RATE
    lat: list[float] = []
    lag: list[float] = []
    missing: list[int] = []
    sent0, recv0 = Counts.sent, Counts.received
    emu0 = sum(cpu_of(p) for p in pids)
    cpu0, sys0 = cpu_self()
    wall0 = time.perf_counter()
    groups = [Group(0.0) for _ in range(min(GROUPS, n))]
    go = trio.Event()
    opened = trio.Semaphore(32)  # connections being opened at once
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one_stream, api, urls[i % len(urls)], groups[i % len(groups)], opened, go,
                               chunk_ms / 1000, lat, missing, expected)
        while sum(len(g.streams) for g in groups) < n:
            await trio.sleep(0.05)
        now = trio.current_time()
        for k, g in enumerate(groups):
            g.t0 = now + k * chunk_ms / 1000 / len(groups)
            nursery.start_soon(feed, g, chunks, chunk_ms / 1000, lag)
        cpu_go = cpu_self()[0]  # every stream is open: what follows is the streaming itself
        go.set()
    wall = time.perf_counter() - wall0
    cpu1, sys1 = cpu_self()
    cpu = cpu1 - cpu0
    emu = sum(cpu_of(p) for p in pids) - emu0
    messages = Counts.sent - sent0 + Counts.received - recv0
    lat.sort()
    net = [x - SILENCE_MS / 1000 for x in lat]
    return {
        "streams": n, "finals": len(lat), "missing": sum(missing), "messages": messages,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"), "p99_ms": 1000 * pct(lat, 0.99),
        "p50_net_ms": 1000 * statistics.median(net) if net else float("nan"), "p99_net_ms": 1000 * pct(net, 0.99),
        "max_send_lag_ms": 1000 * max(lag) if lag else 0.0, "p99_send_lag_ms": 1000 * pct(sorted(lag), 0.99),
        "client_cpu_s": cpu, "wall_s": wall, "sys_share": (sys1 - sys0) / cpu if cpu else float("nan"),
        "cpu_per_stream_s": cpu / (n * audio_s),
        "stream_cpu_per_stream_s": (cpu1 - cpu_go) / (n * audio_s), "open_ms": 1000 * (cpu_go - cpu0) / n,
        "us_per_message": 1e6 * cpu / messages if messages else float("nan"),
        "client_cpu_pct": 100 * cpu / wall, "server_cpu_pct": 100 * emu / wall,
    }


@contextmanager
def servers(kind: str, k: int, seconds: float, sentences: dict[str, str]) -> Iterator[tuple[list[str], list[int]]]:
    """Start ``k`` server processes; yield their URLs and pids.

    ``light``: :mod:`dashscope_light_server` (the protocols only, answers from the known script);
    ``emulator``: ``voicekit emulate dashscope --fixtures`` (a scripted engine behind the emulator's VAD)."""
    tmp = tempfile.mkdtemp(prefix="bench-ds-")
    fixtures = os.path.join(tmp, "fixtures.json")
    with open(fixtures, "w") as f:
        json.dump({"key": "tone", "sentences": sentences, "partial_every": 0.3}, f)
    env = dict(os.environ)
    if os.environ.get("BENCH_EMULATOR_PYTHONPATH") is not None:  # e.g. to pin one emulator for before/after runs
        env["PYTHONPATH"] = os.environ["BENCH_EMULATOR_PYTHONPATH"]
    if kind == "light":
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashscope_light_server.py"),
               "--port", "0", "--seconds", str(seconds), "--silence-ms", str(SILENCE_MS)]
    else:
        cli = "import sys; from voicekit.cli.main import main; sys.argv[0] = 'voicekit'; sys.exit(main())"
        cmd = [sys.executable, "-c", cli, "emulate", "dashscope", "--port", "0", "--fixtures", fixtures,
               "--vad", "energy"]
    procs: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for i in range(k):
            out = os.path.join(tmp, f"server{i}.out")
            with open(out, "wb") as o:
                p = subprocess.Popen(cmd, stdout=o, stderr=subprocess.DEVNULL, env=env)
            procs.append((p, out))
        urls = []
        for p, out in procs:
            deadline = time.monotonic() + 60
            while True:
                with open(out) as o:
                    m = re.search(r"(?:ws|http)://(127\.0\.0\.1:\d+)", o.read())
                if m:
                    urls.append(f"ws://{m.group(1)}")
                    break
                if p.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: the {kind} server did not start (exit {p.poll()}); "
                                     f"run `{' '.join(cmd[:1] + cmd[-6:])}` by hand to see why")
                time.sleep(0.1)
        yield urls, [p.pid for p, _ in procs]
    finally:
        for p, _ in procs:
            p.terminate()
        for p, out in procs:
            p.wait()
            os.unlink(out)
        os.unlink(fixtures)
        os.rmdir(tmp)


async def main(a: argparse.Namespace) -> None:
    make_plugin(a.api, "ws://127.0.0.1:9")  # import the plugin now: its import is not a per-stream cost
    levels = [int(x) for x in a.levels.split(",")]
    _, _, sentences = script(a.seconds)
    with servers(a.server, a.servers, a.seconds, sentences) as (urls, pids), counting_messages():
        print(f"{a.api} protocol ({'fun-asr-realtime' if a.api == 'task' else 'qwen3-asr-flash-realtime'}); "
              f"{len(urls)} {a.server} server process(es); {a.seconds:g} s of audio per stream in "
              f"{a.chunk_ms} ms chunks, real-time paced; end-of-sentence silence {SILENCE_MS} ms; "
              f"{os.cpu_count()} CPUs")
        print(f"{'streams':>7} {'finals':>6} {'miss':>4} {'p50 ms':>7} {'p99 ms':>7} {'p50 net':>7} "
              f"{'p99 net':>7} {'lag p99':>7} {'max':>5} {'cpu/str-s':>9} {'stream':>7} {'open ms':>7} "
              f"{'us/msg':>7} {'client%':>7} "
              f"{'serv%':>6} {'sys%':>5}  sustained")
        best: dict[str, float] | None = None
        for n in levels:
            if a.profile:
                import cProfile

                prof = cProfile.Profile(time.process_time)  # CPU time: the machine may be busy
                prof.enable()
            r = await level(a.api, urls, pids, n, a.seconds, a.chunk_ms)
            if a.profile:
                prof.disable()
                prof.dump_stats(a.profile)
            ok = r["missing"] == 0 and r["p99_send_lag_ms"] < 200 and r["p99_net_ms"] < a.bound_ms
            best = r if ok else best
            print(f"{n:>7} {r['finals']:>6.0f} {r['missing']:>4.0f} {r['p50_ms']:>7.0f} {r['p99_ms']:>7.0f} "
                  f"{r['p50_net_ms']:>7.0f} {r['p99_net_ms']:>7.0f} {r['p99_send_lag_ms']:>7.0f} "
                  f"{r['max_send_lag_ms']:>5.0f} "
                  f"{r['cpu_per_stream_s']:>9.5f} {r['stream_cpu_per_stream_s']:>7.5f} {r['open_ms']:>7.2f} "
                  f"{r['us_per_message']:>7.1f} {r['client_cpu_pct']:>7.0f} "
                  f"{r['server_cpu_pct']:>6.0f} {100 * r['sys_share']:>5.0f}  {'yes' if ok else 'NO'}", flush=True)
            if not ok and not a.keep_going:
                break
        if best is None:
            print("streams sustained: 0")
            return
        print(f"streams sustained: {best['streams']:.0f}")
        print(f"client CPU s per stream-second: {best['cpu_per_stream_s']:.5f} "
              f"(streaming only: {best['stream_cpu_per_stream_s']:.5f}; opening a stream: {best['open_ms']:.2f} ms)")
        print(f"client cost per message: {best['us_per_message']:.1f} us")
        print(f"latency last audio -> final: p50 {best['p50_ms']:.0f} ms, p99 {best['p99_ms']:.0f} ms "
              f"(net of the {SILENCE_MS} ms silence: p50 {best['p50_net_ms']:.0f}, p99 {best['p99_net_ms']:.0f})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--api", choices=("task", "realtime"), default="task")
    ap.add_argument("--levels", default="64,128,256,384,512")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--chunk-ms", type=int, default=100)
    ap.add_argument("--server", choices=("light", "emulator"), default="light",
                    help="light: the protocols only (measures the client); emulator: the full emulator")
    ap.add_argument("--servers", type=int, default=2, help="server processes to spread the streams over")
    ap.add_argument("--bound-ms", type=float, default=500.0, help="p99 net latency bound of a sustained level")
    ap.add_argument("--keep-going", action="store_true", help="run every level even after one fails")
    ap.add_argument("--profile", help="write a cProfile of the client (last level) to this file")
    trio.run(main, ap.parse_args())
