"""Streaming sample-rate and channel conversion.

:class:`StreamResampler` wraps ``soxr.ResampleStream``: feed it frames one at a time and it hands
back converted frames, keeping the filter state between calls, so cutting a stream into chunks
does not add clicks at the seams. Output timestamps are computed from the number of samples it
has produced, so they are contiguous on the output timeline whatever the input chunking.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError

QUALITIES: Final = ("QQ", "LQ", "MQ", "HQ", "VHQ")

FloatArray = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


def int16_to_float(a: npt.NDArray[np.int16]) -> FloatArray:
    """int16 samples → float32 in [-1, 1)."""
    return a.astype(np.float32) * np.float32(1.0 / 32768.0)


def float_to_int16(a: npt.NDArray[np.floating]) -> Int16Array:
    """float samples in [-1, 1] → int16, rounded and clipped (no wrap-around on overshoot)."""
    scaled = np.rint(np.asarray(a, dtype=np.float32) * np.float32(32768.0))
    out: Int16Array = np.clip(scaled, -32768, 32767).astype(np.int16)
    return out


def mix_channels(a: FloatArray, out_channels: int) -> FloatArray:
    """Convert a (samples, in_channels) array to ``out_channels``.

    Equal counts pass through; to mono, channels are averaged; from mono, the channel is copied;
    otherwise output channel ``j`` is the mean of input channels ``i`` with ``i % out == j`` (when
    down-mixing) or a copy of input channel ``j % in`` (when up-mixing).
    """
    in_channels = a.shape[1]
    if in_channels == out_channels:
        return a
    if out_channels == 1:
        mono: FloatArray = a.mean(axis=1, keepdims=True, dtype=np.float32)
        return mono
    if in_channels == 1:
        return np.repeat(a, out_channels, axis=1)
    if in_channels > out_channels:
        cols = [a[:, j::out_channels].mean(axis=1, dtype=np.float32) for j in range(out_channels)]
        return np.stack(cols, axis=1)
    return a[:, [j % in_channels for j in range(out_channels)]]


class StreamResampler:
    """Stateful chunk-in, chunk-out converter between two rates and channel counts.

    ``process`` takes int16 frames at ``in_rate``/``in_channels`` and returns int16 frames at
    ``out_rate``/``out_channels`` (or ``None`` while the filter is still filling); call ``flush``
    once at the end of the stream to get the samples still held in the filter. The first output
    frame starts at the first input frame's timestamp; every later one starts exactly where the
    previous one ended (gaps in the input timestamps are not reproduced).

    ``quality`` is a soxr preset: ``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"`` (default) or ``"VHQ"``.
    """

    def __init__(self, in_rate: int, out_rate: int, in_channels: int = 1, out_channels: int = 1,
                 quality: str = "HQ") -> None:
        for name, value in (("in_rate", in_rate), ("out_rate", out_rate),
                            ("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"StreamResampler {name} must be a positive integer, got {value!r}")
        if quality not in QUALITIES:
            raise ConfigError(
                f"StreamResampler quality {quality!r} is not known — use one of {', '.join(QUALITIES)}"
            )
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.quality = quality
        self._work_channels = min(in_channels, out_channels)
        self._soxr: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._soxr = soxr.ResampleStream(in_rate, out_rate, self._work_channels,
                                             dtype="float32", quality=quality)
        self._t0: float | None = None
        self._out_samples = 0
        self._pending = False  # input accepted since the last flush

    @property
    def passthrough(self) -> bool:
        """True when rates and channel counts already match (frames are only re-stamped)."""
        return self._soxr is None and self.in_channels == self.out_channels

    @property
    def samples_out(self) -> int:
        """Samples per channel produced so far."""
        return self._out_samples

    def process_array(self, samples: FloatArray, *, last: bool = False) -> Int16Array:
        """Convert float32 samples of shape (n, in_channels) to int16 of shape (m, out_channels).

        This is the array-level core of :meth:`process`; it does not touch timestamps other than
        counting output samples. ``last=True`` drains the filter.
        """
        if samples.ndim != 2 or samples.shape[1] != self.in_channels:
            raise ValueError(
                f"expected samples of shape (n, {self.in_channels}), got {samples.shape}"
            )
        a = samples
        if self.out_channels < self.in_channels:
            a = mix_channels(a, self.out_channels)
        if self._soxr is not None:
            a = self._soxr.resample_chunk(np.ascontiguousarray(a, dtype=np.float32), last=last)
            if a.ndim == 1:
                a = a.reshape(-1, self._work_channels)
            if last:
                self._soxr.clear()
        if self.out_channels > self.in_channels:
            a = mix_channels(a, self.out_channels)
        out = float_to_int16(a)
        self._out_samples += out.shape[0]
        self._pending = not last
        return out

    def process(self, frame: AudioFrame) -> AudioFrame | None:
        """Convert one frame; ``None`` if the filter has nothing to emit yet."""
        if frame.sample_rate != self.in_rate or frame.channels != self.in_channels:
            raise ValueError(
                f"StreamResampler expects {self.in_rate} Hz / {self.in_channels} ch frames, got "
                f"{frame.sample_rate} Hz / {frame.channels} ch — make a new resampler for the new format"
            )
        if self._t0 is None:
            self._t0 = frame.timestamp
        start = self._timestamp()
        if self.passthrough:
            self._out_samples += frame.samples
            return AudioFrame(frame.pcm, frame.sample_rate, frame.channels, start)
        out = self.process_array(int16_to_float(frame.to_array()))
        if out.shape[0] == 0:
            return None
        return AudioFrame(out.tobytes(), self.out_rate, self.out_channels, start)

    def flush(self) -> AudioFrame | None:
        """Drain the filter at the end of a stream; ``None`` if nothing is left.

        After a flush the resampler can be used again; its output timeline continues.
        """
        if not self._pending or self._soxr is None:
            self._pending = False
            return None
        start = self._timestamp()
        out = self.process_array(np.zeros((0, self.in_channels), np.float32), last=True)
        if out.shape[0] == 0:
            return None
        return AudioFrame(out.tobytes(), self.out_rate, self.out_channels, start)

    def _timestamp(self) -> float:
        return (self._t0 or 0.0) + self._out_samples / self.out_rate
