"""Glitch detectors of the live devices: pure arithmetic on the wall clock and sample counts
(see :class:`~voicekit.audio.device.MicrophoneSource` and :class:`~voicekit.audio.device.SpeakerSink`)."""

from __future__ import annotations


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
