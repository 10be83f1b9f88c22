"""Peak memory and speed of FileSource on a long file.

Generates a long audio file (default one hour, 44.1 kHz stereo) by encoding it with PyAV block by
block into a temporary folder, in a child process so that generating it does not count towards
the measured peak. Then decodes the whole file through ``FileSource(sample_rate=16000)`` and
prints the peak resident set size before and after decoding, and the decode speed in seconds of
audio per second of CPU time.

    python bench/bench_audio_memory.py                 # one hour of FLAC
    python bench/bench_audio_memory.py --minutes 10 --format mp3
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODECS = {"flac": ("flac", None), "mp3": ("libmp3lame", None), "opus": ("libopus", "ogg"),
          "m4a": ("aac", None), "wav": ("pcm_s16le", None)}


def generate(path: Path, minutes: float, fmt: str) -> None:
    """Encode ``minutes`` of a 440 Hz tone with a little noise, one second at a time."""
    import av
    import numpy as np

    codec, container_format = CODECS[fmt]
    rate = 48000 if fmt == "opus" else 44100
    rng = np.random.default_rng(0)
    t = np.arange(rate) / rate
    base = 0.3 * np.sin(2 * np.pi * 440 * t)
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        names = [f.name for f in stream.codec_context.codec.audio_formats]
        sample_fmt = next(f for f in ("fltp", "s16", "flt") if f in names)
        pts = 0
        for _ in range(round(minutes * 60)):
            block = np.stack([base + 0.01 * rng.standard_normal(rate)] * 2).astype(np.float32)
            if sample_fmt == "s16":
                data = (block.T.reshape(1, -1) * 32767).astype(np.int16)
            elif sample_fmt == "flt":
                data = np.ascontiguousarray(block.T.reshape(1, -1))
            else:
                data = block
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sample_fmt, layout="stereo")
            frame.sample_rate = rate
            frame.pts = pts
            pts += rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def decode(path: Path) -> tuple[float, int]:
    from voicekit.audio import FileSource

    samples = frames = 0
    async for frame in FileSource(path, sample_rate=16000).frames():
        samples += frame.samples
        frames += 1
    return samples / 16000, frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0, help="length of the generated file (default 60)")
    p.add_argument("--format", choices=sorted(CODECS), default="flac", help="file format (default flac)")
    p.add_argument("--generate-only", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.generate_only:
        generate(args.generate_only, args.minutes, args.format)
        return

    import trio

    import voicekit.audio  # noqa: F401  (import cost belongs to the baseline)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"long.{args.format}"
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--minutes", str(args.minutes), "--format", args.format,
                        "--generate-only", str(path)], check=True)
        print(f"generated {args.minutes:g} min of {args.format} ({path.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t:.1f} s")
        before = peak_rss_mb()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        seconds, frames = trio.run(decode, path)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        after = peak_rss_mb()
    whole = seconds * 44100 * 2 * 4 / 1e6
    print(f"decoded {seconds:.1f} s of audio into {frames} frames of 20 ms at 16 kHz mono")
    print(f"peak RSS before decoding: {before:.1f} MB")
    print(f"peak RSS after decoding:  {after:.1f} MB  (growth {after - before:.1f} MB; "
          f"the decoded file as float32 would be {whole:.0f} MB)")
    print(f"decode speed: {seconds / cpu:.0f} s of audio per CPU second "
          f"({seconds / wall:.0f}x real time on the wall clock; {cpu:.1f} s CPU, {wall:.1f} s wall)")


if __name__ == "__main__":
    main()
