"""Live audio devices through PyAudio (PortAudio): the microphone, the speaker, the device list.

Install with ``pip install 'voicekit[audio]'`` (and ``apt install portaudio19-dev`` to build
PyAudio on Linux).

* :class:`MicrophoneSource` is an :class:`~voicekit.audio.sources.AudioSource`: frames of
  ``chunk_ms`` at the rate you ask for, contiguous timestamps from 0.
* :class:`SpeakerSink` is an :class:`~voicekit.audio.sinks.AudioSink` with ``realtime=True``:
  ``write`` returns at the device's pace.
* :func:`list_devices` describes what PortAudio sees; :func:`select_device` picks one by index or
  name (``VOICEKIT_INPUT_DEVICE`` / ``VOICEKIT_OUTPUT_DEVICE`` when no device is given).

Threads: every blocking PortAudio call (open, read, write, close) runs in
``trio.to_thread.run_sync`` under a per-stream ``CapacityLimiter(1)``, one chunk at a time, so the
trio thread never blocks, calls on one stream never overlap, and a cancel lands within one chunk.

Rates: a device is opened at the rate asked for when it supports it, else at its default rate (then
48000, 44100, 16000), and :class:`~voicekit.audio.resample.StreamResampler` converts between the
device's rate/channels and the caller's.

Glitches are counted, not hidden: ``MicrophoneSource.overruns`` (audio lost because nobody read
the device in time, found from the gap between the wall clock and the samples delivered) and
``SpeakerSink.underruns`` (the speaker ran dry in the middle of playback, found from the same
clock-versus-samples arithmetic). See ``docs/devices.md``.

The parts live in private modules: ``_portaudio`` (PortAudio set-up), ``_devices`` (listing,
selection, opening) and ``_glitches`` (the overrun and underrun arithmetic); this module holds the
two stream classes and is where the rest is imported from.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import trio

from voicekit.audio._devices import (
    FALLBACK_RATES,
    INPUT_DEVICE_ENV,
    OUTPUT_DEVICE_ENV,
    DeviceInfo,
    Direction,
    Opened,
    channel_candidates,
    close_device,
    list_devices,
    open_device,
    rate_candidates,
    select_device,
)
from voicekit.audio._glitches import OverrunDetector, UnderrunDetector
from voicekit.audio._portaudio import DEBUG_ENV, INSTALL_HINT, load_pyaudio
from voicekit.audio._stream import positive_int
from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.audio.resample import StreamResampler, int16_to_float
from voicekit.errors import AudioError, ConfigError, DeviceNotFoundError
from voicekit.logging import get_logger

__all__ = [
    "DEBUG_ENV",
    "FALLBACK_RATES",
    "INPUT_DEVICE_ENV",
    "INSTALL_HINT",
    "OUTPUT_DEVICE_ENV",
    "DeviceInfo",
    "DeviceNotFoundError",  # it used to live here
    "Direction",
    "MicrophoneSource",
    "OverrunDetector",
    "SpeakerSink",
    "UnderrunDetector",
    "channel_candidates",
    "list_devices",
    "load_pyaudio",
    "rate_candidates",
    "select_device",
]

log = get_logger("voicekit.audio.device")


def _check_device_spec(owner: str, device: object) -> None:
    if device is not None and (isinstance(device, bool) or not isinstance(device, str | int)):
        raise ConfigError(f"{owner} device must be an index, a name or None, got {device!r}")


# ---------------------------------------------------------------------------------------------
# the microphone


class _DeviceStream:
    """What the microphone and the speaker share: opening the device once, off the trio thread."""

    _direction: ClassVar[Direction]
    device: str | int | None
    sample_rate: int
    channels: int
    chunk_ms: int
    device_rate_request: int | None
    device_info: DeviceInfo | None
    device_rate: int | None
    device_channels: int | None
    _opened: Opened | None
    _limiter: trio.CapacityLimiter
    _open_lock: trio.Lock
    _closed: bool

    async def open(self) -> DeviceInfo:
        """Open the device now (else the first use does); returns the device chosen."""
        if self._closed:
            raise AudioError(f"{self!r} is closed — make a new {type(self).__name__}")
        async with self._open_lock:
            if self._opened is None:
                await self._open_device()
        assert self._opened is not None
        return self._opened.device

    async def _open_device(self) -> None:
        raise NotImplementedError

    async def _open_stream(self) -> Opened:
        opened = await trio.to_thread.run_sync(
            open_device, self._direction, self.device, self.sample_rate, self.channels, self.chunk_ms,
            self.device_rate_request, limiter=self._limiter)
        if self._closed:  # closed while opening
            await trio.to_thread.run_sync(lambda: close_device(opened, drain=False), limiter=self._limiter)
            raise AudioError(f"{self!r} was closed while opening")
        self._opened = opened
        self.device_info, self.device_rate, self.device_channels = opened.device, opened.rate, opened.channels
        log.info(f"{'microphone' if self._direction == 'input' else 'speaker'} opened",
                 device=opened.device.name, index=opened.device.index, device_rate=opened.rate,
                 device_channels=opened.channels, rate=self.sample_rate,
                 latency_ms=round(opened.latency * 1000, 1))
        return opened


class MicrophoneSource(_DeviceStream):
    """Live audio from an input device, as frames of ``chunk_ms`` at ``sample_rate``/``channels``.

    ``device`` is an index or (part of) a name; ``None`` uses ``$VOICEKIT_INPUT_DEVICE``, else the
    system default. ``device_rate`` forces the rate the device is opened at (default: the
    requested rate if the device takes it, else its default rate); audio is resampled to
    ``sample_rate``. The device is opened by :meth:`open` or when ``frames()`` starts.

    ``overruns`` counts the times audio was lost because the device was not read in time, and
    ``lost_seconds`` how much. Frames stay contiguous (a loss is not replaced by silence), so the
    timestamps are seconds of audio delivered.
    """

    realtime = True
    _direction: ClassVar[Direction] = "input"

    def __init__(self, device: str | int | None = None, *, sample_rate: int = 16000, channels: int = 1,
                 chunk_ms: int = 20, device_rate: int | None = None,
                 overrun_tolerance_ms: int | None = None) -> None:
        _check_device_spec("MicrophoneSource", device)
        positive_int("MicrophoneSource", "sample_rate", sample_rate)
        positive_int("MicrophoneSource", "channels", channels)
        positive_int("MicrophoneSource", "chunk_ms", chunk_ms)
        positive_int("MicrophoneSource", "device_rate", device_rate, allow_none=True)
        positive_int("MicrophoneSource", "overrun_tolerance_ms", overrun_tolerance_ms, allow_none=True)
        load_pyaudio()  # fail now, with the install hint, rather than mid-session
        self.device = device
        self.sample_rate = sample_rate
        self.channels = channels
        self.chunk_ms = chunk_ms
        self.device_rate_request = device_rate
        self.overrun_tolerance_ms = overrun_tolerance_ms
        self.device_info: DeviceInfo | None = None
        self.device_rate: int | None = None
        self.device_channels: int | None = None
        self.samples_read = 0  # per channel, at the device rate
        self._detector: OverrunDetector | None = None
        self._opened: Opened | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._open_lock = trio.Lock()
        self._closed = False
        self._started = False

    def __repr__(self) -> str:
        where = self.device_info.name if self.device_info else self.device
        return f"MicrophoneSource({where!r}, sample_rate={self.sample_rate}, channels={self.channels})"

    @property
    def overruns(self) -> int:
        return self._detector.overruns if self._detector else 0

    @property
    def lost_seconds(self) -> float:
        return self._detector.lost_seconds if self._detector else 0.0

    async def _open_device(self) -> None:
        opened = await self._open_stream()
        tolerance = (self.overrun_tolerance_ms / 1000 if self.overrun_tolerance_ms
                     else max(0.15, 2 * opened.latency) + 2 * self.chunk_ms / 1000)
        self._detector = OverrunDetector(opened.rate, tolerance)

    def _read(self, frames: int) -> bytes:
        opened, detector = self._opened, self._detector
        if opened is None or detector is None or self._closed:
            return b""
        try:
            data: bytes = opened.stream.read(frames, exception_on_overflow=False)
        except OSError as exc:
            raise AudioError(f"reading the microphone {opened.device.name!r} failed: {exc} — "
                             "was it unplugged? run 'voicekit devices'") from exc
        self.samples_read += len(data) // (SAMPLE_WIDTH * opened.channels)
        lost = detector.update(time.monotonic(), self.samples_read)
        if lost:
            log.warning("microphone overrun: input audio was lost", lost_ms=round(lost * 1000),
                        overruns=detector.overruns)
        return data

    def frames(self) -> AsyncGenerator[AudioFrame, None]:
        if self._closed:
            raise AudioError(f"{self!r} is closed — make a new MicrophoneSource")
        if self._started:
            raise AudioError(f"{self!r} is already being read — a microphone has one reader")
        self._started = True
        return self._frames()

    async def _frames(self) -> AsyncGenerator[AudioFrame, None]:
        await self.open()
        opened = self._opened
        assert opened is not None
        resampler: StreamResampler | None = None
        if opened.rate != self.sample_rate or opened.channels != self.channels:
            resampler = StreamResampler(opened.rate, self.sample_rate, opened.channels, self.channels)
        chunk = max(1, self.sample_rate * self.chunk_ms // 1000)
        pending: npt.NDArray[np.int16] = np.zeros((0, self.channels), np.int16)
        emitted = 0
        while not self._closed:
            data = await trio.to_thread.run_sync(self._read, opened.frames_per_buffer, limiter=self._limiter)
            if not data:
                return
            samples = np.frombuffer(data, dtype="<i2").reshape(-1, opened.channels)
            out = samples if resampler is None else resampler.process_array(int16_to_float(samples))
            pending = np.concatenate([pending, out]) if pending.size else out
            while pending.shape[0] >= chunk:
                piece, pending = pending[:chunk], pending[chunk:]
                frame = AudioFrame(piece.astype("<i2").tobytes(), self.sample_rate, self.channels,
                                   emitted / self.sample_rate)
                emitted += chunk
                yield frame
                if self._closed:
                    return

    async def aclose(self) -> None:
        """Stop and close the device. Safe to call twice, and while a read is in flight."""
        if self._closed:
            return
        self._closed = True
        opened, self._opened = self._opened, None
        if opened is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: close_device(opened, drain=False), limiter=self._limiter)


# ---------------------------------------------------------------------------------------------
# the speaker


class SpeakerSink(_DeviceStream):
    """Plays audio on an output device; ``write`` blocks at the device's pace (``realtime=True``).

    ``sample_rate``/``channels`` is the format callers write (frames in another format are
    converted too); the device is opened at that rate if it takes it, else at its default rate,
    and audio is resampled on the way. Audio goes to the device ``chunk_ms`` at a time, so a
    cancelled ``write`` stops within one chunk; with ``discard_on_cancel`` (default) the audio
    already queued in the device is dropped as well, so a barge-in silences the speaker at once.

    ``device`` is an index or (part of) a name; ``None`` uses ``$VOICEKIT_OUTPUT_DEVICE``, else the
    system default. ``underruns`` counts the times the speaker ran dry mid-playback (a pause of
    more than ``idle_ms`` between writes is silence, not an underrun); ``starved_seconds`` totals
    how long.
    """

    realtime = True
    _direction: ClassVar[Direction] = "output"

    def __init__(self, sample_rate: int = 16000, device: str | int | None = None, *, channels: int = 1,
                 chunk_ms: int = 20, device_rate: int | None = None, discard_on_cancel: bool = True,
                 idle_ms: int = 500) -> None:
        _check_device_spec("SpeakerSink", device)
        positive_int("SpeakerSink", "sample_rate", sample_rate)
        positive_int("SpeakerSink", "channels", channels)
        positive_int("SpeakerSink", "chunk_ms", chunk_ms)
        positive_int("SpeakerSink", "device_rate", device_rate, allow_none=True)
        positive_int("SpeakerSink", "idle_ms", idle_ms)
        load_pyaudio()
        self.sample_rate = sample_rate
        self.channels = channels
        self.device = device
        self.chunk_ms = chunk_ms
        self.device_rate_request = device_rate
        self.discard_on_cancel = discard_on_cancel
        self.device_info: DeviceInfo | None = None
        self.device_rate: int | None = None
        self.device_channels: int | None = None
        self.samples_written = 0  # per channel, at the device rate
        self.discards = 0  # writes cut short by a cancel (their queued audio dropped)
        self._detector = UnderrunDetector(tolerance=chunk_ms / 1000, idle=idle_ms / 1000)
        self._opened: Opened | None = None
        self._resampler: StreamResampler | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._open_lock = trio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        where = self.device_info.name if self.device_info else self.device
        return f"SpeakerSink({where!r}, sample_rate={self.sample_rate}, channels={self.channels})"

    @property
    def underruns(self) -> int:
        return self._detector.underruns

    @property
    def starved_seconds(self) -> float:
        return self._detector.starved_seconds

    async def _open_device(self) -> None:
        opened = await self._open_stream()
        self.device_rate_request = opened.rate  # reopen (after a discard) at the same rate

    def _convert(self, frame: AudioFrame, opened: Opened) -> npt.NDArray[np.int16]:
        r = self._resampler
        if frame.sample_rate == opened.rate and frame.channels == opened.channels:
            return frame.to_array()
        if r is None or r.in_rate != frame.sample_rate or r.in_channels != frame.channels:
            r = self._resampler = StreamResampler(frame.sample_rate, opened.rate, frame.channels, opened.channels)
        return r.process_array(int16_to_float(frame.to_array()))

    def _write(self, pcm: bytes, frames: int) -> None:
        opened = self._opened
        if opened is None:
            return
        start = time.monotonic()
        starved = self._detector.before_write(start)
        try:
            # PyAudio closes the stream when it raises for an underflow: never ask it to
            opened.stream.write(pcm, frames, exception_on_underflow=False)
        except OSError as exc:
            raise AudioError(f"writing to the speaker {opened.device.name!r} failed: {exc} — "
                             "was it unplugged? run 'voicekit devices'") from exc
        self.samples_written += frames
        if self._detector.after_write(start, time.monotonic(), frames / opened.rate, starved):
            log.warning("speaker underrun: playback ran dry", starved_ms=round(starved * 1000),
                        underruns=self._detector.underruns)

    async def write(self, frame: AudioFrame) -> None:
        if self._closed:
            raise AudioError(f"{self!r} is closed — make a new SpeakerSink")
        await self.open()
        opened = self._opened
        assert opened is not None
        samples = self._convert(frame, opened)
        step = max(1, opened.frames_per_buffer)
        try:
            for i in range(0, samples.shape[0], step):
                piece = np.ascontiguousarray(samples[i:i + step], dtype="<i2")
                await trio.to_thread.run_sync(self._write, piece.tobytes(), piece.shape[0],
                                              limiter=self._limiter)
        except trio.Cancelled:
            if self.discard_on_cancel:
                await self._discard()
            raise

    async def _discard(self) -> None:
        """Drop what the device has queued (close the stream; the next write reopens it)."""
        opened, self._opened = self._opened, None
        self._resampler = None
        if opened is None:
            return
        self.discards += 1
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: close_device(opened, drain=False), limiter=self._limiter)

    async def aclose(self) -> None:
        """Play what is queued, then close the device. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        opened, self._opened = self._opened, None
        if opened is None:
            return
        with trio.CancelScope(shield=True):
            tail = self._resampler.process_array(np.zeros((0, self._resampler.in_channels), np.float32),
                                                 last=True) if self._resampler else None
            if tail is not None and tail.shape[0]:
                pcm = np.ascontiguousarray(tail, dtype="<i2")
                await trio.to_thread.run_sync(self._write_tail, opened, pcm.tobytes(), pcm.shape[0],
                                              limiter=self._limiter)
            await trio.to_thread.run_sync(lambda: close_device(opened, drain=True), limiter=self._limiter)

    def _write_tail(self, opened: Opened, pcm: bytes, frames: int) -> None:
        with contextlib.suppress(OSError):
            opened.stream.write(pcm, frames, exception_on_underflow=False)
            self.samples_written += frames
