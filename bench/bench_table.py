"""voicekit's side of the performance table (issue 11), through the side-by-side harness.

The peers' harnesses (Pipecat, LiveKit Agents) and voicekit's twin of them live in the shared
``bench-peers`` folder next to the project checkout (``../shared/bench-peers``; its README says
how to run all three interleaved with ``compare.py``). This script runs voicekit's harness alone
with the project's interpreter, on the same 60 s recording and the same work: fast (as fast as
possible) and live (real-time paced) CPU seconds per audio second with webrtc and Silero VAD, and
20 live Silero sessions in one process. Memory per session is ``bench_memory.py``'s, the 10-minute
MockClock conversation ``bench_core.py``'s, many live Silero streams ``bench_silero_shared.py``'s.

    .venv/bin/python bench/bench_table.py                      # about 5 minutes
    .venv/bin/python bench/bench_table.py --peers-dir PATH --runs 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "bench-peers"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers-dir", type=Path, default=DEFAULT, help="the bench-peers folder")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", type=Path, help="also write the harness's JSON here")
    args = ap.parse_args()
    harness = args.peers_dir / "voicekit_bench.py"
    wav = args.peers_dir / "data" / "speech60.wav"
    if not harness.is_file() or not wav.is_file():
        print(f"bench_table: no side-by-side harness at {args.peers_dir}; pass --peers-dir with the "
              f"bench-peers folder (voicekit_bench.py and data/speech60.wav)", file=sys.stderr)
        return 0
    failed = 0
    for scenarios, extra in (("fast,paced", ["--vads", "webrtc,silero"]),
                             ("paced-concurrency", ["--concurrency-vads", "silero", "--paced-n-list", "20"])):
        cmd = [sys.executable, str(harness), "--wav", str(wav), "--runs", str(args.runs),
               "--scenarios", scenarios, *extra]
        if args.out:
            cmd += ["--out", str(args.out.with_suffix(f".{scenarios}.json"))]
        print(f"-- voicekit_bench.py --scenarios {scenarios} {' '.join(extra)}", flush=True)
        failed += subprocess.run(cmd).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
