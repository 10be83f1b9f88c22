"""Run every benchmark in turn and print their figures (``make bench``). Each script can also be
run on its own; see its docstring for options. Expect several minutes on a 2-core machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RUNS = [
    ["bench_core.py", "--minutes", "10"],
    ["bench_bargein.py"],
    ["bench_vad.py"],
    ["bench_pocketsphinx.py"],
    ["bench_audio_memory.py", "--minutes", "10"],
    ["bench_memory.py"],
    ["bench_silero_shared.py"],
    ["bench_silero_sessions.py"],
    ["bench_handoff.py"],
    ["bench_wakeup.py"],
    ["bench_table.py"],
    ["bench_live.py"],
    ["bench_serve.py"],
    ["bench_capacity.py"],
    ["bench_dashscope_streams.py"],
    ["bench_omni_bargein.py"],
    ["bench_batch.py"],
]


def main() -> int:
    failed = 0
    for script, *args in RUNS:
        print(f"== {script} {' '.join(args)}", flush=True)
        # its own session, so that Ctrl-C reaches only us: we stop it quietly instead of each
        # benchmark printing a KeyboardInterrupt traceback
        child = subprocess.Popen([sys.executable, str(HERE / script), *args], start_new_session=True)
        try:
            failed += child.wait() != 0
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            print("benchmarks stopped", file=sys.stderr)
            return 130
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
