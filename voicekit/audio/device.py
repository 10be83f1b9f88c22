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
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from typing import Any, ClassVar, Final, Literal

import attrs
import numpy as np
import numpy.typing as npt
import trio

from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.audio.resample import StreamResampler, int16_to_float
from voicekit.errors import AudioError, ConfigError
from voicekit.errors import DeviceNotFoundError as DeviceNotFoundError  # re-exported: it used to live here
from voicekit.logging import get_logger

log = get_logger("voicekit.audio.device")

Direction = Literal["input", "output"]

INPUT_DEVICE_ENV: Final = "VOICEKIT_INPUT_DEVICE"
OUTPUT_DEVICE_ENV: Final = "VOICEKIT_OUTPUT_DEVICE"
#: Set to 1 to let PortAudio, ALSA and JACK print their diagnostics on stderr.
DEBUG_ENV: Final = "VOICEKIT_AUDIO_DEBUG"
INSTALL_HINT: Final = "install voicekit[audio] and apt portaudio19-dev"
#: Rates tried after the requested one and the device's default.
FALLBACK_RATES: Final = (48000, 44100, 16000)

_NO_DEVICE: Final = {
    "input": "no input audio device found; on a server use --input FILE, or set up ALSA/PulseAudio",
    "output": "no output audio device found; on a server use --output FILE.wav or --output none, "
              "or set up ALSA/PulseAudio",
}
_ENV: Final = {"input": INPUT_DEVICE_ENV, "output": OUTPUT_DEVICE_ENV}


@attrs.frozen
class DeviceInfo:
    """One PortAudio device."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: int
    default_input: bool = False
    default_output: bool = False

    def channels(self, direction: Direction) -> int:
        return self.max_input_channels if direction == "input" else self.max_output_channels

    def is_default(self, direction: Direction) -> bool:
        return self.default_input if direction == "input" else self.default_output


# ---------------------------------------------------------------------------------------------
# PortAudio set-up


def load_pyaudio() -> Any:
    """Import PyAudio, or raise :class:`AudioError` saying how to install it."""
    try:
        import pyaudio
    except ImportError as exc:
        raise AudioError(
            f"PyAudio is not installed (needed for the microphone and the speaker): {INSTALL_HINT}; "
            "or use --input FILE / --output FILE.wav"
        ) from exc
    return pyaudio


_PA_LOCK = threading.Lock()  # Pa_Initialize / Pa_Terminate are not thread-safe
_QUIET_LOCK = threading.RLock()  # one fd-2 redirection at a time (always taken after _PA_LOCK)
_ALSA_HANDLER: Any = None


def _silence_alsa() -> None:
    """Route ALSA's own error printing to nowhere (voicekit raises clear errors instead)."""
    global _ALSA_HANDLER
    if _ALSA_HANDLER is not None or not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("asound")
    if name is None:
        return
    try:
        lib = ctypes.CDLL(name)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_char_p)
        _ALSA_HANDLER = proto(lambda *_args: None)
        lib.snd_lib_error_set_handler(_ALSA_HANDLER)
    except (OSError, AttributeError):  # an unusual libasound: keep its messages
        _ALSA_HANDLER = False


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide what PortAudio's back-ends (ALSA, JACK) print on fd 2 while probing devices."""
    if os.environ.get(DEBUG_ENV):
        yield
        return
    with _QUIET_LOCK:
        _silence_alsa()
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _portaudio() -> Any:
    """A new PyAudio instance (``Pa_Initialize``; blocking: it probes every device)."""
    pyaudio = load_pyaudio()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never spawn a JACK server just to list it
    with _PA_LOCK, _quiet():
        try:
            return pyaudio.PyAudio()
        except OSError as exc:
            raise AudioError(f"PortAudio failed to start: {exc} — check the sound system "
                             "(ALSA/PulseAudio) or use --input FILE / --output FILE.wav") from exc


