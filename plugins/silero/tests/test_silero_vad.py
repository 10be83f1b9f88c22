"""Silero VAD on real human speech, silence and noise; option and frame-size errors."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import soxr
from voicekit_silero import FrameSizeError, SileroVAD

from voicekit.errors import AudioError, ConfigError
from voicekit.plugins import load
from voicekit.testing.data import speech
from voicekit.vad.base import VADBackend

# "go forward ten meters": the words run from about 0.46 s to 2.12 s of the recording (forced
# alignment); the rest is room silence.
WORDS_START, WORDS_END = 0.46, 2.12


def goforward(rate: int = 16000) -> bytes:
    with wave.open(str(speech("goforward"))) as w:
        pcm = w.readframes(w.getnframes())
    if rate == 16000:
        return pcm
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    y = soxr.resample(x, 16000, rate)
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()


def decisions(vad: SileroVAD, pcm: bytes) -> list[bool]:
    n = vad.sample_rate * vad.frame_ms // 1000 * 2
    return [vad.is_speech(pcm[i : i + n]) for i in range(0, len(pcm) - n + 1, n)]


def speech_region(vad: SileroVAD, pcm: bytes) -> tuple[float, float]:
    d = decisions(vad, pcm)
    voiced = [i for i, x in enumerate(d) if x]
    assert voiced, "no speech detected at all"
    return voiced[0] * vad.frame_ms / 1000, (voiced[-1] + 1) * vad.frame_ms / 1000


def test_entry_point_and_protocol() -> None:
    cls = load("vad", "silero")
    assert cls is SileroVAD
    vad = cls()
    assert isinstance(vad, VADBackend)
    assert (vad.sample_rate, vad.frame_ms, vad.threshold) == (16000, 30, 0.5)
    assert vad.window_samples == 512


@pytest.mark.realspeech
@pytest.mark.parametrize("frame_ms", [10, 20, 30, 32, 64])
def test_speech_region_covers_the_words(frame_ms: int) -> None:
    vad = SileroVAD(frame_ms=frame_ms)
    start, end = speech_region(vad, goforward())
    # covers the words (allowing one window of lag at the onset), and not the silence around them
    assert WORDS_START - 0.2 <= start <= WORDS_START + 0.1
    assert WORDS_END - 0.05 <= end <= WORDS_END + 0.4


@pytest.mark.realspeech
def test_eight_khz() -> None:
    vad = SileroVAD(sample_rate=8000, frame_ms=32)
    assert vad.window_samples == 256
    start, end = speech_region(vad, goforward(8000))
    assert WORDS_START - 0.2 <= start <= WORDS_START + 0.1
    assert WORDS_END - 0.05 <= end <= WORDS_END + 0.4


@pytest.mark.realspeech
def test_probability_is_high_in_speech_and_low_in_silence() -> None:
    vad = SileroVAD(frame_ms=32)
    pcm = goforward()
    n = 512 * 2
    probs = [vad.probability(pcm[i : i + n]) for i in range(0, len(pcm) - n + 1, n)]
    assert all(0.0 <= p <= 1.0 for p in probs)
    t = np.arange(len(probs)) * 0.032
    inside = [p for p, s in zip(probs, t, strict=True) if 0.8 <= s <= 1.9]
    outside = [p for p, s in zip(probs, t, strict=True) if s < 0.3 or s > 2.5]
    assert min(inside) > 0.5 and max(outside) < 0.2


def test_silence_and_low_noise_are_not_speech() -> None:
    vad = SileroVAD(frame_ms=20)
    assert not any(decisions(vad, b"\0" * 32000))
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 0.003, 32000) * 32767  # about -50 dBFS of white noise
    assert not any(decisions(vad, noise.astype("<i2").tobytes()))
    hum = 0.01 * np.sin(2 * np.pi * 50 * np.arange(32000) / 16000) * 32767  # mains hum
    assert not any(decisions(vad, hum.astype("<i2").tobytes()))


def test_loud_steady_noise_is_not_speech() -> None:
    """Where Silero earns its cost: webrtc calls both of these speech in every frame."""
    t = np.arange(16000 * 3) / 16000
    hum = sum(np.sin(2 * np.pi * 100 * k * t) / k for k in range(1, 6))
    hum = 0.3 * hum / np.abs(hum).max()
    white = np.random.default_rng(1).normal(0.0, 0.1, t.size)  # -20 dBFS
    for noise in (hum, white):
        pcm = (np.clip(noise, -1, 1) * 32767).astype("<i2").tobytes()
        d = decisions(SileroVAD(frame_ms=30), pcm)
        assert sum(d) / len(d) < 0.05


@pytest.mark.realspeech
def test_threshold_moves_the_decision() -> None:
    pcm = goforward()
    lax = sum(decisions(SileroVAD(frame_ms=32, threshold=0.05), pcm))
    strict = sum(decisions(SileroVAD(frame_ms=32, threshold=0.95), pcm))
    assert lax > strict


@pytest.mark.realspeech
def test_reset_forgets_the_stream() -> None:
    vad = SileroVAD(frame_ms=30)
    pcm = goforward()
    first = decisions(vad, pcm)
    vad.reset()
    assert decisions(vad, pcm) == first
    # after the words, mid-window, without reset the last decision would still be speech
    vad.reset()
    n = 480 * 2
    assert vad.is_speech(pcm[int(1.2 * 16000) * 2 :][:n]) is False  # no full window yet: not speech


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="44100 Hz"):
        SileroVAD(sample_rate=44100)
    with pytest.raises(ConfigError, match="frame must be one of"):
        SileroVAD(frame_ms=25)
    with pytest.raises(ConfigError, match="threshold"):
        SileroVAD(threshold=1.5)
    with pytest.raises(ConfigError, match="threshold"):
        SileroVAD(threshold=0)
    with pytest.raises(ConfigError, match="no option 'mode'"):
        SileroVAD(mode=2)
    with pytest.raises(ConfigError, match="does not exist"):
        SileroVAD(model_path="/nonexistent/silero.onnx")


def test_wrong_frame_length_is_a_typed_error() -> None:
    vad = SileroVAD(frame_ms=20)
    with pytest.raises(FrameSizeError, match="640 bytes per frame") as info:
        vad.is_speech(b"\0" * 960)
    assert isinstance(info.value, AudioError) and isinstance(info.value, ValueError)


def test_batch_window_must_be_a_short_wait() -> None:
    assert SileroVAD(batch_window_ms=10).batch_window_ms == 10.0
    assert SileroVAD().batch_window_ms == 0.0  # off by default
    for bad in (-1, 101, True, "10"):
        with pytest.raises(ConfigError, match="batch_window_ms"):
            SileroVAD(batch_window_ms=bad)


def test_batch_window_from_the_command_line_options() -> None:
    """``--vad-option batch_window_ms=10`` (run, serve) reaches the backend as a number."""
    from voicekit.plugins.options import coerce_options

    opts = coerce_options("silero", SileroVAD, {"batch_window_ms": "10"})
    assert SileroVAD(**opts).batch_window_ms == 10.0
    with pytest.raises(ConfigError, match="batch_window_ms"):
        coerce_options("silero", SileroVAD, {"batch_window_ms": "500"})
