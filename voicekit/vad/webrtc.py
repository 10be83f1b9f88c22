"""webrtcvad backend (package ``webrtcvad-wheels``): the default, tiny and fast."""

from __future__ import annotations

from typing import ClassVar

import webrtcvad

from voicekit.errors import ConfigError
from voicekit.plugins.options import Option
from voicekit.vad.base import VADCapabilities


class WebRTCVAD:
    """Google's WebRTC voice activity detector.

    ``mode`` is its aggressiveness, 0 (lets most audio through as speech) to 3 (strictest).
    """

    capabilities: ClassVar[VADCapabilities] = VADCapabilities(
        name="webrtc",
        sample_rates=(8000, 16000, 32000, 48000),
        frame_ms=(10, 20, 30),
        notes="GMM-based; mode 0-3 sets aggressiveness",
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("sample_rate", "int", 16000, "rate the VAD runs at (the session resamples to it)",
               choices=("8000", "16000", "32000", "48000")),
        Option("frame_ms", "int", 30, "frame length in ms", choices=("10", "20", "30")),
        Option("mode", "int", 2, "aggressiveness: 0 lets most audio through as speech, 3 is strictest",
               choices=("0", "1", "2", "3")),
    )

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 30, mode: int = 2) -> None:
        caps = self.capabilities
        if sample_rate not in caps.sample_rates:
            raise ConfigError(
                f"webrtc VAD cannot run at {sample_rate} Hz; use one of {caps.sample_rates} "
                f"(the session resamples for you)"
            )
        if frame_ms not in caps.frame_ms:
            raise ConfigError(f"webrtc VAD frame must be 10, 20 or 30 ms, not {frame_ms}")
        if mode not in (0, 1, 2, 3):
            raise ConfigError(f"webrtc VAD mode must be 0, 1, 2 or 3, not {mode}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.mode = mode
        self._bytes = sample_rate * frame_ms // 1000 * 2
        self._vad = webrtcvad.Vad(mode)

    def is_speech(self, pcm: bytes) -> bool:
        if len(pcm) != self._bytes:
            raise ValueError(f"webrtc VAD expects {self._bytes} bytes per frame, got {len(pcm)}")
        return bool(self._vad.is_speech(pcm, self.sample_rate))

    def reset(self) -> None:
        self._vad = webrtcvad.Vad(self.mode)