def _terminate(pa: Any) -> None:
    with _PA_LOCK:
        pa.terminate()


def _default_index(getter: Callable[[], dict[str, Any]]) -> int | None:
    try:
        return int(getter()["index"])
    except (OSError, KeyError):
        return None


def _describe(pa: Any) -> list[DeviceInfo]:
    default_in = _default_index(pa.get_default_input_device_info)
    default_out = _default_index(pa.get_default_output_device_info)
    devices: list[DeviceInfo] = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        try:
            host = str(pa.get_host_api_info_by_index(d["hostApi"])["name"])
        except (OSError, KeyError):
            host = "?"
        devices.append(DeviceInfo(
            index=int(d["index"]), name=str(d["name"]), host_api=host,
            max_input_channels=int(d["maxInputChannels"]), max_output_channels=int(d["maxOutputChannels"]),
            default_sample_rate=round(float(d["defaultSampleRate"])),
            default_input=int(d["index"]) == default_in, default_output=int(d["index"]) == default_out))
    return devices


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees (blocking: call it from a thread inside trio)."""
    pa = _portaudio()
    try:
        return _describe(pa)
    finally:
        _terminate(pa)


def select_device(devices: Sequence[DeviceInfo], spec: str | int | None, direction: Direction) -> DeviceInfo:
    """Pick a device that can record (``"input"``) or play (``"output"``).

    ``spec`` is an index (int or digits), a name or part of one (case-insensitive; an exact
    name wins over a partial match, and a partial match must be unique), or ``None`` for the
    system default (the first usable device if there is no default).
    """
    usable = [d for d in devices if d.channels(direction) > 0]
    if not usable:
        raise AudioError(_NO_DEVICE[direction])
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        defaults = [d for d in usable if d.is_default(direction)]
        return defaults[0] if defaults else usable[0]
    if isinstance(spec, bool):
        raise ConfigError(f"{direction} device must be an index or a name, got {spec!r}")
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        index = int(text)
        for d in devices:
            if d.index == index:
                if d.channels(direction) == 0:
                    raise DeviceNotFoundError(
                        f"audio device {index} ({d.name!r}) has no {direction} channels — pick an "
                        f"{direction} device from 'voicekit devices'")
                return d
        raise DeviceNotFoundError(
            f"there is no audio device with index {index} — run 'voicekit devices' to list them")
    needle = text.casefold()
    exact = [d for d in usable if d.name.casefold() == needle]
    if exact:
        return exact[0]
    partial = [d for d in usable if needle in d.name.casefold()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        names = ", ".join(repr(d.name) for d in usable[:12])
        raise DeviceNotFoundError(
            f"no {direction} audio device matches {text!r} (available: {names}) — run 'voicekit devices'")
    names = ", ".join(f"{d.index}: {d.name!r}" for d in partial[:12])
    raise DeviceNotFoundError(
        f"{direction} device {text!r} matches several devices ({names}) — give the index instead")


def rate_candidates(requested: int, device_default: int, forced: int | None = None) -> list[int]:
    """Rates to try when opening a device, best first: ``forced`` alone if given, else the
    requested rate, the device's default, then :data:`FALLBACK_RATES`."""
    if forced is not None:
        return [forced]
    out: list[int] = []
    for rate in (requested, device_default, *FALLBACK_RATES):
        if rate > 0 and rate not in out:
            out.append(rate)
    return out


def channel_candidates(requested: int, device_max: int) -> list[int]:
    """Channel counts to try: the requested count, then mono, stereo and the device maximum."""
    out: list[int] = []
    for ch in (requested, 1, 2, device_max):
        if 0 < ch <= max(device_max, 1) and ch not in out:
            out.append(ch)
    return out


@attrs.define
class _Opened:
    pa: Any
    stream: Any
    device: DeviceInfo
    rate: int
    channels: int
    frames_per_buffer: int
    latency: float


