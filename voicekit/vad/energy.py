"""An energy VAD: a frame is speech when it is loud enough.

Exact on scripted or synthetic audio (tones and silence), and without any native dependency, so
the DashScope emulator endpoints scripted fixtures with it; on real speech prefer WebRTC or Silero.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from voicekit.vad.base import VADCapabilities


class EnergyVAD:
    """Speech when a frame's RMS exceeds ``threshold`` (of full scale). Exact on scripted audio."""

    capabilities: ClassVar[VADCapabilities] = VADCapabilities(
        name="energy", sample_rates=(8000, 16000, 24000, 48000), frame_ms=(10, 20, 30))

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 20, threshold: float = 0.02) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.threshold = threshold

    def is_speech(self, pcm: bytes) -> bool:
        a = np.frombuffer(pcm, "<i2").astype(np.float32)
        return bool(a.size) and float(np.dot(a, a)) / a.size > (self.threshold * 32768.0) ** 2

    def reset(self) -> None:
        pass
