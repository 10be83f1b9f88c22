"""Core benchmarks: CPU per audio second for the VAD + session path and for the default ASR,
wall time of a 10-minute scripted session on virtual time, and peak memory while
transcribing a long file.

    .venv/bin/python bench/bench_core.py                 # all, 60-minute file for memory
    .venv/bin/python bench/bench_core.py --minutes 10    # shorter memory run

Figures are printed, not asserted: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import trio
import trio.testing

from voicekit import transcribe
from voicekit.audio.frame import AudioFrame
from voicekit.audio.sinks import NullSink
from voicekit.audio.sources import FileSource
from voicekit.session import Session, SessionConfig
from voicekit.testing import FakeASR, FakeTTS, ScriptedSource, Silence, Speech, collect
from voicekit.testing.data import librivox_clips
from voicekit.vad.webrtc import WebRTCVAD


def _clips() -> list[AudioFrame]:
    out = []
    for path, _ in librivox_clips():
        with wave.open(str(path)) as w:
            out.append(AudioFrame(w.readframes(w.getnframes()), w.getframerate()))
    return out


def _long_wav(path: Path, minutes: float) -> float:
    """Real speech clips with pauses, repeated to ``minutes``; written streaming."""
    clips = _clips()
    gap = bytes(16000 * 2)  # 1 s of silence
    total = 0.0
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        while total < minutes * 60:
            for c in clips:
                w.writeframes(c.pcm + gap)
                total += c.duration + 1.0
    return total


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _session_path(path: Path) -> tuple[float, float]:
    source = FileSource(path, sample_rate=16000)
    cpu = time.process_time()
    tl = await collect(Session(source, asr=FakeASR([]), vad=WebRTCVAD(16000, 30, 2),
                               config=SessionConfig()))
    return time.process_time() - cpu, len(tl)


def bench_session_path(tmp: Path) -> None:
    path = tmp / "ten_min.wav"
    audio_s = _long_wav(path, 10)
    cpu, n = trio.run(_session_path, path)
    print(f"VAD + session path (decode, resample, webrtc VAD, endpointing, events; no ASR): "
          f"{cpu / audio_s * 1000:.2f} ms CPU per audio second ({audio_s:.0f} s audio, {int(n)} events)")


def bench_default_asr() -> None:
    from voicekit_moonshine import MoonshineASR

    clips = librivox_clips()
    audio_s = 0.0
    cpu = time.process_time()
    wall = time.perf_counter()
    for path, _ in clips:
        source = FileSource(path, sample_rate=16000)
        trio.run(_run_transcribe, source, MoonshineASR())
        with wave.open(str(path)) as w:
            audio_s += w.getnframes() / w.getframerate()
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    print(f"default ASR (moonshine tiny-en, whole pipeline): {cpu / audio_s:.3f} CPU s per audio s, "
          f"real-time factor {wall / audio_s:.3f} (LibriVox clips, {audio_s:.1f} s)")


async def _run_transcribe(source: FileSource, asr: object) -> object:
    return await transcribe(source, asr=asr, vad=WebRTCVAD(16000, 30, 2))  # type: ignore[arg-type]


def bench_virtual_session() -> None:
    script: list[object] = []
    for _ in range(60):
        script += [Silence(3.0), Speech(2.0), Silence(5.0)]

    async def main(chunk_ms: int) -> None:
        from voicekit.handlers import Assistant, Turn

        a = Assistant("bench")

        @a.intent("go forward ten meters")
        async def move(turn: Turn) -> str:
            return "Moving forward ten meters."

        await collect(Session(ScriptedSource(script, chunk_ms=chunk_ms),  # type: ignore[arg-type]
                              asr=FakeASR(["go forward ten meters"] * 60), vad=WebRTCVAD(16000, 30, 2),
                              assistant=a, tts=FakeTTS(chunk_ms=100), sink=NullSink(16000),
                              config=SessionConfig(realtime=True)))

    async def floor(chunk_ms: int) -> None:
        # what the clock alone costs: one wake-up per capture buffer, with the wait ScriptedSource
        # paces with, on the same clock, and nothing else
        from voicekit.audio._clock import sleep_until

        start = trio.current_time()
        for i in range(600_000 // chunk_ms):
            await sleep_until(start + (i + 1) * chunk_ms / 1000)

    for chunk_ms in (100, 20):
        wall = time.perf_counter()
        trio.run(main, chunk_ms, clock=trio.testing.MockClock(autojump_threshold=0))
        took = time.perf_counter() - wall
        wall = time.perf_counter()
        trio.run(floor, chunk_ms, clock=trio.testing.MockClock(autojump_threshold=0))
        bare = time.perf_counter() - wall
        print(f"10-minute scripted session (60 turns, {chunk_ms} ms capture buffers, 30 ms VAD frames) "
              f"on MockClock: {took:.3f} s wall (the {600_000 // chunk_ms} pacing "
              f"wake-ups alone, no session: {bare:.3f} s)")


def bench_memory(tmp: Path, minutes: float) -> None:
    from voicekit_moonshine import MoonshineASR

    path = tmp / "long.wav"
    audio_s = _long_wav(path, minutes)
    marks: list[tuple[float, float]] = []

    def progress(pos: float) -> None:
        if not marks or pos - marks[-1][0] >= audio_s / 10:
            marks.append((pos, _peak_rss_mb()))

    async def main() -> int:
        finals = await transcribe(FileSource(path, sample_rate=16000), asr=MoonshineASR(),
                                  vad=WebRTCVAD(16000, 30, 2), progress=progress)
        return len(finals)

    before = _peak_rss_mb()
    wall = time.perf_counter()
    n = trio.run(main)
    print(f"transcribe {audio_s / 60:.1f} min file ({path.stat().st_size / 1e6:.0f} MB WAV): {n} segments in "
          f"{time.perf_counter() - wall:.0f} s; peak RSS {before:.0f} MB before, {_peak_rss_mb():.0f} MB after")
    print("  peak RSS by audio position: " + ", ".join(f"{p / 60:.0f} min {m:.0f} MB" for p, m in marks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the memory-test file")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        bench_virtual_session()
        bench_session_path(Path(tmp))
        bench_default_asr()
        if not args.skip_memory:
            bench_memory(Path(tmp), args.minutes)


if __name__ == "__main__":
    main()
