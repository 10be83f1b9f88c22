"""FileSource / PCMSource / open_source on real files encoded by FFmpeg (through PyAV) in the test."""

from __future__ import annotations

import io
import itertools
import os
import struct
import sys
import tracemalloc
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
import structlog
import trio
import trio.testing

from voicekit.audio import AudioFrame, AudioSource, FileSource, PCMSource, open_source, probe
from voicekit.errors import AudioError, ConfigError, EmptyAudioError, UnsupportedAudioError
from voicekit.testing.encode import encode_audio

# --------------------------------------------------------------------------------------- helpers


def tone(seconds: float, rate: int, freqs: tuple[float, ...] = (440.0,),
         amp: float = 0.5) -> npt.NDArray[np.float32]:
    """(samples, len(freqs)) float32: one sine per channel."""
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([amp * np.sin(2 * np.pi * f * t) for f in freqs], axis=1).astype(np.float32)


def write_wav(path: Path, samples: npt.NDArray[np.generic], rate: int) -> Path:
    a = np.asarray(samples)
    if a.dtype.kind == "f":
        a = np.round(a * 32767)
    a = a.astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(a.tobytes())
    return path


def encode(path: Path, samples: npt.NDArray[np.float32], rate: int, codec: str,
           container_format: str | None = None) -> Path:
    """Encode float samples (n, channels) with FFmpeg's encoder ``codec``."""
    encode_audio(samples, rate, codec, container_format=container_format, dest=path)
    return path


def dominant_frequency(x: npt.NDArray[np.floating], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


async def read_all(source: AudioSource) -> list[AudioFrame]:
    frames = [f async for f in source.frames()]
    await source.aclose()
    return frames


def joined(frames: list[AudioFrame]) -> npt.NDArray[np.int16]:
    return np.concatenate([f.to_array() for f in frames])


def assert_contiguous(frames: list[AudioFrame], start: float = 0.0) -> None:
    assert frames[0].timestamp == pytest.approx(start, abs=1e-9)
    for prev, cur in itertools.pairwise(frames):
        assert cur.timestamp == pytest.approx(prev.end, abs=1e-9)


# ------------------------------------------------------------------------------------ formats

FORMATS = [
    # name, suffix, codec, container format, rate, channels, extra duration the codec may add
    ("wav", ".wav", None, None, 44100, 2, 0.0),
    ("mp3", ".mp3", "libmp3lame", None, 44100, 2, 0.03),
    ("aac", ".m4a", "aac", None, 44100, 2, 0.05),
    ("flac", ".flac", "flac", None, 44100, 2, 0.0),
    ("opus-ogg", ".opus", "libopus", "ogg", 48000, 2, 0.03),
    ("opus-webm", ".webm", "libopus", None, 48000, 1, 0.03),
]


def make_file(tmp_path: Path, suffix: str, codec: str | None, fmt: str | None, rate: int,
              channels: int, seconds: float = 1.0) -> Path:
    samples = tone(seconds, rate, (440.0,) * channels)
    path = tmp_path / f"tone{suffix}"
    if codec is None:
        return write_wav(path, samples, rate)
    return encode(path, samples, rate, codec, fmt)


@pytest.mark.parametrize(("name", "suffix", "codec", "fmt", "rate", "channels", "extra"), FORMATS,
                         ids=[f[0] for f in FORMATS])
async def test_format_decodes_to_right_duration_and_tone(tmp_path: Path, name: str, suffix: str,
                                                         codec: str | None, fmt: str | None, rate: int,
                                                         channels: int, extra: float) -> None:
    path = make_file(tmp_path, suffix, codec, fmt, rate, channels)
    source = FileSource(path, sample_rate=16000)
    frames = await read_all(source)
    assert source.info is not None and source.info.sample_rate == rate and source.info.channels == channels
    assert all(f.sample_rate == 16000 and f.channels == 1 for f in frames)
    assert all(f.samples == 320 for f in frames[:-1]) and 0 < frames[-1].samples <= 320
    assert_contiguous(frames)
    duration = frames[-1].end
    assert 1.0 - 0.025 <= duration <= 1.0 + extra + 0.025, duration
    mono = joined(frames)[:, 0].astype(np.float64) / 32768
    assert dominant_frequency(mono, 16000) == pytest.approx(440, abs=3)
    steady = mono[1600:-1600]
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


async def test_native_rate_and_stereo_kept_or_downmixed(tmp_path: Path) -> None:
    path = encode(tmp_path / "lr.flac", tone(1.0, 22050, (440.0, 1000.0)), 22050, "flac")
    info = await FileSource(path).probe()
    assert (info.sample_rate, info.channels) == (22050, 2)
    stereo = await read_all(FileSource(path, sample_rate=None, channels=2))
    assert stereo[0].sample_rate == 22050 and stereo[0].channels == 2
    a = joined(stereo).astype(np.float64)
    assert len(a) == 22050
    assert dominant_frequency(a[:, 0], 22050) == pytest.approx(440, abs=2)
    assert dominant_frequency(a[:, 1], 22050) == pytest.approx(1000, abs=2)
    mono = joined(await read_all(FileSource(path, sample_rate=None)))[:, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mono))
    freqs = np.fft.rfftfreq(len(mono), 1 / 22050)
    peak_440 = spectrum[np.argmin(abs(freqs - 440))]
    peak_1000 = spectrum[np.argmin(abs(freqs - 1000))]
    assert peak_440 == pytest.approx(peak_1000, rel=0.05)  # both channels present, equally mixed


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
async def test_start_seeks_sample_exactly(tmp_path: Path, suffix: str) -> None:
    ramp = (np.arange(3 * 16000) % 30000).astype(np.int16).reshape(-1, 1)
    if suffix == ".wav":
        path = write_wav(tmp_path / "ramp.wav", ramp, 16000)
    else:
        path = encode(tmp_path / "ramp.flac", ramp.astype(np.float32) / 32767, 16000, "flac")
    frames = await read_all(FileSource(path, sample_rate=None, start=1.25))
    assert_contiguous(frames, start=1.25)
    got = joined(frames)[:, 0]
    assert len(got) == 16000 * 3 - 20000
    expected = ramp[20000:, 0]
    assert np.abs(got.astype(np.int32) - expected).max() <= 1


