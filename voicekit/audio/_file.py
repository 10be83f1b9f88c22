"""Files as audio sources: :class:`FileSource`, and the decoder it runs in a worker thread
(PyAV demuxes and decodes packet by packet, soxr resamples on the fly, damage is skipped and
reported as warnings)."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncGenerator, Callable

import av
import av.error
import numpy as np
import numpy.typing as npt
import trio

from voicekit.audio._probe import (
    AudioInfo,
    audio_stream,
    av_reason,
    check_file,
    is_regular,
    open_container,
    probe,
    read_info,
    wav_truncation,
)
from voicekit.audio._stream import BATCH_SECONDS, Chunker, GeneratorOwner, decode_limiter, positive_int
from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler, float_to_int16
from voicekit.errors import AudioError, ConfigError, EmptyAudioError, UnsupportedAudioError
from voicekit.logging import get_logger

log = get_logger("voicekit.audio")

# ---------------------------------------------------------------------------------------------
# decoding (all of this runs in a worker thread)


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



class _Decoder:
    """One open file: demux + decode + resample, batch by batch. Not thread-safe; one user at a time."""

    def __init__(self, path: str, sample_rate: int | None, channels: int, start: float,
                 quality: str = "HQ") -> None:
        self.path = path
        self.regular = is_regular(path)
        #: readable warnings about this file (damage, truncation, non-finite samples), in order
        self.warnings: list[str] = []
        self.nonfinite = 0
        self.start = start
        self.out_channels = channels
        self.quality = quality
        self.container = open_container(path)
        try:
            self.stream = audio_stream(self.container, path)
            self.info = read_info(self.container, self.stream, path)
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
                f"{av_reason(self._last_error)}) — the file is damaged or truncated; re-export or "
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
                        error=av_reason(self._last_error))
            self.warnings.append(
                f"{self.path!r} is damaged or truncated ({av_reason(self._last_error)}): skipped "
                f"{self._bad_packets} part(s) that could not be decoded; used {decoded_s:.1f} s of audio")
            return
        expected = wav_truncation(self.path, os.path.getsize(self.path)) if self.regular else None
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


# ---------------------------------------------------------------------------------------------
# the source


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
        positive_int("FileSource", "sample_rate", sample_rate, allow_none=True)
        positive_int("FileSource", "channels", channels)
        positive_int("FileSource", "chunk_ms", chunk_ms)
        if not isinstance(start, int | float) or not math.isfinite(start) or start < 0:
            raise ConfigError(f"FileSource start must be a number of seconds >= 0, got {start!r}")
        self.path = os.fspath(path)
        self.regular = check_file(self.path)
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
        self._owner = GeneratorOwner()

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
            chunker = Chunker(self.sample_rate, self.channels, self.chunk_ms, self.realtime, t0=self.start)
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
