"""Barge-in: when may the user's speech stop a reply that is playing?

A policy sees what the user does while a reply plays and answers with a :class:`Decision`.
The session turns ``INTERRUPT`` into one ``cancel()`` of the reply's scope, ``PAUSE`` into
a paused player and ``RESUME`` into playback going on where it stopped.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, runtime_checkable

from voicekit.errors import ConfigError
from voicekit.session.backchannel import is_backchannel, word_count


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


class SemanticInterruption(NeverInterrupt):
    """Pause, listen, then decide — for pipelines whose recognizer streams partials.

    When the user starts speaking during a reply, playback pauses. Then:

    * a partial transcript with ``min_words`` words (characters, for Chinese and Japanese) that
      is not a backchannel ("uh-huh", "yeah", "嗯", "对", "はい") → **interrupt**;
    * a backchannel, or nothing recognizable within ``window_ms`` → **resume** once the user
      stops (or at the window's end if they already stopped);
    * speech that goes on for ``max_speech_ms`` without a decisive partial → interrupt (a long
      utterance is not a backchannel, whatever the recognizer says).
    """

    def __init__(self, window_ms: int = 1200, min_words: int = 2, max_speech_ms: int = 1500,
                 languages: tuple[str, ...] = ("en", "zh", "ja")) -> None:
        if window_ms <= 0 or min_words < 1 or max_speech_ms <= 0:
            raise ConfigError("window_ms and max_speech_ms must be positive, min_words at least 1")
        self.window_s = window_ms / 1000
        self.min_words = min_words
        self.max_speech_s = max_speech_ms / 1000
        self.languages = languages
        self.reset()

    def reset(self) -> None:
        self._paused_at: float | None = None
        self._speaking = False
        self._backchannel = False

    def is_backchannel(self, text: str) -> bool:
        return is_backchannel(text, self.languages)

    def on_speech_started(self, audio_t: float) -> Decision:
        self._paused_at = audio_t
        self._speaking = True
        self._backchannel = False
        return Decision.PAUSE

    def on_voiced_audio(self, audio_t: float, voiced_s: float) -> Decision:
        if self._paused_at is None:
            return Decision.NONE
        if voiced_s >= self.max_speech_s - 1e-9:
            self._paused_at = None
            return Decision.INTERRUPT
        return self.on_tick(audio_t)

    def on_partial(self, text: str) -> Decision:
        if self._paused_at is None:
            return Decision.NONE
        if self.is_backchannel(text):
            self._backchannel = True
            return Decision.NONE
        self._backchannel = False
        if word_count(text) >= self.min_words:
            self._paused_at = None
            return Decision.INTERRUPT
        return Decision.NONE

    def on_speech_ended(self, audio_t: float) -> Decision:
        self._speaking = False
        if self._paused_at is None:
            return Decision.NONE
        if self._backchannel or audio_t - self._paused_at >= self.window_s:
            self._paused_at = None
            return Decision.RESUME
        return Decision.NONE

    def on_tick(self, audio_t: float) -> Decision:
        if self._paused_at is None or audio_t - self._paused_at < self.window_s:
            return Decision.NONE
        if self._speaking and not self._backchannel:
            return Decision.NONE  # still talking, nothing decisive yet: max_speech_ms decides
        self._paused_at = None
        return Decision.RESUME


def make_policy(name: str, **options: Any) -> InterruptionPolicy:
    """Policies by name, as the CLI selects them."""
    if name == "none":
        return NeverInterrupt()
    if name == "vad":
        return VADInterruption(**options)
    if name == "semantic":
        return SemanticInterruption(**options)
    raise ConfigError(f"unknown interruption policy {name!r}; choose 'vad', 'semantic' or 'none'")
