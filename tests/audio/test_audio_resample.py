"""StreamResampler: stateful chunked conversion, contiguous output timestamps, channel mixing."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from voicekit.audio import AudioFrame, StreamResampler
from voicekit.audio.resample import float_to_int16, mix_channels
from voicekit.errors import ConfigError


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> npt.NDArray[np.float64]:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)


def frames_of(x: npt.NDArray[np.floating], rate: int, sizes: list[int], t0: float = 0.0) -> list[AudioFrame]:
    out, pos = [], 0
    x2 = x if x.ndim == 2 else x[:, None]
    while pos < len(x2):
        n = sizes[len(out) % len(sizes)]
        out.append(AudioFrame.from_array(x2[pos : pos + n], rate, t0 + pos / rate))
        pos += n
    return out


def run(r: StreamResampler, frames: list[AudioFrame]) -> list[AudioFrame]:
    out = [o for f in frames if (o := r.process(f)) is not None]
    tail = r.flush()
    return [*out, tail] if tail is not None else out


def dominant(x: npt.NDArray[np.floating], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(("in_rate", "out_rate"), [(44100, 16000), (8000, 16000), (48000, 22050)])
def test_rate_conversion_keeps_length_tone_and_timeline(in_rate: int, out_rate: int) -> None:
    x = sine(1.0, in_rate)
    r = StreamResampler(in_rate, out_rate)
    out = run(r, frames_of(x, in_rate, [441, 17, 1000, 3], t0=5.0))
    assert all(f.sample_rate == out_rate and f.channels == 1 for f in out)
    assert sum(f.samples for f in out) == round(len(x) * out_rate / in_rate)
    assert out[0].timestamp == pytest.approx(5.0)
    for prev, cur in itertools.pairwise(out):
        assert cur.timestamp == pytest.approx(prev.end, abs=1e-9)
    y = np.concatenate([f.to_array()[:, 0] for f in out]).astype(np.float64) / 32768
    assert dominant(y, out_rate) == pytest.approx(440, abs=2)
    steady = y[out_rate // 10 : -out_rate // 10]
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_chunking_does_not_change_the_output() -> None:
    x = sine(0.5, 44100, 1234.5)
    whole = run(StreamResampler(44100, 16000), frames_of(x, 44100, [len(x)]))
    chunked = run(StreamResampler(44100, 16000), frames_of(x, 44100, [7, 300, 882, 1]))
    a = np.concatenate([f.to_array() for f in whole])
    b = np.concatenate([f.to_array() for f in chunked])
    assert a.shape == b.shape
    assert np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= 1


def test_stereo_down_mix_and_mono_up_mix() -> None:
    x = sine(0.2, 16000)
    opposite = np.stack([x, -x], axis=1)  # L and R cancel when averaged
    out = run(StreamResampler(16000, 8000, 2, 1), frames_of(opposite, 16000, [320]))
    assert all(f.channels == 1 for f in out)
    assert np.abs(np.concatenate([f.to_array() for f in out])).max() <= 1

    up = run(StreamResampler(16000, 16000, 1, 2), frames_of(x, 16000, [320]))
    a = np.concatenate([f.to_array() for f in up])
    assert a.shape == (len(x), 2) and np.array_equal(a[:, 0], a[:, 1])


def test_mix_channels_general_cases() -> None:
    a = np.arange(12, dtype=np.float32).reshape(2, 6)  # 2 samples, 6 channels
    two = mix_channels(a, 2)
    assert np.allclose(two[0], [np.mean([0, 2, 4]), np.mean([1, 3, 5])])
    four = mix_channels(a[:, :3], 4)
    assert np.allclose(four[0], [0, 1, 2, 0])


def test_passthrough_only_restamps() -> None:
    x = sine(0.1, 16000)
    frames = frames_of(x, 16000, [320])
    # an input timeline with a gap: the output timeline stays contiguous
    frames[2] = AudioFrame(frames[2].pcm, 16000, 1, 99.0)
    r = StreamResampler(16000, 16000)
    assert r.passthrough
    out = run(r, frames)
    assert [f.pcm for f in out] == [f.pcm for f in frames]
    assert [f.timestamp for f in out] == pytest.approx([i * 0.02 for i in range(len(frames))])


def test_full_scale_square_wave_clips_instead_of_wrapping() -> None:
    square = np.where(sine(0.1, 48000, 100.0) >= 0, 32767, -32768).astype(np.int16)
    out = run(StreamResampler(48000, 16000), frames_of(square.astype(np.float64) / 32768, 48000, [960]))
    y = np.concatenate([f.to_array()[:, 0] for f in out]).astype(np.int32)
    ref = sine(0.1, 16000, 100.0)[: len(y)]
    # the filter's overshoot (Gibbs) must saturate, never flip sign
    y, ref = y[100:-100], ref[100:-100]
    clear = np.abs(ref) > 0.2
    assert np.all(np.sign(y[clear]) == np.sign(ref[clear]))
    assert float_to_int16(np.array([1.5, -1.5, 0.5]))[:2].tolist() == [32767, -32768]


def test_flush_with_nothing_pending_and_reuse() -> None:
    r = StreamResampler(44100, 16000)
    assert r.flush() is None
    first = run(r, frames_of(sine(0.1, 44100), 44100, [441]))
    second = run(r, frames_of(sine(0.1, 44100), 44100, [441], t0=0.1))
    assert sum(f.samples for f in first) == 1600 and sum(f.samples for f in second) == 1600
    assert second[0].timestamp == pytest.approx(first[-1].end)


def test_wrong_input_format_and_bad_settings() -> None:
    r = StreamResampler(44100, 16000)
    with pytest.raises(ValueError, match="expects 44100 Hz / 1 ch"):
        r.process(AudioFrame(b"\x00\x00" * 10, 16000))
    with pytest.raises(ConfigError, match="quality"):
        StreamResampler(44100, 16000, quality="best")
    with pytest.raises(ConfigError, match="out_rate"):
        StreamResampler(44100, 0)