async def test_start_past_the_end(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", tone(0.5, 16000), 16000)
    with pytest.raises(EmptyAudioError, match="past the end"):
        await read_all(FileSource(path, start=2.0))


async def test_long_file_is_streamed_not_loaded(tmp_path: Path) -> None:
    # 60 s of 48 kHz stereo: loading it whole as float32 would take 23 MB.
    rate, seconds = 48000, 60
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        block = (tone(1.0, rate, (440.0, 440.0)) * 32767).astype("<i2").tobytes()
        for _ in range(seconds):
            w.writeframes(block)
    tracemalloc.start()
    try:
        samples = 0
        async for frame in FileSource(path, sample_rate=16000).frames():
            samples += frame.samples
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert samples == seconds * 16000
    assert peak < 6_000_000, f"peak traced memory {peak / 1e6:.1f} MB — the file was not streamed"


# ----------------------------------------------------------------------------------- realtime


async def test_realtime_takes_exactly_the_audio_duration(tmp_path: Path,
                                                         autojump_clock: trio.testing.MockClock) -> None:
    path = write_wav(tmp_path / "two.wav", tone(2.01, 16000), 16000)
    source = FileSource(path, realtime=True)
    t0 = trio.current_time()
    count = 0
    async for frame in source.frames():
        # each frame is released the moment it would have been fully recorded
        assert trio.current_time() - t0 == pytest.approx(frame.end, abs=1e-9)
        count += 1
    assert count == 101  # 100 frames of 20 ms and a 10 ms tail
    assert trio.current_time() - t0 == pytest.approx(2.01, abs=1e-9)


async def test_realtime_does_not_drift_after_a_slow_consumer(tmp_path: Path,
                                                             autojump_clock: trio.testing.MockClock) -> None:
    path = encode(tmp_path / "two.flac", tone(2.0, 44100), 44100, "flac")
    source = FileSource(path, realtime=True)
    t0 = trio.current_time()
    async for frame in source.frames():
        if 0.5 <= frame.timestamp < 0.52:
            await trio.sleep(0.3)  # the consumer stalls; the source catches up instead of shifting
    assert trio.current_time() - t0 == pytest.approx(2.0, abs=1e-9)


async def test_not_realtime_takes_no_virtual_time(tmp_path: Path,
                                                  autojump_clock: trio.testing.MockClock) -> None:
    path = write_wav(tmp_path / "one.wav", tone(1.0, 16000), 16000)
    t0 = trio.current_time()
    frames = await read_all(FileSource(path))
    assert len(frames) == 50 and trio.current_time() == t0


# ------------------------------------------------------------------------------------- errors


def one_line(exc: pytest.ExceptionInfo[BaseException], path: Path | str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


async def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="not found") as exc:
        FileSource(missing)
    assert type(exc.value) is AudioError
    one_line(exc, missing)


async def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="directory") as exc:
        FileSource(tmp_path)
    one_line(exc, tmp_path)


