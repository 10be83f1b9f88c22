"""Where audio comes from: files (anything FFmpeg decodes) and raw PCM streams such as stdin.

Every source yields :class:`~voicekit.audio.frame.AudioFrame` chunks of about ``chunk_ms``
milliseconds at the source's ``sample_rate``/``channels``, with timestamps in seconds of audio
that are contiguous (each frame starts where the previous one ended). Files are streamed: PyAV
decodes them packet by packet in a worker thread (a batch of about a second of audio per thread
hop) and soxr resamples them on the fly, so memory stays flat whatever the file's length.

With ``realtime=True`` a source releases each frame at the moment a microphone would have finished
recording it, measured on trio's clock — a file then behaves like live input, and under
``trio.testing.MockClock`` the timing is exact.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, Protocol, runtime_checkable

import attrs
import av
import av.error
import numpy as np
import numpy.typing as npt
import trio

from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.audio.resample import StreamResampler, float_to_int16
from voicekit.errors import AudioError, ConfigError, EmptyAudioError, UnsupportedAudioError
from voicekit.logging import get_logger

log = get_logger("voicekit.audio")

#: Decoding threads running at once, over every FileSource of one trio run.
DECODE_THREADS: Final = max(2, min(8, os.cpu_count() or 2))
#: Threads blocked reading a PCM stream (stdin and the like), per trio run.
READ_THREADS: Final = 16

# A CapacityLimiter belongs to one trio run: a module-level one breaks a program that runs trio in
# two threads at once (``task._runner is self``). One limiter of each kind per run instead.
_DECODE_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("voicekit_decode_limiter")
_READ_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("voicekit_read_limiter")


def _run_limiter(var: trio.lowlevel.RunVar[trio.CapacityLimiter], size: int) -> trio.CapacityLimiter:
    try:
        return var.get()
    except LookupError:
        limiter = trio.CapacityLimiter(size)
        var.set(limiter)
        return limiter


def decode_limiter() -> trio.CapacityLimiter:
    """The limiter of decoding threads for the current trio run."""
    return _run_limiter(_DECODE_LIMITER, DECODE_THREADS)


def read_limiter() -> trio.CapacityLimiter:
    """The limiter of threads reading PCM streams for the current trio run."""
    return _run_limiter(_READ_LIMITER, READ_THREADS)
#: Seconds of audio decoded per worker-thread hop.
BATCH_SECONDS: Final = 1.0
#: Bytes read from a PCM stream per call.
READ_SIZE: Final = 65536

_FORMATS_HINT = "WAV, MP3, M4A/AAC, FLAC, Ogg/Opus, WebM"


@runtime_checkable
class AudioSource(Protocol):
    """What a session consumes: an async stream of frames at a known rate."""

    sample_rate: int
    channels: int

    def frames(self) -> AsyncIterator[AudioFrame]:
        """Frames of about ``chunk_ms``; timestamps in audio seconds, contiguous."""
        ...

    async def aclose(self) -> None: ...


@attrs.frozen
class AudioInfo:
    """What a file holds, read from its header."""

    path: str
    container: str
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # seconds, as declared by the file (None if unknown)


# ---------------------------------------------------------------------------------------------
# helpers shared by the sources


def _positive_int(owner: str, name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{owner} {name} must be a positive integer, got {value!r}")


class _Chunker:
    """Cuts arrays of samples into fixed-size frames on a contiguous timeline, with optional pacing."""

    def __init__(self, sample_rate: int, channels: int, chunk_ms: int, realtime: bool,
                 t0: float = 0.0) -> None:
        self.rate = sample_rate
        self.channels = channels
        self.chunk = max(1, sample_rate * chunk_ms // 1000)
        self.realtime = realtime
        self.t0 = t0
        self.emitted = 0  # samples per channel handed out
        self._leftover = np.zeros((0, channels), np.int16)
        self._clock_start: float | None = None

    def cut(self, samples: npt.NDArray[np.int16], *, final: bool = False) -> list[AudioFrame]:
        buf = samples if not len(self._leftover) else np.concatenate([self._leftover, samples])
        whole = len(buf) - len(buf) % self.chunk
        if final:
            whole = len(buf)
        out: list[AudioFrame] = []
        for i in range(0, whole, self.chunk):
            piece = buf[i : i + self.chunk]
            ts = self.t0 + (self.emitted + i) / self.rate
            out.append(AudioFrame(piece.tobytes(), self.rate, self.channels, ts))
        self.emitted += whole
        self._leftover = buf[whole:].copy() if whole < len(buf) else np.zeros((0, self.channels), np.int16)
        return out

    async def pace(self, frame: AudioFrame) -> None:
        """In realtime mode, wait until ``frame`` would have been fully recorded."""
        if not self.realtime:
            return
        if self._clock_start is None:
            self._clock_start = trio.current_time()
        end = (frame.timestamp - self.t0) + frame.duration
        await trio.sleep_until(self._clock_start + end)


class _GeneratorOwner:
    """Keeps the generators handed out by ``frames()`` so ``aclose()`` can finish them."""

    def __init__(self) -> None:
        self._gens: list[AsyncGenerator[AudioFrame, None]] = []
        self.closed = False

    def track(self, gen: AsyncGenerator[AudioFrame, None]) -> AsyncGenerator[AudioFrame, None]:
        self._gens.append(gen)
        return gen

    async def aclose(self) -> None:
        self.closed = True
        gens, self._gens = self._gens, []
        for gen in gens:
            try:
                await gen.aclose()
            except RuntimeError:  # still running in another task; it sees `closed` and stops
                pass


# ---------------------------------------------------------------------------------------------
# file decoding (all of this runs in a worker thread)


def _frame_to_float(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    """A decoded PyAV frame as float32 of shape (samples, channels)."""
    channels = frame.layout.nb_channels
    a = frame.to_ndarray()
    a = a.T if frame.format.is_planar else a.reshape(-1, channels)
    if a.dtype == np.float32:
        return np.ascontiguousarray(a)
    if a.dtype.kind == "f":
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) * np.float32(1.0 / 128.0)
    scale = np.float32(1.0 / float(2 ** (8 * a.dtype.itemsize - 1)))
    return a.astype(np.float32) * scale


def _wav_truncation(path: str, file_size: int) -> float | None:
    """Seconds a RIFF/WAVE header promises, if the file is shorter than its data chunk says."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"fmt " and pos + 20 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]
        if cid == b"data":
            if size in (0, 0xFFFFFFFF) or not byte_rate:  # written by a streaming writer
                return None
            if pos + 8 + size > file_size:
                return float(size / byte_rate)
            return None
        pos += 8 + size + (size & 1)
    return None


