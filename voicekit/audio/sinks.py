"""Where audio goes: a WAV file, memory (for tests), or nowhere.

A sink declares the ``sample_rate``/``channels`` it wants and whether it is ``realtime`` (a
device whose ``write`` blocks at playback speed). None of the sinks here is realtime: whoever
writes to them decides the pace (the session's reply player can pace on trio's clock).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import trio

from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.errors import AudioError, ConfigError
from voicekit.outputs import AtomicFile, OutputError

#: WAV data is written to disk in blocks of at least this many bytes (one thread hop each).
WRITE_BLOCK: Final = 256 * 1024
_WAV_MAX_DATA: Final = 0xFFFFFFFF - 36


@runtime_checkable
class AudioSink(Protocol):
    sample_rate: int
    channels: int
    realtime: bool  # True for devices: the writer must not pace, the write blocks

    async def write(self, frame: AudioFrame) -> None: ...

    async def aclose(self) -> None: ...


def _check_format(owner: str, sample_rate: object, channels: object) -> None:
    for name, value in (("sample_rate", sample_rate), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{owner} {name} must be a positive integer, got {value!r}")


def _wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    block = SAMPLE_WIDTH * channels
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block,
                                    8 * SAMPLE_WIDTH)
            + b"data" + struct.pack("<I", data_bytes))


class _Converter:
    """Resamples frames to a sink's format, re-creating the resampler if the input format changes."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.rate = sample_rate
        self.channels = channels
        self._resampler: StreamResampler | None = None

    def convert(self, frame: AudioFrame) -> list[AudioFrame]:
        r = self._resampler
        out: list[AudioFrame] = []
        if r is not None and (r.in_rate != frame.sample_rate or r.in_channels != frame.channels):
            out += self.flush()
            r = None
        if frame.sample_rate == self.rate and frame.channels == self.channels:
            return [*out, frame]
        if r is None:
            r = self._resampler = StreamResampler(frame.sample_rate, self.rate, frame.channels, self.channels)
        converted = r.process(frame)
        if converted is not None:
            out.append(converted)
        return out

    def flush(self) -> list[AudioFrame]:
        r, self._resampler = self._resampler, None
        tail = r.flush() if r is not None else None
        return [tail] if tail is not None and tail.samples else []


