"""How many live conversations one machine holds: one ``voicekit serve`` process, several worker
processes (``voicekit serve --workers N``: the real supervisor and SO_REUSEPORT workers), or one
process with Silero's inference on a worker thread (issue 11's "all the cores").

Each configuration is ramped like bench/bench_capacity.py: N browser-protocol clients talk in real
time (20 ms chunks, a real recording of "go forward ten meters" every ~4.5 s), a scripted ASR has
the final transcript the moment speech ends (only voicekit's own work is measured), the robot
answers in text. N grows until the p99 of end of speech -> handler (the server's own event times)
exceeds 50 ms, more than 5 % of the turns go unanswered (the server fell behind real time), or a
conversation is refused or shed; the last N under is "held". The
configurations are run in turn, ``--rounds`` times (the machine is shared and noisy), and the
medians and their ratios are printed.

    .venv/bin/python bench/bench_workers.py                                    # webrtc: 1 vs 2 workers
    .venv/bin/python bench/bench_workers.py --configs silero:1 silero-thread:1 silero:2 --levels 4 8 12 16 24 32

A configuration is VAD[-thread]:WORKERS; ``-thread`` is Silero's ``inference="thread"``. The
clients run in this process on the same machine (their CPU share is printed), so the figures are
floors; the ratio is the result. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from bench_capacity import TARGET, caller, p99, utterance  # bench/ is the script's folder, on sys.path

TICKS = os.sysconf("SC_CLK_TCK")


def build_server(vad: str, inference: str) -> object:
    from voicekit.plugins.build import load_assistant, make_vad
    from voicekit.serve import ServeConfig, SessionRecipe
    from voicekit.serve.workers import WORKER_ENV, make_server
    from voicekit.testing.fakes import FakeASR

    options = {"inference": inference} if inference != "inline" else {}
    make_vad(vad, sample_rate=16000, **options)  # load the model once, before listening
    recipe = SessionRecipe(asr=FakeASR(["go forward ten meters"] * 100_000, partial_every=0.3),
                           vad_factory=lambda: make_vad(vad, sample_rate=16000, **options),
                           assistant=load_assistant("robot"), names={"vad": vad})
    config = ServeConfig(port=0 if WORKER_ENV not in os.environ else int(os.environ["BENCH_PORT"]),
                         max_sessions=10_000, max_pending=10_000, max_pending_per_address=10_000,
                         max_backlog=60, max_loop_lag=60)
    return make_server(recipe, config)


def worker(vad: str, inference: str) -> None:
    """One server process: a plain one (prints its port) or a worker under the supervisor."""
    server = build_server(vad, inference)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(server.serve)  # type: ignore[attr-defined]
                print(f"bench: serving at {url}", file=sys.stderr, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()

    trio.run(main)


def supervise(count: int, vad: str, inference: str) -> None:
    """``count`` workers under voicekit's own supervisor on one SO_REUSEPORT port."""
    import shutil

    from voicekit.serve.workers import Supervisor, reserve_port

    port, held = reserve_port("127.0.0.1", 0)
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    os.environ["BENCH_PORT"] = str(port)
    try:
        sup = Supervisor({}, count, port, folder, "127.0.0.1",
                         command=[sys.executable, __file__, "--worker", "--vad", vad, "--inference", inference])
        trio.run(sup.run)
    finally:
        for sock in held:
            sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


async def ramp(port: int, pid: int, levels: list[int], seconds: float) -> int:
    pcm, turn_done = utterance()
    url = f"ws://127.0.0.1:{port}/ws"
    held = 0
    print(f"    {'sessions':>8} {'turns':>6} {'missed':>6} {'p50 ms':>7} {'p99 ms':>7} {'server CPU':>10} "
          f"{'client CPU':>10}  problems", flush=True)
    for n in levels:
        latencies: list[float] = []
        problems: list[str] = []
        expected = [0]
        wall, server, client = time.monotonic(), tree_cpu(pid), time.process_time()
        async with trio.open_nursery() as nursery:
            until = trio.current_time() + seconds
            for _ in range(n):
                nursery.start_soon(caller, url, pcm, until, latencies, problems, turn_done, expected)
        wall = time.monotonic() - wall
        server, client = (tree_cpu(pid) - server) / wall, (time.process_time() - client) / wall
        if not latencies:
            print(f"    {n:>8} {0:>6}  no turn completed; problems: {problems[:3]}", flush=True)
            break
        worst = p99(latencies)
        missed = max(0, expected[0] - len(latencies))
        print(f"    {n:>8} {len(latencies):>6} {missed:>6} {statistics.median(latencies) * 1000:>7.1f} "
              f"{worst * 1000:>7.1f} {server:>9.0%} {client:>10.0%}  {len(problems)} {problems[:2] or ''}",
              flush=True)
        if worst > TARGET or problems or missed > 0.05 * expected[0]:  # over 5 % of turns unanswered: behind
            break
        held = n
    return held


def run_config(config: str, levels: list[int], seconds: float) -> int:
    vad_part, _, count_text = config.partition(":")
    vad, _, thread = vad_part.partition("-")
    inference = "thread" if thread == "thread" else "inline"
    count = int(count_text or "1")
    command = [sys.executable, __file__, "--vad", vad, "--inference", inference]
    command += ["--worker"] if count == 1 else ["--supervise", str(count)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 120
            pattern = (rb"^bench: serving at" if count == 1 else rb"^voicekit: \d+ workers serving at")
            while True:
                log.seek(0)
                match = re.search(pattern + rb" http://127\.0\.0\.1:(\d+)/", log.read(), re.M)
                if match:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"bench: the server did not start:\n{log.read().decode(errors='replace')}")
                time.sleep(0.1)
            return trio.run(ramp, int(match.group(1)), proc.pid, levels, seconds)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--supervise", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--vad", default="webrtc", help=argparse.SUPPRESS)
    parser.add_argument("--inference", default="inline", help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="+", default=["webrtc:1", "webrtc:2"],
                        help="VAD[-thread]:WORKERS each (default: webrtc:1 webrtc:2)")
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 24, 32, 40, 48, 56, 64, 72, 80, 96, 112, 128])
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds per level (default: 12)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every configuration, in turn (default: 3)")
    args = parser.parse_args()
    if args.worker:
        worker(args.vad, args.inference)
        return
    if args.supervise:
        supervise(args.supervise, args.vad, args.inference)
        return
    held: dict[str, list[int]] = {c: [] for c in args.configs}
    for r in range(args.rounds):
        for config in args.configs:
            print(f"round {r + 1}, {config}:", flush=True)
            held[config].append(run_config(config, args.levels, args.seconds))
            print(f"    held: {held[config][-1]}", flush=True)
    base = statistics.median(held[args.configs[0]])
    print(f"\nsessions held at p99 end of speech -> handler under {TARGET * 1000:.0f} ms "
          f"({os.cpu_count()} CPUs, {args.rounds} rounds):")
    for config in args.configs:
        med = statistics.median(held[config])
        print(f"  {config:<18} median {med:>6.1f}  runs {held[config]}  ratio to {args.configs[0]}: "
              f"{med / base if base else float('nan'):.2f}")


if __name__ == "__main__":
    main()