def _av_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class _Decoder:
    """One open file: demux + decode + resample, batch by batch. Not thread-safe; one user at a time."""

    def __init__(self, path: str, sample_rate: int | None, channels: int, start: float,
                 quality: str = "HQ") -> None:
        self.path = path
        self.regular = _is_regular(path)
        #: readable warnings about this file (damage, truncation, non-finite samples), in order
        self.warnings: list[str] = []
        self.nonfinite = 0
        self.start = start
        self.out_channels = channels
        self.quality = quality
        self.container = _open_container(path)
        try:
            self.stream = _audio_stream(self.container, path)
            self.info = _info(self.container, self.stream, path)
        except BaseException:
            self.container.close()
            raise
        self.native_rate = self.info.sample_rate
        self.out_rate = sample_rate or self.native_rate
        self._resampler: StreamResampler | None = None
        self._eof = False
        self.decoded = 0  # native samples decoded (before trimming for `start`)
        self.kept = 0  # native-rate samples after trimming
        self._pos: float | None = None  # position (s, from stream start) of the next decoded sample
        self._stream_t0 = (float(self.stream.start_time * self.stream.time_base)
                           if self.stream.start_time is not None and self.stream.time_base else 0.0)
        self._skipping = start > 0
        self._bad_packets = 0
        self._last_error: BaseException | None = None
        self._warned = False
        self._end_checked = False
        if start > 0:
            self._seek(start)
        self._packets = self.container.demux(self.stream)

    def _seek(self, start: float) -> None:
        tb = self.stream.time_base
        if not tb:
            return
        target = int(start / tb) + (self.stream.start_time or 0)
        try:
            self.container.seek(target, stream=self.stream, backward=True)
        except av.error.FFmpegError:
            # not seekable: decode from the top and drop what comes before `start`
            self._pos = 0.0

    def close(self) -> None:
        self.container.close()

    def _trim(self, fr: av.AudioFrame, a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Drop samples before ``start`` (after a seek, decoding resumes a little earlier)."""
        rate = fr.sample_rate or self.native_rate
        if self._pos is None:
            t = fr.time
            self._pos = (float(t) - self._stream_t0) if t is not None else self.start
        pos = self._pos
        self._pos = pos + len(a) / rate
        if not self._skipping:
            return a
        if self._pos <= self.start:
            return a[:0]
        self._skipping = False
        drop = max(0, round((self.start - pos) * rate))
        return a[drop:]

    def read_batch(self, min_samples: int) -> tuple[npt.NDArray[np.int16], bool]:
        """Decode until ``min_samples`` output samples are ready or the file ends.

        Returns (int16 samples of shape (n, out_channels), reached_end).
        """
        pieces: list[npt.NDArray[np.int16]] = []
        got = 0
        while got < min_samples and not self._eof:
            try:
                packet = next(self._packets)
            except StopIteration:
                self._eof = True
                break
            except av.error.FFmpegError as exc:
                self._damaged(exc)
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                # a damaged packet: skip it and keep going (the next ones may be fine)
                self._bad_packets += 1
                self._last_error = exc
                continue
            for fr in frames:
                a = _frame_to_float(fr)
                if fr.format.name.startswith(("flt", "dbl")):
                    bad = ~np.isfinite(a)
                    if bad.any():  # NaN/Inf is not audio: silence it rather than cast garbage
                        self.nonfinite += int(bad.sum())
                        a = np.where(bad, np.float32(0.0), a)
                self.decoded += len(a)
                a = self._trim(fr, a)
                if not len(a):
                    continue
                self.kept += len(a)
                out = self._convert(fr.sample_rate or self.native_rate, a)
                if len(out):
                    pieces.append(out)
                    got += len(out)
        if self._eof and self._resampler is not None:
            tail = self._resampler.process_array(
                np.zeros((0, self._resampler.in_channels), np.float32), last=True)
            if len(tail):
                pieces.append(tail)
        if self._eof:
            self._check_end()
        if not pieces:
            return np.zeros((0, self.out_channels), np.int16), self._eof
        return (pieces[0] if len(pieces) == 1 else np.concatenate(pieces)), self._eof

    def _convert(self, rate: int, a: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
        r = self._resampler
        if r is None or r.in_rate != rate or r.in_channels != a.shape[1]:
            head = np.zeros((0, self.out_channels), np.int16)
            if r is not None:  # the format changed mid-file: drain the old filter first
                head = r.process_array(np.zeros((0, r.in_channels), np.float32), last=True)
            if rate == self.out_rate and a.shape[1] == self.out_channels:
                self._resampler = None
                out = float_to_int16(a)
                return np.concatenate([head, out]) if len(head) else out
            self._resampler = r = StreamResampler(rate, self.out_rate, a.shape[1], self.out_channels,
                                                  self.quality)
            out = r.process_array(a)
            return np.concatenate([head, out]) if len(head) else out
        return r.process_array(a)

    def _damaged(self, exc: BaseException) -> None:
        """The demuxer failed: end the stream here (``_check_end`` reports it)."""
        self._eof = True
        self._bad_packets += 1
        self._last_error = exc

    def _check_end(self) -> None:
        if self._end_checked:
            return
        self._end_checked = True
        if self.kept == 0 and self._last_error is not None and self.start == 0:
            raise UnsupportedAudioError(
                f"no audio could be decoded from {self.path!r} ({self.info.codec}: "
                f"{_av_reason(self._last_error)}) — the file is damaged or truncated; re-export or "
                "re-download it"
            ) from self._last_error
        if self.kept == 0:
            if self.start > 0:
                known = f" (duration {self.info.duration:.3f}s)" if self.info.duration is not None else ""
                raise EmptyAudioError(
                    f"start={self.start:g}s is at or past the end of {self.path!r}{known} — "
                    "use a smaller start"
                )
            raise EmptyAudioError(
                f"{self.path!r} contains no audio samples — record or export the audio again"
            )
        decoded_s = self.decoded / self.native_rate
        if self.nonfinite:
            log.warning("audio file holds NaN or infinite samples; replaced them with silence",
                        path=self.path, samples=self.nonfinite)
            self.warnings.append(
                f"{self.path!r} holds {self.nonfinite} NaN or infinite sample(s), which are not audio; "
                "replaced them with silence — check the program that wrote it")
        if self._last_error is not None:
            log.warning("audio file is damaged or truncated; skipped what could not be decoded",
                        path=self.path, decoded_seconds=round(decoded_s, 3), bad_packets=self._bad_packets,
                        error=_av_reason(self._last_error))
            self.warnings.append(
                f"{self.path!r} is damaged or truncated ({_av_reason(self._last_error)}): skipped "
                f"{self._bad_packets} part(s) that could not be decoded; used {decoded_s:.1f} s of audio")
            return
        expected = _wav_truncation(self.path, os.path.getsize(self.path)) if self.regular else None
        if expected is None and self.info.duration is not None and self.start == 0:
            margin = max(0.2, 0.02 * self.info.duration)
            if decoded_s < self.info.duration - margin:
                expected = self.info.duration
        if expected is not None:
            log.warning("audio file ends before its declared length; it may be truncated",
                        path=self.path, decoded_seconds=round(decoded_s, 3),
                        declared_seconds=round(expected, 3))
            self.warnings.append(
                f"{self.path!r} ends at {decoded_s:.1f} s but its header declares {expected:.1f} s; "
                "it may be truncated — used the audio that is there")


def _open_container(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, mode="r")
    except av.error.FileNotFoundError as exc:
        raise AudioError(f"audio file not found: {path!r} — check the path") from exc
    except (av.error.PermissionError, PermissionError) as exc:
        raise AudioError(f"cannot read audio file {path!r}: permission denied — fix its permissions") from exc
    except av.error.IsADirectoryError as exc:
        raise AudioError(f"{path!r} is a directory, not an audio file — pass a file") from exc
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        ext = Path(path).suffix.lower()
        damaged = ext in {".wav", ".mp3", ".m4a", ".aac", ".mp4", ".flac", ".ogg", ".opus", ".oga",
                          ".webm", ".mka", ".wma", ".aiff", ".aif"}
        hint = (f"if it really is {ext[1:].upper()} audio, it is damaged or truncated; re-export it"
                if damaged else f"pass an audio file ({_FORMATS_HINT})")
        raise UnsupportedAudioError(
            f"not a readable audio file: {path!r} ({_av_reason(exc)}) — {hint}"
        ) from exc


def _audio_stream(container: av.container.InputContainer, path: str) -> av.AudioStream:
    if not container.streams.audio:
        fmt = container.format.name
        if fmt == "tty":
            raise UnsupportedAudioError(
                f"{path!r} is a text file, not audio — pass an audio file ({_FORMATS_HINT})"
            )
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise UnsupportedAudioError(
                f"{path!r} is an image ({fmt.removesuffix('_pipe')}), not audio — pass an audio file "
                f"({_FORMATS_HINT})"
            )
        kinds = ", ".join(
            f"{s.type}/{s.codec_context.name if s.codec_context else '?'}" for s in container.streams
        ) or "none"
        raise UnsupportedAudioError(
            f"{path!r} has no audio stream (streams: {kinds}) — pass a file with an audio track "
            "or extract it first (e.g. ffmpeg -i in.mp4 -vn out.wav)"
        )
    stream: av.AudioStream = container.streams.audio[0]
    best = container.streams.best("audio")
    if isinstance(best, av.AudioStream):
        stream = best
    if stream.codec_context is None:
        raise UnsupportedAudioError(
            f"{path!r} uses an audio codec this FFmpeg build cannot decode — convert it to "
            "WAV (PCM), FLAC or MP3 first"
        )
    return stream


def _info(container: av.container.InputContainer, stream: av.AudioStream, path: str) -> AudioInfo:
    ctx = stream.codec_context
    rate = ctx.sample_rate or stream.rate or 0
    channels = ctx.layout.nb_channels if ctx.layout else 0
    if rate <= 0 or channels <= 0:
        raise UnsupportedAudioError(
            f"{path!r} does not declare a sample rate and channel count FFmpeg can use — "
            "convert it to WAV or FLAC first"
        )
    duration: float | None = None
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    return AudioInfo(path, container.format.name, ctx.name, rate, channels, duration)


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


#: Bytes looked at to tell a text file from audio.
_SNIFF_BYTES: Final = 4096
_TEXT_CONTROLS: Final = frozenset(b"\t\n\r\f\v\x1b\x08")


def _looks_like_text(head: bytes) -> bool:
    """True if ``head`` is plain text: every audio container has binary bytes in its first kilobytes."""
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end is still text
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ord(ch) in _TEXT_CONTROLS for ch in text)


def _check_file(path: str) -> bool:
    """Cheap, synchronous checks with clear messages (before FFmpeg sees the file).

    Returns True for a regular file, False for a pipe or device (read once, as a stream).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"audio file not found: {path!r} — check the path") from None
    except OSError as exc:
        raise AudioError(f"cannot read audio file {path!r}: {exc.strerror} — check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{path!r} is a directory, not an audio file — pass a file")
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            return False  # a named pipe, /dev/stdin, process substitution: decoded as a stream
        raise AudioError(f"{path!r} is not a regular file, pipe or audio device — pass an audio file")
    if st.st_size == 0:
        raise EmptyAudioError(f"audio file is empty (0 bytes): {path!r} — record or export the audio again")
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise AudioError(f"cannot read audio file {path!r}: {exc.strerror} — fix its permissions") from None
    if _looks_like_text(head):
        raise UnsupportedAudioError(
            f"{path!r} is a text file, not audio — pass an audio file ({_FORMATS_HINT})"
        )
    return True


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header (blocking, a few kilobytes) and describe its audio stream.

    A named pipe cannot be probed (that would use up its data): open it with :class:`FileSource`.
    """
    p = os.fspath(path)
    if not _check_file(p):
        raise AudioError(
            f"{p!r} is a pipe, not a file: probing it would use up its audio — open it with FileSource "
            "(or open_source) and read it once"
        )
    container = _open_container(p)
    try:
        return _info(container, _audio_stream(container, p), p)
    finally:
        container.close()


# ---------------------------------------------------------------------------------------------
# the sources


class FileSource:
    """Stream an audio file (anything PyAV/FFmpeg decodes) as frames.

    ``sample_rate=None`` keeps the file's own rate (the constructor then reads the file's header,
    a short blocking read); otherwise audio is resampled to ``sample_rate``. Multi-channel files
    are down-mixed to ``channels`` (mono by default). ``start`` skips that many seconds; frame
    timestamps are positions in the file, so the first frame is stamped ``start``.

    Errors: a missing path raises :class:`AudioError`; an empty file, or a file with no samples,
    :class:`EmptyAudioError`; anything that is not decodable audio (text, images, video without
    sound, unknown codecs, a file damaged before any audio) :class:`UnsupportedAudioError`. A file
    that is cut short or damaged part-way, or holds NaN/infinite float samples (replaced with
    silence), is decoded as far as possible; then a warning is logged and passed, as one readable
    line, to ``on_warning`` (the CLI prints it on stderr). A text file is refused before FFmpeg
    sees it. The cheap checks run in the constructor, the rest when ``frames()`` starts.

    A named pipe (or ``/dev/stdin``, or a shell's ``<(...)``) is decoded as a stream: it can be
    read once, and with ``sample_rate=None`` the constructor blocks until its header has arrived.
    """

    def __init__(self, path: str | os.PathLike[str], *, sample_rate: int | None = 16000, channels: int = 1,
                 chunk_ms: int = 20, realtime: bool = False, start: float = 0.0,
                 on_warning: Callable[[str], None] | None = None) -> None:
        _positive_int("FileSource", "sample_rate", sample_rate, allow_none=True)
        _positive_int("FileSource", "channels", channels)
        _positive_int("FileSource", "chunk_ms", chunk_ms)
        if not isinstance(start, int | float) or not math.isfinite(start) or start < 0:
            raise ConfigError(f"FileSource start must be a number of seconds >= 0, got {start!r}")
        self.path = os.fspath(path)
        self.regular = _check_file(self.path)
        self.on_warning = on_warning
        #: warnings about the file seen so far (also logged and passed to ``on_warning``)
        self.warnings: list[str] = []
        self.info: AudioInfo | None = None
        self._pending: _Decoder | None = None  # a pipe's decoder, opened to read its header
        self._used = False
        if sample_rate is None:
            if self.regular:
                self.info = probe(self.path)
            else:
                self._pending = _Decoder(self.path, None, channels, float(start))
                self.info = self._pending.info
            sample_rate = self.info.sample_rate
        self.sample_rate: int = sample_rate
        self.channels = channels
        self.chunk_ms = chunk_ms
        self.realtime = realtime
        self.start = float(start)
        self._owner = _GeneratorOwner()

    def __repr__(self) -> str:
        return (f"FileSource({self.path!r}, sample_rate={self.sample_rate}, channels={self.channels}, "
                f"chunk_ms={self.chunk_ms}, realtime={self.realtime}, start={self.start:g})")

    async def probe(self) -> AudioInfo:
        """The file's header information (read in a worker thread)."""
        if self.info is None:
            self.info = await trio.to_thread.run_sync(probe, self.path, limiter=decode_limiter())
        return self.info

    def frames(self) -> AsyncGenerator[AudioFrame, None]:
        if self._owner.closed:
            raise AudioError(f"{self!r} is closed — make a new source to read the file again")
        if not self.regular:
            if self._used:
                raise AudioError(f"{self.path!r} is a pipe and was read already — its audio is gone; "
                                 "save it to a file to read it twice")
            self._used = True
        return self._owner.track(self._frames())

    def _report(self, decoder: _Decoder) -> None:
        while decoder.warnings:
            message = decoder.warnings.pop(0)
            self.warnings.append(message)
            if self.on_warning is not None:
                self.on_warning(message)

    async def _frames(self) -> AsyncGenerator[AudioFrame, None]:
        decoder, self._pending = self._pending, None
        if decoder is None:
            decoder = await trio.to_thread.run_sync(
                _Decoder, self.path, self.sample_rate, self.channels, self.start, limiter=decode_limiter())
        try:
            self.info = decoder.info
            chunker = _Chunker(self.sample_rate, self.channels, self.chunk_ms, self.realtime, t0=self.start)
            batch = max(chunker.chunk, round(BATCH_SECONDS * self.sample_rate))
            eof = False
            while not eof and not self._owner.closed:
                samples, eof = await trio.to_thread.run_sync(decoder.read_batch, batch,
                                                             limiter=decode_limiter())
                self._report(decoder)
                for frame in chunker.cut(samples, final=eof):
                    await chunker.pace(frame)
                    yield frame
                    if self._owner.closed:
                        return
        finally:
            decoder.close()

    async def aclose(self) -> None:
        if self._pending is not None:
            self._pending.close()
            self._pending = None
        await self._owner.aclose()


class PCMSource:
    """Raw PCM int16 little-endian from a binary stream, e.g. ``sys.stdin.buffer`` or a socket.

    ``stream`` is either a blocking binary file object (read in a worker thread; reads that are
    waiting when the source is cancelled are abandoned, as trio does for blocking reads) or a
    :class:`trio.abc.ReceiveStream`. The input format is ``input_rate``/``input_channels``; frames
    come out at ``sample_rate`` (``None`` keeps ``input_rate``) and ``channels``. The source does
    not close ``stream``.
    """

    def __init__(self, stream: BinaryIO | IO[bytes] | trio.abc.ReceiveStream, *, input_rate: int = 16000,
                 input_channels: int = 1, sample_rate: int | None = 16000, channels: int = 1,
                 chunk_ms: int = 20, realtime: bool = False) -> None:
        _positive_int("PCMSource", "input_rate", input_rate)
        _positive_int("PCMSource", "input_channels", input_channels)
        _positive_int("PCMSource", "sample_rate", sample_rate, allow_none=True)
        _positive_int("PCMSource", "channels", channels)
        _positive_int("PCMSource", "chunk_ms", chunk_ms)
        if not isinstance(stream, trio.abc.ReceiveStream) and not hasattr(stream, "read"):
            raise ConfigError(
                "PCMSource needs a binary stream with .read() or a trio ReceiveStream, "
                f"got {type(stream).__name__}"
            )
        self.stream = stream
        self.input_rate = input_rate
        self.input_channels = input_channels
        self.sample_rate: int = sample_rate or input_rate
        self.channels = channels
        self.chunk_ms = chunk_ms
        self.realtime = realtime
        self._owner = _GeneratorOwner()

    def _reader(self) -> Callable[[], Awaitable[bytes | None]]:
        stream = self.stream
        if isinstance(stream, trio.abc.ReceiveStream):
            receive = stream

            async def read_trio() -> bytes | None:
                return bytes(await receive.receive_some(READ_SIZE))

            return read_trio
        read: Callable[[int], bytes] = getattr(stream, "read1", None) or stream.read

        async def read_blocking() -> bytes | None:
            data = await trio.to_thread.run_sync(read, READ_SIZE, limiter=read_limiter(),
                                                 abandon_on_cancel=True)
            if data is None:  # a non-blocking file object with nothing to read yet
                await trio.sleep(0.005)
                return None
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ConfigError(
                    f"PCMSource stream returned {type(data).__name__}, not bytes — open it in binary mode "
                    "(e.g. sys.stdin.buffer)"
                )
            return bytes(data)

        return read_blocking

    def frames(self) -> AsyncGenerator[AudioFrame, None]:
        if self._owner.closed:
            raise AudioError("this PCMSource is closed — make a new one")
        return self._owner.track(self._frames())

    async def _frames(self) -> AsyncGenerator[AudioFrame, None]:
        read = self._reader()
        width = SAMPLE_WIDTH * self.input_channels
        convert: StreamResampler | None = None
        if self.sample_rate != self.input_rate or self.channels != self.input_channels:
            convert = StreamResampler(self.input_rate, self.sample_rate, self.input_channels, self.channels)
        chunker = _Chunker(self.sample_rate, self.channels, self.chunk_ms, self.realtime)
        rest = b""
        while not self._owner.closed:
            data = await read()
            if data is None:
                continue
            eof = not data
            data = rest + data
            usable = len(data) - len(data) % width
            rest = data[usable:]
            samples = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self.input_channels)
            if convert is not None:
                fl = samples.astype(np.float32) * np.float32(1.0 / 32768.0)
                if eof:
                    out = convert.process_array(fl, last=True)
                else:
                    out = convert.process_array(fl)
            else:
                out = samples.astype(np.int16, copy=False)
            for frame in chunker.cut(out, final=eof):
                await chunker.pace(frame)
                yield frame
                if self._owner.closed:
                    return
            if eof:
                if rest:
                    log.warning("PCM stream ended in the middle of a sample; dropped the odd bytes",
                                dropped_bytes=len(rest), sample_bytes=width)
                if chunker.emitted == 0:
                    raise EmptyAudioError(
                        "the PCM stream ended before any audio arrived — check what is piped into it"
                    )
                return

    async def aclose(self) -> None:
        await self._owner.aclose()