class WavFileSink:
    """Stream 16-bit PCM into a WAV file.

    Data is written in blocks as it arrives to a temporary file next to ``path``
    (``.NAME.XXXXXX.part``, see :mod:`voicekit.outputs`); ``aclose()`` fills in the header's sizes
    and renames it over ``path``, so ``path`` is either untouched or a complete WAV file. A run
    that fails calls :meth:`discard` instead, which removes the temporary file. The temporary file
    is created in the constructor, so a folder that is missing or read-only fails at once. Frames
    at another rate or channel count are resampled to the sink's format.
    """

    realtime = False

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, channels: int = 1) -> None:
        _check_format("WavFileSink", sample_rate, channels)
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.samples_written = 0
        self._data_bytes = 0
        self._buffer = bytearray()
        self._convert = _Converter(sample_rate, channels)
        self._closed = False
        try:
            self._out = AtomicFile(self.path, what="WAV file")  # committed in aclose()
        except OutputError as exc:
            raise AudioError(str(exc)) from None
        self.temp_path = self._out.temp_path
        self._file: BinaryIO = self._out.file
        try:
            self._file.write(_wav_header(sample_rate, channels, 0))
        except OSError as exc:
            self._out.discard()
            raise AudioError(f"cannot write WAV file {self.path!r}: {exc.strerror} — check free disk space") from None

    def __repr__(self) -> str:
        return f"WavFileSink({self.path!r}, sample_rate={self.sample_rate}, channels={self.channels})"

    @property
    def duration(self) -> float:
        """Seconds of audio accepted so far."""
        return self.samples_written / self.sample_rate

    async def write(self, frame: AudioFrame) -> None:
        if self._closed:
            raise AudioError(f"{self!r} is closed — open a new sink to write more audio")
        for f in self._convert.convert(frame):
            self._append(f)
        if len(self._buffer) >= WRITE_BLOCK:
            await self._drain()

    def _append(self, frame: AudioFrame) -> None:
        if self._data_bytes + len(frame.pcm) > _WAV_MAX_DATA:
            raise AudioError(
                f"{self.path!r} would exceed the 4 GiB WAV size limit — "
                "split the recording into several files"
            )
        self._buffer += frame.pcm
        self._data_bytes += len(frame.pcm)
        self.samples_written += frame.samples

    async def _drain(self) -> None:
        if not self._buffer:
            return
        block, self._buffer = bytes(self._buffer), bytearray()
        try:
            await trio.to_thread.run_sync(self._file.write, block)
        except OSError as exc:
            raise AudioError(
                f"cannot write to {self.path!r}: {exc.strerror} — check free disk space"
            ) from None

    def _finish(self) -> None:
        self._file.seek(0)
        self._file.write(_wav_header(self.sample_rate, self.channels, self._data_bytes))
        try:
            self._out.commit()
        except OutputError as exc:
            raise AudioError(str(exc)) from None

    async def aclose(self) -> None:
        """Write what is buffered, patch the header and rename the file into place. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            for f in self._convert.flush():
                self._append(f)
            with trio.CancelScope(shield=True):
                await self._drain()
                await trio.to_thread.run_sync(self._finish)
        finally:
            self._out.discard()  # does nothing once committed

    def discard(self) -> None:
        """Give up: remove the temporary file and leave ``path`` as it was. Safe to call twice."""
        self._closed = True
        self._out.discard()


class NullSink:
    """Discards audio, counting the samples (per channel) and frames written."""

    realtime = False

    def __init__(self, sample_rate: int = 16000, channels: int = 1) -> None:
        _check_format("NullSink", sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self.samples = 0
        self.frames = 0
        self.closed = False
        self._seconds = 0.0

    @property
    def duration(self) -> float:
        """Seconds of audio written, counted at each frame's own rate."""
        return self._seconds

    async def write(self, frame: AudioFrame) -> None:
        if self.closed:
            raise AudioError("this NullSink is closed — open a new sink")
        self.samples += frame.samples
        self.frames += 1
        self._seconds += frame.duration

    async def aclose(self) -> None:
        self.closed = True


class MemorySink:
    """Keeps every frame written, unchanged, in ``frames`` (for tests and short clips)."""

    realtime = False

    def __init__(self, sample_rate: int = 16000, channels: int = 1) -> None:
        _check_format("MemorySink", sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames: list[AudioFrame] = []
        self.closed = False

    async def write(self, frame: AudioFrame) -> None:
        if self.closed:
            raise AudioError("this MemorySink is closed — open a new sink")
        self.frames.append(frame)

    async def aclose(self) -> None:
        self.closed = True

    @property
    def samples(self) -> int:
        return sum(f.samples for f in self.frames)

    @property
    def duration(self) -> float:
        return sum(f.duration for f in self.frames)

    def pcm(self) -> bytes:
        """All audio written, concatenated (frames are assumed to share one format)."""
        return b"".join(f.pcm for f in self.frames)

    def to_array(self) -> npt.NDArray[np.int16]:
        """All samples as int16 of shape (samples, channels)."""
        if not self.frames:
            return np.zeros((0, self.channels), np.int16)
        return np.concatenate([f.to_array() for f in self.frames])

    def to_frame(self) -> AudioFrame:
        """Everything written as one frame (stamped with the first frame's timestamp)."""
        if not self.frames:
            return AudioFrame(b"", self.sample_rate, self.channels, 0.0)
        first = self.frames[0]
        return AudioFrame(self.pcm(), first.sample_rate, first.channels, first.timestamp)
