"""Audio devices as PortAudio sees them: listing them, picking one by index or name, the rates
and channel counts to try, and opening a blocking int16 stream on the one picked (in a worker
thread)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import attrs

from voicekit.audio._portaudio import PA_LOCK, load_pyaudio, portaudio, quiet, terminate
from voicekit.errors import AudioError, ConfigError, DeviceNotFoundError

Direction = Literal["input", "output"]

INPUT_DEVICE_ENV: Final = "VOICEKIT_INPUT_DEVICE"
OUTPUT_DEVICE_ENV: Final = "VOICEKIT_OUTPUT_DEVICE"
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




def _default_index(getter: Callable[[], dict[str, Any]]) -> int | None:
    try:
        return int(getter()["index"])
    except (OSError, KeyError):
        return None


def describe(pa: Any) -> list[DeviceInfo]:
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
    pa = portaudio()
    try:
        return describe(pa)
    finally:
        terminate(pa)

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
        return _by_index(devices, int(text), direction)
    return _by_name(usable, text, direction)


def _by_index(devices: Sequence[DeviceInfo], index: int, direction: Direction) -> DeviceInfo:
    for d in devices:
        if d.index == index:
            if d.channels(direction) == 0:
                raise DeviceNotFoundError(
                    f"audio device {index} ({d.name!r}) has no {direction} channels — pick an "
                    f"{direction} device from 'voicekit devices'")
            return d
    raise DeviceNotFoundError(
        f"there is no audio device with index {index} — run 'voicekit devices' to list them")


def _by_name(usable: Sequence[DeviceInfo], text: str, direction: Direction) -> DeviceInfo:
    """The usable device named ``text`` exactly, else the only one whose name contains it."""
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
class Opened:
    pa: Any
    stream: Any
    device: DeviceInfo
    rate: int
    channels: int
    frames_per_buffer: int
    latency: float


def open_device(direction: Direction, spec: str | int | None, rate: int, channels: int, chunk_ms: int,
          forced_rate: int | None) -> Opened:
    """Resolve the device and open a blocking int16 stream on it (runs in a worker thread)."""
    pyaudio = load_pyaudio()
    if spec is None:
        spec = os.environ.get(_ENV[direction]) or None
    pa = portaudio()
    try:
        device = select_device(describe(pa), spec, direction)
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
                    with quiet():
                        pa.is_format_supported(r, **fmt)
                except ValueError as exc:
                    last = str(exc.args[0] if exc.args else exc)
                    continue
                frames = max(1, r * chunk_ms // 1000)
                kw: dict[str, Any] = (
                    {"input": True, "input_device_index": device.index} if direction == "input"
                    else {"output": True, "output_device_index": device.index})
                try:
                    with PA_LOCK, quiet():
                        stream = pa.open(rate=r, channels=ch, format=pyaudio.paInt16,
                                         frames_per_buffer=frames, **kw)
                except (OSError, ValueError) as exc:
                    last = str(exc)
                    continue
                latency = stream.get_input_latency() if direction == "input" else stream.get_output_latency()
                return Opened(pa, stream, device, r, ch, frames, float(latency))
        raise AudioError(
            f"cannot open {direction} device {device.index} ({device.name!r}) at {', '.join(tried)}: {last} — "
            "close other programs using it, or pick another device ('voicekit devices')")
    except BaseException:
        terminate(pa)
        raise


def close_device(opened: Opened, *, drain: bool) -> None:
    try:
        with contextlib.suppress(OSError):
            if drain and opened.stream.is_active():
                opened.stream.stop_stream()  # Pa_StopStream plays what is queued
        with PA_LOCK:
            opened.stream.close()  # Pa_CloseStream drops what is still queued
    finally:
        terminate(opened.pa)
