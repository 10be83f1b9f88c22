"""Keeping the assistant from hearing itself.

When a reply plays through a speaker, the microphone hears it. Without care the VAD calls that
speech and the assistant interrupts itself. Two guards, both fed with the audio the player
actually wrote (the *reference*) and applied to the microphone before the VAD:

* :class:`WebRTCEchoCanceller` — acoustic echo cancellation by the WebRTC audio processing module
  (through the ``livekit`` package's binding; install ``voicekit[aec]``). It subtracts an adaptive
  estimate of the echo, so the user can still barge in while the reply plays.
* :class:`PlaybackGate` — no extra dependency: while the reference is loud, microphone frames
  that are not clearly louder than the echo would be are replaced by silence. Barge-in then needs
  the user to speak over the reply (``margin_db`` louder than the expected echo).

Both work on 16 kHz mono and keep the microphone timeline intact (one output sample per input).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol, runtime_checkable

import numpy as np

from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.errors import ConfigError

RATE = 16000
_BLOCK = RATE // 100  # both guards work in 10 ms blocks


@runtime_checkable
class EchoGuard(Protocol):
    def reference(self, frame: AudioFrame) -> None:
        """Audio that was just written to the speaker (any rate; converted internally)."""

    def process(self, frame: AudioFrame) -> AudioFrame:
        """Microphone audio (16 kHz mono) in, the same length out, with the echo removed."""
        ...


class _ReferenceQueue:
    """Holds played audio at 16 kHz mono, released in 10 ms blocks as the microphone advances."""

    def __init__(self) -> None:
        self._resampler: StreamResampler | None = None
        self._rate = 0
        self._pending = np.zeros(0, np.int16)

    def add(self, frame: AudioFrame) -> None:
        if frame.sample_rate != RATE or frame.channels != 1:
            if self._resampler is None or self._rate != frame.sample_rate:
                self._resampler = StreamResampler(frame.sample_rate, RATE, frame.channels, 1, quality="MQ")
                self._rate = frame.sample_rate
            out = self._resampler.process(frame)
            if out is None:
                return
            frame = out
        self._pending = np.concatenate([self._pending, frame.to_array()[:, 0]])
        limit = RATE * 5  # never keep more than 5 s of reference (a stalled microphone)
        if len(self._pending) > limit:
            self._pending = self._pending[-limit:]

    def take(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.int16)
        got = min(n, len(self._pending))
        out[:got] = self._pending[:got]
        self._pending = self._pending[got:]
        return out


class _Blocks:
    """Cuts the microphone into 10 ms blocks and puts processed blocks back in order."""

    def __init__(self) -> None:
        self._in = np.zeros(0, np.int16)
        self._out: deque[np.ndarray] = deque()

    def run(self, frame: AudioFrame, fn: Any) -> AudioFrame:
        if frame.sample_rate != RATE or frame.channels != 1:
            raise ConfigError(f"echo guards take 16 kHz mono microphone audio, not {frame.sample_rate} Hz")
        self._in = np.concatenate([self._in, frame.to_array()[:, 0]])
        while len(self._in) >= _BLOCK:
            block, self._in = self._in[:_BLOCK], self._in[_BLOCK:]
            self._out.append(fn(block))
        # emit exactly as many samples as came in; until the first block is done, pad with the input
        need = frame.samples
        parts: list[np.ndarray] = []
        while need and self._out:
            head = self._out[0]
            if len(head) <= need:
                parts.append(self._out.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._out[0] = head[need:]
                need = 0
        if need:
            parts.append(np.zeros(need, np.int16))  # at most 10 ms of latency at the very start
        return AudioFrame(np.concatenate(parts).astype("<i2").tobytes(), RATE, 1, frame.timestamp)


class WebRTCEchoCanceller:
    """Acoustic echo cancellation with the WebRTC audio processing module.

    ``delay_ms`` is the time from writing audio to the sink until the microphone hears it
    (output latency + input latency + acoustic path); the canceller adapts around it.
    """

    def __init__(self, delay_ms: int = 40, noise_suppression: bool = False, high_pass_filter: bool = True) -> None:
        try:
            from livekit import rtc
        except ImportError as exc:
            raise ConfigError(
                "acoustic echo cancellation needs the WebRTC audio processing module: "
                "pip install 'voicekit[aec]' (or use the 'gate' echo guard)") from exc
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=noise_suppression,
                                              high_pass_filter=high_pass_filter, auto_gain_control=False)
        self._apm.set_stream_delay_ms(delay_ms)
        self._ref = _ReferenceQueue()
        self._blocks = _Blocks()

    def reference(self, frame: AudioFrame) -> None:
        self._ref.add(frame)

    def _block(self, mic: np.ndarray) -> np.ndarray:
        rtc = self._rtc
        far = rtc.AudioFrame(self._ref.take(_BLOCK).astype("<i2").tobytes(), RATE, 1, _BLOCK)
        self._apm.process_reverse_stream(far)
        near = rtc.AudioFrame(mic.astype("<i2").tobytes(), RATE, 1, _BLOCK)
        self._apm.process_stream(near)
        return np.frombuffer(bytes(near.data), "<i2").copy()

    def process(self, frame: AudioFrame) -> AudioFrame:
        return self._blocks.run(frame, self._block)


class PlaybackGate:
    """Silence the microphone while the speaker plays, unless the user is clearly louder.

    The expected echo level is the reference level times ``coupling`` (how much of the speaker
    reaches the microphone, 0..1), followed by a ``hold_ms`` tail for room reverberation.
    """

    def __init__(self, coupling: float = 0.5, margin_db: float = 6.0, hold_ms: int = 150,
                 delay_ms: int = 40) -> None:
        if not 0 < coupling <= 4:
            raise ConfigError("coupling must be in (0, 4]")
        self.coupling = coupling
        self.margin = 10 ** (margin_db / 20)
        self._hold_blocks = max(0, hold_ms // 10)
        self._delay_blocks = max(0, delay_ms // 10)
        self._ref = _ReferenceQueue()
        self._blocks = _Blocks()
        self._levels: deque[float] = deque([0.0] * (self._delay_blocks + self._hold_blocks + 1),
                                           maxlen=self._delay_blocks + self._hold_blocks + 1)
        self.gated_blocks = 0

    def reference(self, frame: AudioFrame) -> None:
        self._ref.add(frame)

    def _block(self, mic: np.ndarray) -> np.ndarray:
        ref = self._ref.take(_BLOCK).astype(np.float32)
        self._levels.append(float(np.sqrt(np.mean(ref * ref))))
        # echo now comes from reference played delay_ms ago, smeared over hold_ms
        window = list(self._levels)[: self._hold_blocks + 1]
        expected = max(window) * self.coupling
        level = float(np.sqrt(np.mean(mic.astype(np.float32) ** 2)))
        if expected > 0 and level < expected * self.margin:
            self.gated_blocks += 1
            return np.zeros_like(mic)
        return mic

    def process(self, frame: AudioFrame) -> AudioFrame:
        return self._blocks.run(frame, self._block)


def make_echo_guard(name: str, **options: Any) -> EchoGuard | None:
    """Guards by name, as the CLI selects them: 'aec', 'gate' or 'none'."""
    if name == "none":
        return None
    if name == "aec":
        return WebRTCEchoCanceller(**options)
    if name == "gate":
        return PlaybackGate(**options)
    raise ConfigError(f"unknown echo guard {name!r}; choose 'aec', 'gate' or 'none'")