async def test_zero_length_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty") as exc:
        FileSource(empty)
    one_line(exc, empty)


async def test_wav_with_no_samples(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "header-only.wav", np.zeros((0, 1), np.int16), 16000)
    with pytest.raises(EmptyAudioError, match="no audio samples") as exc:
        await read_all(FileSource(path))
    one_line(exc, path)


async def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(UnsupportedAudioError, match=r"not audio|not a readable audio file") as exc:
        await read_all(FileSource(path))
    assert "WAV, MP3" in one_line(exc, path)


async def test_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / "junk.bin"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedAudioError) as exc:
        await read_all(FileSource(path))
    one_line(exc, path)


def write_video(path: Path, codec: str, pix_fmt: str, *, frames: int, size: int,
                container_format: str | None = None) -> Path:
    """A picture-only file: ``frames`` black ``size`` x ``size`` frames encoded with ``codec``."""
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = pix_fmt
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.zeros((size, size, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


async def test_png_image(tmp_path: Path) -> None:
    path = write_video(tmp_path / "picture.png", "png", "rgb24", frames=1, size=8, container_format="image2")
    with pytest.raises(UnsupportedAudioError, match=r"is an image \(png\), not audio") as exc:
        await read_all(FileSource(path))
    one_line(exc, path)


async def test_video_without_audio(tmp_path: Path) -> None:
    path = write_video(tmp_path / "silent-film.mp4", "mpeg4", "yuv420p", frames=3, size=16)
    with pytest.raises(UnsupportedAudioError, match=r"no audio stream \(streams: video/mpeg4\)") as exc:
        await read_all(FileSource(path))
    one_line(exc, path)


async def test_audio_track_of_a_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    rate = 44100
    samples = tone(1.0, rate)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="mono")
        for i in range(10):
            picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            picture.pts = i
            for packet in video.encode(picture):
                out.mux(packet)
        for i in range(0, len(samples), 1024):
            block = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[i : i + 1024].T), format="fltp",
                                               layout="mono")
            block.sample_rate = rate
            block.pts = i
            for packet in audio.encode(block):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    frames = await read_all(FileSource(path))
    assert frames[-1].end == pytest.approx(1.0, abs=0.05)
    mono = joined(frames)[:, 0].astype(np.float64)
    assert dominant_frequency(mono, 16000) == pytest.approx(440, abs=3)


async def test_unsupported_codec(tmp_path: Path) -> None:
    # a RIFF/WAVE file whose format tag (0x1234) no decoder knows
    data = b"\x00" * 1600
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "odd-codec.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(UnsupportedAudioError, match="codec") as exc:
        await read_all(FileSource(path))
    one_line(exc, path)


@pytest.mark.parametrize(("suffix", "codec", "fmt", "detectable"), [
    (".wav", None, None, True),  # the RIFF header declares the data size
    (".mp3", "libmp3lame", None, True),  # the Xing/Info header declares the frame count
    (".flac", "flac", None, True),  # STREAMINFO declares the sample count
    (".opus", "libopus", "ogg", False),  # Ogg is a streaming format: a cut file looks complete
])
async def test_truncated_file_decodes_what_is_there_and_warns(tmp_path: Path, suffix: str, codec: str | None,
                                                              fmt: str | None, detectable: bool) -> None:
    rate = 48000 if codec == "libopus" else 44100
    full = make_file(tmp_path, suffix, codec, fmt, rate, 1, seconds=4.0)
    cut = tmp_path / f"cut{suffix}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with structlog.testing.capture_logs() as logs:
        frames = await read_all(FileSource(cut))
    duration = frames[-1].end
    assert 0.5 < duration < 3.5
    assert_contiguous(frames)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    if detectable:
        assert len(warnings) == 1 and warnings[0]["path"] == str(cut)
        assert "truncated" in warnings[0]["event"]
    else:
        assert warnings == []


async def test_truncated_before_any_audio_is_an_error(tmp_path: Path) -> None:
    full = make_file(tmp_path, ".m4a", "aac", None, 44100, 1)  # the index (moov) is at the end
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(UnsupportedAudioError, match="damaged or truncated") as exc:
        await read_all(FileSource(cut))
    one_line(exc, cut)


