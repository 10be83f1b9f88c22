"""Batch transcription: plain ``voicekit transcribe`` vs ``--cluster local`` with 1 and 2 Ray workers.

    python bench/bench_batch.py [--copies 2] [--asr moonshine]

The same real-speech files (the LibriVox clips and the command recordings of the pocketsphinx test
data, copied ``--copies`` times under new names) are transcribed by

* ``plain``: ``voicekit transcribe FILES -o OUT/`` — one process, one engine;
* ``ray-1`` / ``ray-2``: ``voicekit transcribe FOLDER --cluster local --workers N -o OUT``.

For each it prints the wall time, files per minute, and CPU seconds per second of audio, where
CPU is that of the whole process tree (the CLI, and for Ray its raylet, GCS and workers), sampled
from /proc every 0.1 s. The per-file overhead Ray adds is measured on the 1-worker run: the time
from the worker being ready to the last output, minus the time the worker spent transcribing
(reported per file with ``-v``), divided by the number of files. Ray's start-up (starting the
local cluster and the workers, building the engines) is shown on its own.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

from voicekit.testing.data import librivox_clips, speech

VOICEKIT = [sys.executable, "-m", "voicekit.cli.main"]
TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Add the CPU seconds of ``root`` and its descendants to ``seen`` (pid → latest reading)."""
    parent: dict[int, int] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        parent[int(entry)] = int(fields[1])
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    for pid in tree:
        if pid in stats:
            seen[pid] = max(seen.get(pid, 0.0), stats[pid])


def measure(cmd: list[str]) -> dict[str, Any]:
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            _tree_cpu(p.pid, seen)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines: list[tuple[float, str]] = []
    assert p.stderr is not None
    for line in p.stderr:
        lines.append((time.monotonic() - t0, line.rstrip("\n")))
    code = p.wait()
    wall = time.monotonic() - t0
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n" + "\n".join(text for _, text in lines[-10:]))
    return {"wall": wall, "cpu": sum(seen.values()), "lines": lines}


def _duration(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=2, help="copies of the 7 recordings (default 2: 14 files)")
    ap.add_argument("--asr", default="moonshine")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vk-bench-batch-") as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        recordings = [p for p, _ in librivox_clips()] + [speech("goforward"), speech("numbers")]
        for c in range(args.copies):
            for i, path in enumerate(recordings):
                shutil.copy(path, src / f"f{c}_{i}.wav")
        files = sorted(src.iterdir())
        audio = sum(_duration(f) for f in files)
        print(f"{len(files)} files, {audio:.1f} s of audio, ASR {args.asr}, {os.cpu_count()} CPUs")
        print(f"{'run':8s} {'wall s':>7s} {'files/min':>9s} {'CPU s/audio s':>13s}")
        results: dict[str, dict[str, Any]] = {}
        runs = {
            "plain": [*VOICEKIT, "transcribe", *map(str, files), "--asr", args.asr, "-o", f"{tmp}/plain/"],
            "ray-1": [*VOICEKIT, "transcribe", str(src), "--asr", args.asr, "--cluster", "local", "--workers", "1",
                      "-o", f"{tmp}/ray1", "-v"],
            "ray-2": [*VOICEKIT, "transcribe", str(src), "--asr", args.asr, "--cluster", "local", "--workers", "2",
                      "-o", f"{tmp}/ray2", "-v"],
        }
        for name, cmd in runs.items():
            r = results[name] = measure(cmd)
            print(f"{name:8s} {r['wall']:7.1f} {60 * len(files) / r['wall']:9.1f} {r['cpu'] / audio:13.2f}",
                  flush=True)
        one = results["ray-1"]["lines"]
        ready = next(t for t, text in one if "worker ready" in text)
        last = max(t for t, text in one if "batch: done " in text)
        busy = sum(float(m.group(1)) for _, text in one if (m := re.search(r"audio in ([\d.]+) s, worker", text)))
        overhead = (last - ready - busy) / len(files)
        print(f"Ray start-up (local cluster + 1 worker with its engines): {ready:.1f} s")
        print(f"per-file overhead Ray adds (dispatch, result, output write): {1000 * overhead:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
