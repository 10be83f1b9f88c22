"""Live (real-time paced) cost of one session, webrtc VAD, side by side with its floors and Pipecat.

Drives the peer harnesses of ``../shared/bench-peers`` (never edits them), round by round, each
measurement in a fresh process so the ratios come from the same machine state:

* ``voicekit``  — ``voicekit_bench.py`` scenario ``paced/webrtc/full`` (60 s recording, 20 ms frames,
  FakeASR, an intent handler, FakeTTS, a sink, barge-in), CPU seconds per audio second;
* ``floor``     — ``voicekit_bench.py`` scenario ``paced-floor``: a bare trio loop releasing 20 ms
  frames with ``trio.sleep_until`` to a consumer (what any trio real-time clock costs);
* ``pipecat``   — ``pipecat_bench.py`` ``paced/webrtc/lean`` with ``--pc-python`` (skipped without it).

It also counts the scheduler's task steps per input frame on the same kind of session under
``MockClock`` (a trio Instrument; exact, not timed), the figure ``tests/audio/test_live_steps.py`` pins.

    .venv/bin/python bench/bench_live_paced.py --runs 3 --pc-python /path/to/pipecat-venv/bin/python
    .venv/bin/python bench/bench_live_paced.py --steps-only

Medians are printed on stdout, one line per run on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent.parent / "shared" / "bench-peers"


def _run(python: str, harness: Path, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [python, str(harness), "--_worker", json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PYTHONHASHSEED="0"))
    if p.returncode != 0:
        return {"error": f"rc={p.returncode}: {p.stderr.strip().splitlines()[-1:]}"}
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def steps_per_frame(seconds: float = 20.0) -> dict[str, float]:
    """Task steps per 20 ms input frame of a paced session on MockClock (speech, replies, silence;
    the scenario of ``tests/audio/live_steps.py``)."""
    sys.path.insert(0, str(HERE.parent / "tests" / "audio"))
    from live_steps import count_steps  # the same measurement the test pins

    return count_steps(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=Path, default=PEERS, help="the bench-peers folder (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pc-python", help="a Python with pipecat-ai 1.14.0 and webrtcvad-wheels (else no Pipecat)")
    ap.add_argument("--configs", default="full",
                    help="voicekit configs: full (FakeTTS + sink, barge-in) and/or text (text replies, "
                         "the work of Pipecat's lean harness)")
    ap.add_argument("--floor-seconds", type=float, default=30.0)
    ap.add_argument("--steps-only", action="store_true", help="only count task steps per frame (no timing)")
    ap.add_argument("--no-steps", action="store_true", help="skip the task-step count")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()

    if not a.no_steps:
        steps = steps_per_frame()
        print(f"task steps per input frame (MockClock, paced session with replies and a barge-in): "
              f"{steps['steps_per_frame']:.3f}; of them the reading task "
              f"{steps['task:Listener._listen_inline']:.3f}")
    if a.steps_only:
        return
    wav = str(a.peers / "data" / "speech60.wav")
    vk = {"wav": wav, "window": 50, "end_silence_ms": 200, "min_speech_ms": 0, "silero_threshold": 0.5,
          "source": "scripted"}
    plan: list[tuple[str, str, Path, dict[str, Any]]] = [
        ("voicekit" if c == "full" else f"voicekit/{c}", sys.executable, a.peers / "voicekit_bench.py",
         dict(vk, kind="pipeline", vad="webrtc", mode="paced", config=c, n=1)) for c in a.configs.split(",")]
    plan.append(("floor", sys.executable, a.peers / "voicekit_bench.py",
                 dict(vk, kind="paced-floor", seconds=a.floor_seconds)))
    if a.pc_python:
        plan.append(("pipecat", a.pc_python, a.peers / "pipecat_bench.py",
                     {"wav": wav, "window": 50, "kind": "pipeline", "vad": "webrtc", "mode": "paced",
                      "config": "lean", "n": 1}))
    got: dict[str, list[float]] = {name: [] for name, *_ in plan}
    for r in range(a.runs):
        order = plan[r % len(plan):] + plan[: r % len(plan)]  # rotate who goes first
        for name, python, harness, spec in order:
            t = time.perf_counter()
            res = _run(python, harness, spec, a.timeout)
            if "error" in res:
                print(f"[{name} run {r + 1}] {res['error']}", file=sys.stderr)
                continue
            got[name].append(res["cpu_per_audio_s"])
            print(f"[{name} run {r + 1}] cpu/audio_s={res['cpu_per_audio_s']:.5f} "
                  f"counts={res.get('counts', '')} load={os.getloadavg()[0]:.2f} "
                  f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in got.items() if v}
    for k, v in med.items():
        print(f"{k:13s} CPU s per audio s: median {v:.5f}  runs {' '.join(f'{x:.5f}' for x in got[k])}")
    for k in [k for k in med if k.startswith("voicekit")]:
        if "floor" in med:
            print(f"{k} / trio paced floor: {med[k] / med['floor']:.2f}x (above the floor: "
                  f"{med[k] - med['floor']:.5f})")
        if "pipecat" in med:
            print(f"{k} / Pipecat: {med[k] / med['pipecat']:.3f}x (goal <= 0.25x)")


if __name__ == "__main__":
    main()
