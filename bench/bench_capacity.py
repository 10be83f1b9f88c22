"""How many live conversations one ``voicekit serve`` process holds (issue 12's capacity figure).

The server runs in its own process (as in production): webrtc VAD, a scripted ASR (the final
transcript is ready the moment speech ends, as from a cloud service that keeps up, so only
voicekit's own work is measured), the robot assistant, text-only replies. This process opens N
WebSocket clients that talk like browsers: 20 ms chunks at real-time pace, a real recording of "go
forward ten meters" between silences, over and over, starting at random moments. For each turn the
server's own event times give **end of speech → handler** (the endpointer's decision to the intent
handler being called). N grows until the p99 of that exceeds 50 ms, or a conversation is refused
or shed; the last N that stayed under is printed as the sessions held.

    .venv/bin/python bench/bench_capacity.py                     # ramp 2, 4, 8, 16, 24, 32, ...
    .venv/bin/python bench/bench_capacity.py --levels 8 16 --seconds 20
    .venv/bin/python bench/bench_capacity.py --vad silero --vad-fallback none    # Silero, shed when behind
    .venv/bin/python bench/bench_capacity.py --vad silero --vad-fallback webrtc  # ... first drop to webrtc

With a VAD fallback, a conversation that falls ``--fallback-backlog`` behind real time switches to
the cheaper VAD (``voicekit serve --vad-fallback``); the ``fallbacks`` and ``shed`` columns count
the conversations switched and closed at each level.

The clients share the machine with the server (on 2 cores they take a good part of it), so the
figure is a floor. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import wave

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

CHUNK = 640  # 20 ms at 16 kHz, int16
TARGET = 0.050


def serve(vad: str, fallback: str, fallback_backlog: float) -> None:
    """The server process: prints its port, serves until stdin closes."""
    from voicekit.plugins.build import load_assistant, make_vad
    from voicekit.serve import ServeConfig, SessionRecipe, VoiceServer
    from voicekit.testing.fakes import FakeASR

    recipe = SessionRecipe(asr=FakeASR(["go forward ten meters"] * 100_000, partial_every=0.3),
                           vad_factory=lambda: make_vad(vad, sample_rate=16000),
                           assistant=load_assistant("robot"), names={"vad": vad, "vad_fallback": fallback},
                           vad_fallback=None if fallback == "none" else
                           lambda: make_vad(fallback, sample_rate=16000, frame_ms=30))
    server = VoiceServer(recipe, ServeConfig(port=0, max_sessions=10_000, max_pending=10_000,
                                             max_pending_per_address=10_000, vad_fallback_backlog=fallback_backlog))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print(server.port, flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)  # until the bench closes our stdin
            nursery.cancel_scope.cancel()

    trio.run(main)


def utterance() -> tuple[bytes, int]:
    """The clip a caller repeats (a turn every ~4.5 s) and the byte offset by which its turn must
    have ended (the end of the speech + 1 s: the endpointer needs 0.6 s of silence)."""
    from voicekit.testing.data import speech

    with wave.open(str(speech("goforward"))) as w:
        words = w.readframes(w.getnframes())
    return b"\0" * 16000 + words + b"\0" * 48000, 16000 + len(words) + 32000


async def caller(url: str, pcm: bytes, until: float, latencies: list[float], problems: list[str],
                 turn_done: int | None = None, expected: list[int] | None = None) -> None:
    """One browser-protocol caller saying ``pcm`` over and over in real time until ``until``; the end of
    speech -> intent latencies go to ``latencies``. With ``turn_done`` (the byte offset by which a turn
    should be answered) each turn sent counts in ``expected[0]``."""
    await trio.sleep(random.uniform(0, 4.5))  # callers do not all start at the same moment
    try:
        async with open_websocket_url(url) as ws:
            await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000}))
            ready = json.loads(await ws.get_message())
            if ready["type"] != "ready":
                problems.append(f"refused: {ready.get('message')}")
                return

            async def read() -> None:
                speech_end: float | None = None
                while True:
                    message = await ws.get_message()
                    if not isinstance(message, str):
                        continue
                    m = json.loads(message)
                    if m["type"] == "error":
                        problems.append(f"{m['code']}: {m['message']}")
                    if m["type"] != "event":
                        continue
                    e = m["event"]
                    if e["event"] == "speech_ended":
                        speech_end = e["t"]
                    elif e["event"] == "intent_matched" and speech_end is not None:
                        latencies.append(e["t"] - speech_end)
                        speech_end = None

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                start = trio.current_time()
                n = 0
                while trio.current_time() < until:
                    for i in range(0, len(pcm), CHUNK):
                        await trio.sleep_until(start + n * 0.02)
                        await ws.send_message(pcm[i:i + CHUNK])
                        n += 1
                        if expected is not None and turn_done is not None and i <= turn_done < i + CHUNK:
                            expected[0] += 1  # a turn the server should have answered by now
                await ws.send_message(json.dumps({"type": "end"}))
                await trio.sleep(2)  # the last turn's events
                nursery.cancel_scope.cancel()
    except* ConnectionClosed as group:
        for closed in _leaves(group):
            if isinstance(closed, ConnectionClosed) and closed.reason.code != 1000:
                problems.append(f"closed {closed.reason.code} {closed.reason.reason}")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


async def metric(port: int, name: str) -> float:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data = b""
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while chunk := await stream.receive_some(65536):
            data += chunk
    match = re.search(rf"^{re.escape(name)} (\S+)$", data.decode(), re.M)
    return float(match.group(1)) if match else float("nan")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def ramp(port: int, levels: list[int], seconds: float, fallbacks: bool = False, stop: bool = True) -> None:
    pcm, turn_done = utterance()
    url = f"ws://127.0.0.1:{port}/ws"
    held = 0
    print(f"{'sessions':>8} {'turns':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'loop lag ms':>11}"
          f"{' fallbacks  shed  >0.5 s' if fallbacks else ''}  problems")
    switched = shed = checks_over = 0.0
    for n in levels:
        latencies: list[float] = []
        problems: list[str] = []
        lag = 0.0
        expected = [0]
        async with trio.open_nursery() as nursery:
            until = trio.current_time() + seconds
            for _ in range(n):
                nursery.start_soon(caller, url, pcm, until, latencies, problems, turn_done, expected)
            await trio.sleep(seconds * 0.75)
            lag = await metric(port, "voicekit_serve_event_loop_lag_recent_seconds")
        if not latencies:
            print(f"{n:>8} {0:>6}  no turn completed; problems: {problems[:3]}")
            break
        missed = max(0, expected[0] - len(latencies))
        if missed > 0.05 * expected[0]:  # a server behind real time answers the turns it does answer fast
            problems.append(f"{missed} of {expected[0]} turns unanswered")
        worst = p99(latencies)
        extra = ""
        if fallbacks:
            now_switched = await metric(port, "voicekit_serve_vad_fallbacks_total")
            now_shed = await metric(port, "voicekit_serve_sessions_shed_total")
            over = (await metric(port, "voicekit_serve_audio_backlog_seconds_count")
                    - await metric(port, 'voicekit_serve_audio_backlog_seconds_bucket{le="0.5"}'))
            extra = f" {now_switched - switched:>9.0f} {now_shed - shed:>5.0f} {over - checks_over:>8.0f}"
            checks_over = over
            switched, shed = now_switched, now_shed
        print(f"{n:>8} {len(latencies):>6} {statistics.median(latencies) * 1000:>7.1f} {worst * 1000:>7.1f} "
              f"{max(latencies) * 1000:>7.1f} {lag * 1000:>11.1f}{extra}  {len(problems)} "
              f"{problems[:2] if problems else ''}", flush=True)
        if worst > TARGET or problems:
            if stop:
                break
            continue
        held = n
    print(f"sessions held with p99 end of speech -> handler under {TARGET * 1000:.0f} ms: {held}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 4, 8, 16, 24, 32, 48, 64, 96, 128])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per level (default: 15)")
    parser.add_argument("--vad", default="webrtc", help="the sessions' VAD (default: webrtc)")
    parser.add_argument("--vad-fallback", default="none", help="a cheaper VAD for lagging sessions (default: none)")
    parser.add_argument("--fallback-backlog", type=float, default=0.5, help="seconds behind before the fallback")
    parser.add_argument("--stop-at-target", choices=("yes", "no"), default="yes",
                        help="stop the ramp at the first level over the target (default: yes)")
    args = parser.parse_args()
    if args.serve:
        serve(args.vad, args.vad_fallback, args.fallback_backlog)
        return
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--vad", args.vad, "--vad-fallback",
                             args.vad_fallback, "--fallback-backlog", str(args.fallback_backlog)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        trio.run(ramp, port, args.levels, args.seconds, args.vad != "webrtc" or args.vad_fallback != "none",
                 args.stop_at_target == "yes")
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
