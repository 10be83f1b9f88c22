"""CPU cost of the VAD backends: Silero (neural) against WebRTC (GMM), on real read speech.

Runs each backend over the five LibriVox clips of the pocketsphinx source distribution (16 kHz
mono, fetched and cached by ``voicekit.testing.data``), frame by frame as the endpointer would,
and prints CPU seconds spent per second of audio (lower is better; 0.01 means 1% of one core),
the real-time factor, the share of frames each one calls speech, and how often the two agree;
then the share of frames each calls speech on synthetic noise (white, brown, mains hum).

    python bench/bench_vad.py                # 30 ms frames, 3 repeats
    python bench/bench_vad.py --frame-ms 20 --repeats 5
"""

from __future__ import annotations

import argparse
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voicekit.testing.data import librivox_clips


def webrtc_factory(frame_ms: int) -> Callable[[], object]:
    try:
        from voicekit.vad.webrtc import WebRTCVAD
    except ImportError:  # the core backend is not there: use the package directly
        import webrtcvad

        class _Raw:
            def __init__(self) -> None:
                self.sample_rate, self.frame_ms = 16000, frame_ms
                self._vad = webrtcvad.Vad(2)

            def is_speech(self, pcm: bytes) -> bool:
                return bool(self._vad.is_speech(pcm, 16000))

        return _Raw
    return lambda: WebRTCVAD(sample_rate=16000, frame_ms=frame_ms, mode=2)


def silero_factory(frame_ms: int) -> Callable[[], object]:
    from voicekit_silero import SileroVAD

    return lambda: SileroVAD(sample_rate=16000, frame_ms=frame_ms, threshold=0.5)


def load(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.readframes(w.getnframes())


def run(make: Callable[[], object], clips: list[bytes], frame_ms: int) -> tuple[float, list[bool]]:
    """CPU seconds over all clips (a fresh backend per clip, as per stream), and the decisions."""
    n = 16000 * frame_ms // 1000 * 2
    decisions: list[bool] = []
    cpu = 0.0
    for pcm in clips:
        vad = make()
        is_speech = vad.is_speech  # type: ignore[attr-defined]
        frames = [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]
        t0 = time.process_time()
        out = [is_speech(f) for f in frames]
        cpu += time.process_time() - t0
        decisions += out
    return cpu, decisions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frame-ms", type=int, default=30, choices=(10, 20, 30))
    ap.add_argument("--repeats", type=int, default=3, help="best of N runs is reported")
    args = ap.parse_args()

    clips = [load(path) for path, _ in librivox_clips()]
    audio_s = sum(len(c) for c in clips) / 32000
    print(f"{len(clips)} LibriVox clips, {audio_s:.1f} s of audio, {args.frame_ms} ms frames, "
          f"best of {args.repeats}")
    backends = {"webrtc (mode 2)": webrtc_factory(args.frame_ms),
                "silero (threshold 0.5)": silero_factory(args.frame_ms)}
    if args.frame_ms != 32:
        backends["silero, 32 ms frames"] = silero_factory(32)
    results: dict[str, list[bool]] = {}
    print(f"{'backend':<24} {'CPU s / audio s':>16} {'x real time':>12} {'speech frames':>14}")
    for name, make in backends.items():
        frame_ms = 32 if "32 ms" in name else args.frame_ms
        make()  # load the model outside the timed runs
        best = min(run(make, clips, frame_ms)[0] for _ in range(args.repeats))
        _, decisions = run(make, clips, frame_ms)
        results[name] = decisions
        per_s = best / audio_s
        print(f"{name:<24} {per_s:>16.5f} {1 / per_s if per_s else float('inf'):>12.0f} "
              f"{sum(decisions) / len(decisions):>13.1%}")
    a, b = list(results.values())[:2]
    agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    print(f"webrtc and silero agree on {agree:.1%} of {len(a)} frames "
          f"(speech for webrtc only: {only_a}, for silero only: {only_b})")

    print("\nshare of frames called speech on 10 s of noise (no speech at all):")
    names = list(backends)[:2]
    print(f"{'noise':<36} " + " ".join(f"{n:>24}" for n in names))
    for label, pcm in noises().items():
        row = []
        for name in names:
            _, d = run(backends[name], [pcm], args.frame_ms)
            row.append(f"{sum(d) / len(d):>24.0%}")
        print(f"{label:<36} " + " ".join(row))


def noises() -> dict[str, bytes]:
    """Synthetic non-speech sounds, 10 s each at 16 kHz (seeded, so runs are comparable)."""
    rng = np.random.default_rng(1)
    n = 16000 * 10
    t = np.arange(n) / 16000
    out = {
        "white noise, -30 dBFS rms": rng.normal(0, 0.03, n),
        "white noise, -20 dBFS rms": rng.normal(0, 0.1, n),
        "brown noise, peak 0.3": _peak(np.cumsum(rng.normal(0, 1, n)), 0.3),
        "100 Hz hum + 4 harmonics, peak 0.3": _peak(sum(np.sin(2 * np.pi * 100 * k * t) / k for k in range(1, 6)), 0.3),
    }
    return {k: (np.clip(v, -1, 1) * 32767).astype("<i2").tobytes() for k, v in out.items()}


def _peak(x: np.ndarray, peak: float) -> np.ndarray:  # type: ignore[type-arg]
    x = x - x.mean()
    return x / np.abs(x).max() * peak


if __name__ == "__main__":
    main()
