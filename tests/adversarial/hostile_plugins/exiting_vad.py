"""A VAD plugin that calls ``sys.exit()`` from inside a session when the audio contains the bytes
``EXIT`` (otherwise a plain energy threshold): a careless plugin must end at most its own
conversation, never the ``voicekit serve`` process that serves everyone. Registered through
``voicekit_hostile_plugins-0.dist-info`` in this folder, which tests put on ``PYTHONPATH``."""

from __future__ import annotations

import sys
from typing import ClassVar

import numpy as np

from voicekit.vad.base import VADCapabilities


class ExitingVAD:
    capabilities: ClassVar[VADCapabilities] = VADCapabilities(
        name="exiting", sample_rates=(16000,), frame_ms=(20,), notes="for tests: exits on the bytes EXIT")

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 20) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms

    def is_speech(self, pcm: bytes) -> bool:
        if b"EXIT" in pcm:
            sys.exit(4)
        return bool(np.abs(np.frombuffer(pcm, "<i2").astype(np.int32)).max(initial=0) > 1000)

    def reset(self) -> None:
        pass