def test_bad_arguments(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", tone(0.1, 16000), 16000)
    bad: list[dict[str, float]] = [{"sample_rate": 0}, {"channels": 0}, {"chunk_ms": -5}, {"start": -1.0},
                                   {"start": float("nan")}]
    for kw in bad:
        with pytest.raises(ConfigError):
            FileSource(path, **kw)  # type: ignore[arg-type]


def test_probe(tmp_path: Path) -> None:
    path = encode(tmp_path / "p.flac", tone(1.5, 22050, (440.0, 440.0)), 22050, "flac")
    info = probe(path)
    assert (info.container, info.codec, info.sample_rate, info.channels) == ("flac", "flac", 22050, 2)
    assert info.duration == pytest.approx(1.5, abs=0.01)


async def test_aclose_mid_stream_then_frames_refuses(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", tone(3.0, 16000), 16000)
    source = FileSource(path)
    got = 0
    async for _ in source.frames():
        got += 1
        if got == 3:
            break
    await source.aclose()
    with pytest.raises(AudioError, match="closed"):
        source.frames()


async def test_source_protocol(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", tone(0.1, 16000), 16000)
    assert isinstance(FileSource(path), AudioSource)
    assert isinstance(PCMSource(io.BytesIO()), AudioSource)


# ---------------------------------------------------------------------------------- PCMSource


def pcm_ramp(n: int, channels: int = 1) -> bytes:
    return (np.arange(n * channels) % 20000).astype("<i2").tobytes()


async def test_pcm_from_bytesio_is_exact() -> None:
    data = pcm_ramp(16000 + 100)
    frames = await read_all(PCMSource(io.BytesIO(data)))
    assert_contiguous(frames)
    assert [f.samples for f in frames] == [320] * 50 + [100]
    assert b"".join(f.pcm for f in frames) == data


async def test_pcm_resampled_and_downmixed() -> None:
    stereo = tone(1.0, 8000, (440.0, 440.0))
    data = (stereo * 32767).astype("<i2").tobytes()
    frames = await read_all(PCMSource(io.BytesIO(data), input_rate=8000, input_channels=2, sample_rate=16000))
    assert all(f.sample_rate == 16000 and f.channels == 1 for f in frames)
    assert frames[-1].end == pytest.approx(1.0, abs=1 / 16000)
    assert dominant_frequency(joined(frames)[:, 0].astype(np.float64), 16000) == pytest.approx(440, abs=3)


async def test_pcm_from_a_pipe_in_odd_pieces() -> None:
    data = pcm_ramp(8000)
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb")
    writer = os.fdopen(wfd, "wb", buffering=0)

    def produce() -> None:
        with writer:
            for i in range(0, len(data), 333):  # pieces that split samples in half
                writer.write(data[i : i + 333])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, produce)
        frames = await read_all(PCMSource(reader, sample_rate=None))
    reader.close()
    assert b"".join(f.pcm for f in frames) == data
    assert_contiguous(frames)


async def test_pcm_from_trio_receive_stream_with_trailing_odd_byte() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    data = pcm_ramp(1000)

    async def produce() -> None:
        for i in range(0, len(data), 97):
            await send.send_all(data[i : i + 97])
        await send.send_all(b"\x01")  # half a sample at the end
        await send.aclose()

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            frames = await read_all(PCMSource(receive))
    assert b"".join(f.pcm for f in frames) == data
    assert [e["dropped_bytes"] for e in logs if e["log_level"] == "warning"] == [1]


async def test_pcm_empty_stream() -> None:
    with pytest.raises(EmptyAudioError, match="before any audio"):
        await read_all(PCMSource(io.BytesIO(b"")))


async def test_pcm_text_mode_stream_is_refused() -> None:
    with pytest.raises(ConfigError, match="binary mode"):
        await read_all(PCMSource(io.StringIO("abc")))  # type: ignore[arg-type]


async def test_pcm_realtime(autojump_clock: trio.testing.MockClock) -> None:
    t0 = trio.current_time()
    frames = await read_all(PCMSource(io.BytesIO(pcm_ramp(24000)), realtime=True))
    assert len(frames) == 75
    assert trio.current_time() - t0 == pytest.approx(1.5, abs=1e-9)


# ---------------------------------------------------------------------------------- open_source


async def test_open_source_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_wav(tmp_path / "x.wav", tone(0.2, 16000), 16000)
    assert isinstance(open_source(str(path)), FileSource)
    assert isinstance(open_source(path, sample_rate=8000), FileSource)

    class FakeStdin:
        buffer = io.BytesIO(pcm_ramp(640))

    monkeypatch.setattr(sys, "stdin", FakeStdin)
    source = open_source("-", input_rate=16000)
    assert isinstance(source, PCMSource)
    assert len(await read_all(source)) == 2


@pytest.mark.parametrize(("spec", "kw", "error", "match"), [
    ("", {}, ConfigError, "empty audio source"),
    ("https://example.com/a.wav", {}, UnsupportedAudioError, "URL"),
    ("-", {"start": 1.0}, ConfigError, "only applies to files"),
    ("{wav}", {"input_rate": 8000}, ConfigError, "describes raw PCM"),
    ("{missing}", {}, AudioError, "not found"),
])
def test_open_source_errors(tmp_path: Path, spec: str, kw: dict[str, object], error: type[Exception],
                            match: str) -> None:
    wav = write_wav(tmp_path / "x.wav", tone(0.1, 16000), 16000)
    spec = spec.format(wav=wav, missing=tmp_path / "missing.flac")
    with pytest.raises(error, match=match) as exc:
        open_source(spec, **kw)
    assert "\n" not in str(exc.value)


# ------------------------------------------------- hostile inputs: text posing as audio, pipes, NaN


@pytest.mark.parametrize("name,text", [
    ("riff.flac", "RIFF? this is a note, not a recording\n"),  # FFmpeg guesses FLAC from the name
    ("riff.wav", "RIFF?"),
    ("amr.amr", "#!AMR\nhello\n"),  # the AMR magic, then text
    ("utf8.mp3", "Ünïcödé text ♪♪♪ " * 40),
])
async def test_text_posing_as_audio_is_refused(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    for attempt in (lambda: probe(path), lambda: FileSource(path)):
        with pytest.raises(UnsupportedAudioError, match="is a text file, not audio") as exc:
            attempt()
        one_line(exc, path)


async def test_named_pipe_is_decoded_as_a_stream(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "tone.wav", tone(1.5, 16000), 16000)
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(wav.read_bytes())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, feed)
        source = await trio.to_thread.run_sync(lambda: FileSource(fifo, sample_rate=None))
        assert source.sample_rate == 16000
        frames = await read_all(source)
    assert frames[-1].end == pytest.approx(1.5)
    assert_contiguous(frames)
    assert abs(dominant_frequency(joined(frames)[:, 0] / 32768.0, 16000) - 440) < 5
    again = FileSource(fifo)  # a pipe's audio can be read once
    first = again.frames()
    with pytest.raises(AudioError, match="is a pipe and was read already"):
        again.frames()
    await first.aclose()
    with pytest.raises(AudioError, match="is a pipe") as exc:
        probe(fifo)  # probing would use the audio up
    one_line(exc, fifo)


async def test_nan_and_inf_float_samples_become_silence_with_one_warning(tmp_path: Path) -> None:
    good = tone(1.0, 16000)[:, 0]
    bad = good.copy()
    bad[::7] = np.nan
    bad[1::11] = np.inf
    bad[2::13] = -np.inf
    data = bad.astype("<f4").tobytes()
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt "
              + struct.pack("<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32) + b"data" + struct.pack("<I", len(data)))
    path = tmp_path / "nan.wav"
    path.write_bytes(header + data)
    seen: list[str] = []
    import warnings as pywarnings

    with pywarnings.catch_warnings():
        pywarnings.simplefilter("error")  # no numpy "invalid value encountered in cast"
        source = FileSource(path, on_warning=seen.append)
        frames = await read_all(source)
    pcm = joined(frames)[:, 0]
    assert len(pcm) == 16000
    assert (pcm[::7] == 0).all() and np.abs(pcm).max() <= 32767
    assert len(seen) == 1 and "NaN or infinite" in seen[0] and str(path) in seen[0] and "\n" not in seen[0]
    assert source.warnings == seen


async def test_truncation_warning_reaches_on_warning(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(3.0, 16000), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 16000 * 2])
    seen: list[str] = []
    frames = await read_all(FileSource(cut, on_warning=seen.append))
    assert frames[-1].end == pytest.approx(1.0)
    assert len(seen) == 1 and "may be truncated" in seen[0] and "3.0 s" in seen[0]


def test_two_trio_runs_in_two_threads_decode_at_once(tmp_path: Path) -> None:
    """An embedding program may run trio in several threads: the decoders' thread limits are per run."""
    import threading

    path = write_wav(tmp_path / "t.wav", tone(3.0, 16000), 16000)
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def one() -> None:
        async def main() -> int:
            start.wait()
            return sum(f.samples for f in await read_all(FileSource(path, sample_rate=16000)))

        try:
            results.append(trio.run(main))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [48000, 48000]
