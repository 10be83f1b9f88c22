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
    ["bench_live.py"],
    ["bench_serve.py"],
    ["bench_dashscope_streams.py"],
    ["bench_omni_bargein.py"],
]


def main() -> int:
    failed = 0
    for script, *args in RUNS:
        print(f"== {script} {' '.join(args)}", flush=True)
        r = subprocess.run([sys.executable, str(HERE / script), *args])
        failed += r.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
