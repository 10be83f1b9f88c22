"""What one timer wake-up costs: trio's ``sleep_until`` against asyncio's ``sleep`` on the same
absolute 20 ms schedule, nothing else running (the floor under any paced live session).

Each loop runs in a fresh process; the rounds alternate trio and asyncio (the machine is shared:
compare the figures of one run). CPU µs per wake-up (``getrusage`` of the child), the median of
the rounds:

    .venv/bin/python bench/bench_wakeup.py                    # 10 s per loop, 3 rounds
    .venv/bin/python bench/bench_wakeup.py --seconds 20 --rounds 5

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PERIOD = 0.020


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def trio_loop(n: int) -> float:
    import trio

    async def main() -> float:
        c0, t = cpu(), trio.current_time()
        for _ in range(n):
            t += PERIOD
            await trio.sleep_until(t)
        return cpu() - c0

    return trio.run(main)


def asyncio_loop(n: int) -> float:
    import asyncio

    async def main() -> float:
        loop = asyncio.get_running_loop()
        c0, t = cpu(), loop.time()
        for _ in range(n):
            t += PERIOD
            await asyncio.sleep(max(0.0, t - loop.time()))
        return cpu() - c0

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each loop")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=("trio", "asyncio"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    n = round(a.seconds / PERIOD)
    if a.child:
        print(json.dumps((trio_loop if a.child == "trio" else asyncio_loop)(n) / n * 1e6))
        return
    got: dict[str, list[float]] = {"trio": [], "asyncio": []}
    for r in range(a.rounds):
        for kind in (("trio", "asyncio") if r % 2 == 0 else ("asyncio", "trio")):
            t0 = time.monotonic()
            out = subprocess.run([sys.executable, __file__, "--child", kind, "--seconds", str(a.seconds)],
                                 capture_output=True, text=True, check=True)
            got[kind].append(float(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: {kind} {got[kind][-1]:.0f} us per wake-up ({time.monotonic() - t0:.1f} s wall, "
                  f"load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    print(f"one timer wake-up every {PERIOD * 1e3:g} ms, {a.seconds:g} s loops, median of {a.rounds} rounds")
    for kind, xs in got.items():
        rounds = ' '.join(f'{x:.0f}' for x in xs)
        print(f"{kind:8s} {statistics.median(xs):6.0f} us CPU per wake-up  (rounds: {rounds})")


if __name__ == "__main__":
    main()
