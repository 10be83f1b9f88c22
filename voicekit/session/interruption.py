"""Barge-in: when may the user's speech stop a reply that is playing?

A policy sees what the user does while a reply plays and answers with a :class:`Decision`.
The session turns ``INTERRUPT`` into one ``cancel()`` of the reply's scope, ``PAUSE`` into
a paused player and ``RESUME`` into playback going on where it stopped.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from voicekit.errors import ConfigError


class Decision(enum.Enum):
    NONE = "none"
    PAUSE = "pause"
    RESUME = "resume"
    INTERRUPT = "interrupt"


@runtime_checkable
class InterruptionPolicy(Protocol):
    def reset(self) -> None:
        """A reply started: forget what was seen during the previous one."""

    def on_speech_started(self, audio_t: float) -> Decision: ...
    def on_voiced_audio(self, audio_t: float, voiced_s: float) -> Decision:
        """``voiced_s`` is the voiced audio heard since the speech started."""
        ...
    def on_speech_ended(self, audio_t: float) -> Decision: ...
    def on_partial(self, text: str) -> Decision: ...
    def on_tick(self, audio_t: float) -> Decision: ...


class NeverInterrupt:
    """Replies always play to the end (push-to-talk style, or for tests)."""

    def reset(self) -> None:
        pass

    def on_speech_started(self, audio_t: float) -> Decision:
        return Decision.NONE

    def on_voiced_audio(self, audio_t: float, voiced_s: float) -> Decision:
        return Decision.NONE

    def on_speech_ended(self, audio_t: float) -> Decision:
        return Decision.NONE

    def on_partial(self, text: str) -> Decision:
        return Decision.NONE

    def on_tick(self, audio_t: float) -> Decision:
        return Decision.NONE


class VADInterruption(NeverInterrupt):
    """Interrupt once the user has spoken ``min_speech_ms`` of voiced audio during a reply.

    Coughs, clicks and short noises stay under the threshold and leave the reply playing.
    """

    def __init__(self, min_speech_ms: int = 300) -> None:
        if min_speech_ms < 0:
            raise ConfigError("min_speech_ms must be >= 0")
        self.min_speech_s = min_speech_ms / 1000

    def on_speech_started(self, audio_t: float) -> Decision:
        return Decision.INTERRUPT if self.min_speech_s == 0 else Decision.NONE

    def on_voiced_audio(self, audio_t: float, voiced_s: float) -> Decision:
        return Decision.INTERRUPT if voiced_s >= self.min_speech_s - 1e-9 else Decision.NONE


def make_policy(name: str, **options: int) -> InterruptionPolicy:
    """Policies by name, as the CLI selects them."""
    if name == "none":
        return NeverInterrupt()
    if name == "vad":
        return VADInterruption(**options)
    raise ConfigError(f"unknown interruption policy {name!r}; choose 'vad' or 'none'")
