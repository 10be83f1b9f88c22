"""The DashScope streams benchmark runs, the way `make bench` runs it, and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[4] / "bench" / "bench_dashscope_streams.py"


@pytest.mark.slow
@pytest.mark.parametrize("api", ["task", "realtime"])
def test_bench_prints_the_client_figures(api: str) -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--api", api, "--levels", "3", "--seconds", "6",
                          "--servers", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "streams sustained: 3" in text, text
    per_stream = float(re.search(r"client CPU s per stream-second: ([\d.]+)", text).group(1))  # type: ignore[union-attr]
    per_message = float(re.search(r"client cost per message: ([\d.]+) us", text).group(1))  # type: ignore[union-attr]
    assert 0 < per_stream < 0.5 and 0 < per_message < 100_000
    m = re.search(r"latency last audio -> final: p50 (\d+) ms, p99 (\d+) ms", text)
    assert m is not None and 700 <= int(m.group(1)) <= int(m.group(2)) < 5000, text  # includes the 700 ms silence
