"""WavFileSink, NullSink and MemorySink."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from voicekit.audio import AudioFrame, AudioSink, FileSource, MemorySink, NullSink, WavFileSink
from voicekit.audio import sinks as sinks_module
from voicekit.errors import AudioError, ConfigError


def ramp_frames(n_frames: int, rate: int = 16000, channels: int = 1, chunk: int = 320) -> list[AudioFrame]:
    a = (np.arange(n_frames * chunk * channels) % 25000 - 12500).astype("<i2").reshape(-1, channels)
    return [AudioFrame(a[i * chunk : (i + 1) * chunk].tobytes(), rate, channels, i * chunk / rate)
            for i in range(n_frames)]


async def test_wav_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    sink = WavFileSink(path, 16000, channels=2)
    frames = ramp_frames(100, channels=2)
    for f in frames:
        await sink.write(f)
    await sink.aclose()
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 2, 2, 32000)
        assert w.readframes(w.getnframes()) == b"".join(f.pcm for f in frames)
    # and our own decoder reads it back sample for sample
    back = [f async for f in FileSource(path, sample_rate=None, channels=2).frames()]
    assert b"".join(f.pcm for f in back) == b"".join(f.pcm for f in frames)


async def test_header_is_patched_on_close_and_data_streams_before(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks_module, "WRITE_BLOCK", 4096)
    path = tmp_path / "stream.wav"
    sink = WavFileSink(path, 8000)
    for f in ramp_frames(50, rate=8000, chunk=160):
        await sink.write(f)
    temp = Path(sink.temp_path)
    assert temp.parent == tmp_path and not path.exists()  # the target appears only when complete
    size_before = temp.stat().st_size
    assert size_before > 44 + 4096  # written in blocks while recording, not only at the end
    assert struct.unpack("<I", temp.read_bytes()[40:44])[0] == 0  # sizes unknown until closed
    await sink.aclose()
    assert not temp.exists()
    raw = path.read_bytes()
    assert len(raw) == 44 + 50 * 160 * 2
    assert struct.unpack("<I", raw[40:44])[0] == 50 * 160 * 2
    assert struct.unpack("<I", raw[4:8])[0] == len(raw) - 8
    assert sink.duration == pytest.approx(1.0)
    await sink.aclose()  # twice is fine


async def test_wav_sink_resamples_foreign_frames(tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(rate) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1)
    path = tmp_path / "resampled.wav"
    sink = WavFileSink(path, 16000)
    for f in AudioFrame.from_array(stereo, rate).split(441):
        await sink.write(f)
    await sink.aclose()
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getframerate() == 16000
        y = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.fft.rfftfreq(len(y), 1 / 16000)[np.argmax(spectrum)] == pytest.approx(440, abs=2)


async def test_wav_sink_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"cannot write WAV file .* does not exist") as exc:
        WavFileSink(tmp_path / "no" / "such" / "dir.wav", 16000)
    assert "no/such/dir.wav" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ConfigError):
        WavFileSink(tmp_path / "x.wav", 0)
    sink = WavFileSink(tmp_path / "x.wav", 16000)
    await sink.aclose()
    with pytest.raises(AudioError, match="closed"):
        await sink.write(ramp_frames(1)[0])


async def test_null_and_memory_sinks() -> None:
    null, memory = NullSink(16000), MemorySink(16000)
    frames = ramp_frames(10)
    for f in frames:
        await null.write(f)
        await memory.write(f)
    assert (null.samples, null.frames) == (3200, 10) and null.duration == pytest.approx(0.2)
    assert memory.frames == frames and memory.samples == 3200 and memory.duration == pytest.approx(0.2)
    assert memory.pcm() == b"".join(f.pcm for f in frames)
    assert memory.to_array().shape == (3200, 1)
    assert memory.to_frame().timestamp == 0.0 and memory.to_frame().samples == 3200
    await null.aclose()
    await memory.aclose()
    with pytest.raises(AudioError, match="closed"):
        await memory.write(frames[0])


async def test_sinks_satisfy_the_protocol(tmp_path: Path) -> None:
    for sink in (NullSink(), MemorySink(), WavFileSink(tmp_path / "p.wav", 16000)):
        assert isinstance(sink, AudioSink)
        assert sink.realtime is False
        await sink.aclose()
