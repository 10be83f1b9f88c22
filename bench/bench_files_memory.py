"""Peak memory of transcribing a long local file through the DashScope emulator (streamed upload).

Generates an N-hour 16 kHz mono WAV on disk (a tone "sentence" every 10 s), starts the emulator in
a subprocess (``voicekit emulate dashscope`` with scripted fixtures), then uploads the file with
voicekit's temporary-upload client and transcribes it as a ``fun-asr`` task — in this process,
whose peak RSS is reported next to the file size. Memory should stay flat: the file is never read
whole by the client.

    python bench/bench_files_memory.py --hours 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import trio


def make_wav(path: Path, hours: float, rate: int = 16000) -> int:
    block = np.zeros(10 * rate, np.int16)
    t = np.arange(int(1.5 * rate)) / rate
    block[rate: rate + t.size] = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16)
    blocks = int(hours * 360)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for _ in range(blocks):
            w.writeframes(block.tobytes())
    return blocks


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(path: Path, base_url: str, deadline: float) -> tuple[int, float, float]:
    from voicekit_dashscope.client.files import FileTranscriber
    from voicekit_dashscope.upload import transcribe_sources

    client = FileTranscriber("sk-bench-0000000000000000000000000000", base_url=base_url, poll_first=0.5)
    upload_done = [0.0]
    t0 = time.perf_counter()

    def progress(name: str, sent: int, total: int) -> None:
        if sent == total:
            upload_done[0] = time.perf_counter() - t0

    results = await transcribe_sources(client, "fun-asr", [path], progress=progress, deadline=deadline)
    tr = results[0].transcript
    return (len(tr.sentences) if tr else -1), upload_done[0], time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=1.0, help="length of the generated file (default 1)")
    ap.add_argument("--rate", type=int, default=16000,
                    help="sample rate (default 16000); the temporary store takes at most 1 GB per file, "
                         "so use 8000 for 12 hours")
    ap.add_argument("--deadline", type=float, default=3600.0)
    args = ap.parse_args()
    from voicekit.logging import configure

    configure("warning", stream=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        blocks = make_wav(path, args.hours, args.rate)
        fixtures = Path(tmp) / "fixtures.json"
        fixtures.write_text(json.dumps({"key": "tone", "sentences": {"440": "a tone sentence"}}))
        emu = subprocess.Popen([sys.executable, "-m", "voicekit_dashscope.cli", "emulate", "dashscope", "--port", "0",
                                "--fixtures", str(fixtures), "--vad", "energy"],
                               stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        try:
            assert emu.stdout is not None
            line = emu.stdout.readline()
            port = int(line.split(":")[-1])
            import voicekit_dashscope.upload  # noqa: F401 - imports count in the baseline

            base = rss_mb()
            sentences, upload_s, total_s = trio.run(run, path, f"http://127.0.0.1:{port}", args.deadline)
            peak = rss_mb()
        finally:
            emu.terminate()
            emu.wait(10)
        size_mb = path.stat().st_size / 1024 ** 2
    print(f"file: {args.hours:g} h at {args.rate} Hz, {size_mb:.0f} MB; sentences {sentences} (expected {blocks})")
    print(f"upload {upload_s:.1f} s ({size_mb / max(upload_s, 1e-9):.0f} MB/s); upload+transcribe {total_s:.1f} s")
    print(f"client peak RSS: {peak:.0f} MB (baseline after imports {base:.0f} MB, growth {peak - base:.0f} MB)")
    return 0 if sentences == blocks else 1


if __name__ == "__main__":
    raise SystemExit(main())