_FILE_ONLY = {"start"}
_PCM_ONLY = {"input_rate", "input_channels"}


def open_source(spec: str | os.PathLike[str], **kw: Any) -> AudioSource:
    """Open an audio source from a command-line style spec.

    ``"-"`` reads raw PCM int16 LE from stdin (:class:`PCMSource`; pass ``input_rate`` /
    ``input_channels`` to describe it); anything else is a path to an audio file
    (:class:`FileSource`). Keyword arguments go to the source.
    """
    if isinstance(spec, str) and spec == "-":
        wrong = sorted(set(kw) & _FILE_ONLY)
        if wrong:
            raise ConfigError(f"stdin ('-') is a raw PCM stream; {', '.join(wrong)}= only applies to files")
        stdin = sys.stdin.buffer if sys.stdin is not None else None
        if stdin is None:
            raise ConfigError("no stdin to read from — pass an audio file path instead of '-'")
        if stdin.isatty():
            raise ConfigError(
                "stdin is a terminal, not audio — pipe raw PCM int16 LE into it "
                "(e.g. arecord -f S16_LE -r 16000 -c 1 | ...) or pass an audio file"
            )
        return PCMSource(stdin, **kw)
    path = os.fspath(spec)
    if not path.strip():
        raise ConfigError("empty audio source — pass a file path, or '-' for raw PCM on stdin")
    if "://" in path:
        raise UnsupportedAudioError(
            f"{path!r} looks like a URL; voicekit reads local files and stdin only — download it first"
        )
    wrong = sorted(set(kw) & _PCM_ONLY)
    if wrong:
        raise ConfigError(
            f"{', '.join(wrong)}= describes raw PCM on stdin ('-'); a file declares its own format: {path!r}"
        )
    return FileSource(path, **kw)