def _open(direction: Direction, spec: str | int | None, rate: int, channels: int, chunk_ms: int,
          forced_rate: int | None) -> _Opened:
    """Resolve the device and open a blocking int16 stream on it (runs in a worker thread)."""
    pyaudio = load_pyaudio()
    if spec is None:
        spec = os.environ.get(_ENV[direction]) or None
    pa = _portaudio()
    try:
        device = select_device(_describe(pa), spec, direction)
        tried: list[str] = []
        last = "the device refused every format"
        for r in rate_candidates(rate, device.default_sample_rate, forced_rate):
            for ch in channel_candidates(channels, device.channels(direction)):
                fmt: dict[str, Any] = (
                    {"input_device": device.index, "input_channels": ch, "input_format": pyaudio.paInt16}
                    if direction == "input" else
                    {"output_device": device.index, "output_channels": ch, "output_format": pyaudio.paInt16})
                tried.append(f"{r} Hz/{ch} ch")
                try:
                    with _quiet():
                        pa.is_format_supported(r, **fmt)
                except ValueError as exc:
                    last = str(exc.args[0] if exc.args else exc)
                    continue
                frames = max(1, r * chunk_ms // 1000)
                kw: dict[str, Any] = (
                    {"input": True, "input_device_index": device.index} if direction == "input"
                    else {"output": True, "output_device_index": device.index})
                try:
                    with _PA_LOCK, _quiet():
                        stream = pa.open(rate=r, channels=ch, format=pyaudio.paInt16,
                                         frames_per_buffer=frames, **kw)
                except (OSError, ValueError) as exc:
                    last = str(exc)
                    continue
                latency = stream.get_input_latency() if direction == "input" else stream.get_output_latency()
                return _Opened(pa, stream, device, r, ch, frames, float(latency))
        raise AudioError(
            f"cannot open {direction} device {device.index} ({device.name!r}) at {', '.join(tried)}: {last} — "
            "close other programs using it, or pick another device ('voicekit devices')")
    except BaseException:
        _terminate(pa)
        raise


def _close(opened: _Opened, *, drain: bool) -> None:
    try:
        with contextlib.suppress(OSError):
            if drain and opened.stream.is_active():
                opened.stream.stop_stream()  # Pa_StopStream plays what is queued
        with _PA_LOCK:
            opened.stream.close()  # Pa_CloseStream drops what is still queued
    finally:
        _terminate(opened.pa)


def _positive_int(owner: str, name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{owner} {name} must be a positive integer, got {value!r}")


def _check_device_spec(owner: str, device: object) -> None:
    if device is not None and (isinstance(device, bool) or not isinstance(device, str | int)):
        raise ConfigError(f"{owner} device must be an index, a name or None, got {device!r}")


# ---------------------------------------------------------------------------------------------
# glitch detectors (pure arithmetic on the wall clock and sample counts)


class OverrunDetector:
    """Finds input audio the device dropped, from the wall clock versus the samples delivered.

    A capture device produces ``rate`` samples a second whether or not anyone reads them, and
    can hold ``tolerance`` seconds of them. After each read, ``behind`` is the wall time since
    the origin minus the audio delivered since the origin. More than ``tolerance`` behind means
    the buffer overflowed and the difference was lost: one overrun is counted and the origin is
    moved so each loss is counted once. Reading ahead of the clock (a buffered start, or a
    device faster than real time such as a file) moves the origin forward.
    """

    def __init__(self, rate: int, tolerance: float) -> None:
        self.rate = rate
        self.tolerance = tolerance
        self.overruns = 0
        self.lost_seconds = 0.0
        self._origin: float | None = None

    def update(self, now: float, samples_total: int) -> float:
        """Record a read that brought the total to ``samples_total``; return seconds lost (0 if none)."""
        audio = samples_total / self.rate
        if self._origin is None:
            self._origin = now - audio
            return 0.0
        behind = (now - self._origin) - audio
        if behind < 0:
            self._origin = now - audio
            return 0.0
        if behind > self.tolerance:
            self.overruns += 1
            self.lost_seconds += behind
            self._origin = now - audio
            return behind
        return 0.0


class UnderrunDetector:
    """Finds moments the speaker ran dry in the middle of playback.

    ``play_until`` is the wall time at which the device will have played everything written so
    far (at least the audio written, counted from when the last write returned: a write that
    blocks shows the device was full). A write that starts more than ``tolerance`` after it found
    a starved device, and counts
    one underrun, unless the writer had been idle for more than ``idle`` seconds: a pause between
    replies is silence, not a glitch. (PortAudio's own underflow flag cannot be used: PyAudio
    closes the stream when it reports one.)
    """

    def __init__(self, tolerance: float, idle: float) -> None:
        self.tolerance = tolerance
        self.idle = idle
        self.underruns = 0
        self.starved_seconds = 0.0
        self._play_until: float | None = None
        self._last_return: float | None = None

    def before_write(self, now: float) -> float:
        """Called as a write starts; returns how long the device has been starved (0 if not)."""
        if self._play_until is None:
            return 0.0
        return max(0.0, now - self._play_until)

    def after_write(self, start: float, now: float, duration: float, starved: float) -> bool:
        """Called when a write of ``duration`` seconds returned; True if an underrun was counted."""
        idle = self._last_return is not None and start - self._last_return > self.idle
        counted = False
        if not idle and self._last_return is not None and starved > self.tolerance:
            self.underruns += 1
            self.starved_seconds += starved
            counted = True
        base = start if self._play_until is None or idle else max(self._play_until, start)
        # a write that blocked until ``now`` found the device full, not playing: what it wrote
        # cannot have finished before now + duration (sound servers may hold a stream back)
        self._play_until = max(base, now) + duration
        self._last_return = now
        return counted


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
    _opened: _Opened | None
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

    async def _open_stream(self) -> _Opened:
        opened = await trio.to_thread.run_sync(
            _open, self._direction, self.device, self.sample_rate, self.channels, self.chunk_ms,
            self.device_rate_request, limiter=self._limiter)
        if self._closed:  # closed while opening
            await trio.to_thread.run_sync(lambda: _close(opened, drain=False), limiter=self._limiter)
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
        _positive_int("MicrophoneSource", "sample_rate", sample_rate)
        _positive_int("MicrophoneSource", "channels", channels)
        _positive_int("MicrophoneSource", "chunk_ms", chunk_ms)
        _positive_int("MicrophoneSource", "device_rate", device_rate, allow_none=True)
        _positive_int("MicrophoneSource", "overrun_tolerance_ms", overrun_tolerance_ms, allow_none=True)
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
        self._opened: _Opened | None = None
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
                await trio.to_thread.run_sync(lambda: _close(opened, drain=False), limiter=self._limiter)


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
        _positive_int("SpeakerSink", "sample_rate", sample_rate)
        _positive_int("SpeakerSink", "channels", channels)
        _positive_int("SpeakerSink", "chunk_ms", chunk_ms)
        _positive_int("SpeakerSink", "device_rate", device_rate, allow_none=True)
        _positive_int("SpeakerSink", "idle_ms", idle_ms)
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
        self._opened: _Opened | None = None
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

    def _convert(self, frame: AudioFrame, opened: _Opened) -> npt.NDArray[np.int16]:
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
            await trio.to_thread.run_sync(lambda: _close(opened, drain=False), limiter=self._limiter)

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
            await trio.to_thread.run_sync(lambda: _close(opened, drain=True), limiter=self._limiter)

    def _write_tail(self, opened: _Opened, pcm: bytes, frames: int) -> None:
        with contextlib.suppress(OSError):
            opened.stream.write(pcm, frames, exception_on_underflow=False)
            self.samples_written += frames
