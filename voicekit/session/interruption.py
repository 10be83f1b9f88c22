"""Barge-in: when may the user's speech stop a reply that is playing?

A policy sees what the user does while a reply plays and answers with a :class:`Decision`.
The session turns ``INTERRUPT`` into one ``cancel()`` of the reply's scope, ``PAUSE`` into
a paused player and ``RESUME`` into playback going on where it stopped.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, runtime_checkable

from voicekit.errors import ConfigError
from voicekit.session.backchannel import TurnEvidence, is_backchannel


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

    # Optional: ``on_final(text) -> Decision``, the final transcript of speech heard during a
    # reply (the session calls it when the policy has it; NeverInterrupt's answers NONE).


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

    def on_final(self, text: str) -> Decision:
        return Decision.NONE


class VADInterruption(NeverInterrupt):
    """Interrupt once the user has spoken ``min_speech_ms`` of voiced audio during a reply.

    Coughs, clicks and short noises stay under the threshold and leave the reply playing.

    With ``pause=True`` (the session's default policy) playback also *pauses* the moment the
    endpointer hears speech, so the assistant stops talking over the user at once instead of
    after ``min_speech_ms``; the interrupt decision itself is unchanged. If the sound stays
    under ``min_speech_ms`` — a cough, a click, a short "mm" — playback resumes where it paused
    once no voiced audio has come for ``resume_after_ms``, or when the speech ends, whichever is
    first.
    """

    def __init__(self, min_speech_ms: int = 300, *, pause: bool = False, resume_after_ms: int = 300) -> None:
        if min_speech_ms < 0 or resume_after_ms < 0:
            raise ConfigError("min_speech_ms and resume_after_ms must be >= 0")
        self.min_speech_s = min_speech_ms / 1000
        self.pause = pause
        self.resume_after_s = resume_after_ms / 1000
        self.reset()

    def reset(self) -> None:
        self._paused = False
        self._voiced_s = 0.0  # the longest voiced span seen in the current speech
        self._grew_at: float | None = None  # audio time it last grew

    def on_speech_started(self, audio_t: float) -> Decision:
        if self.min_speech_s == 0:
            return Decision.INTERRUPT
        self._voiced_s = 0.0
        self._grew_at = None
        if self.pause:
            self._paused = True
            return Decision.PAUSE
        return Decision.NONE

    def on_voiced_audio(self, audio_t: float, voiced_s: float) -> Decision:
        if voiced_s >= self.min_speech_s - 1e-9:
            self._paused = False
            return Decision.INTERRUPT
        if not self.pause:
            return Decision.NONE
        if voiced_s > self._voiced_s or self._grew_at is None:
            self._voiced_s = voiced_s
            self._grew_at = audio_t
            if not self._paused:  # more sound after a resume: quiet again while it lasts
                self._paused = True
                return Decision.PAUSE
            return Decision.NONE
        if self._paused and audio_t - self._grew_at >= self.resume_after_s - 1e-9:
            self._paused = False
            return Decision.RESUME
        return Decision.NONE

    def on_speech_ended(self, audio_t: float) -> Decision:
        if self._paused:
            self._paused = False
            return Decision.RESUME
        return Decision.NONE


class SemanticInterruption(NeverInterrupt):
    """Pause, listen, then decide on stable evidence — for pipelines whose recognizer streams
    partials.

    When the user starts speaking during a reply, playback pauses. The first partials of a short
    sound are often garbage ("Thou wilt" for "Okay."), so no single partial decides:

    * **interrupt** when ``stable_partials`` partials in a row each have ``min_words`` words
      (characters, for Chinese and Japanese) and are not a backchannel, and the user has already
      spoken ``min_speech_ms`` of voiced audio; or when the final transcript has ``min_words``
      words and is not a backchannel; or when the speech goes on for ``max_speech_ms`` (a long
      utterance is not a backchannel, whatever the recognizer says);
    * **resume** when the final transcript is a backchannel ("uh-huh", "yeah", "嗯", "对",
      "はい") or too short to be a request; or, if no final comes, ``window_ms`` after the
      speech ended (so a recognizer that stays silent cannot hold the reply forever).

    The session passes finals through :meth:`on_final`; see :class:`voicekit.session.backchannel.TurnEvidence`.
    """

    def __init__(self, window_ms: int = 1200, min_words: int = 2, max_speech_ms: int = 1500,
                 languages: tuple[str, ...] = ("en", "zh", "ja"), stable_partials: int = 2,
                 min_speech_ms: int = 500) -> None:
        if window_ms <= 0 or min_words < 1 or max_speech_ms <= 0 or stable_partials < 1 or min_speech_ms < 0:
            raise ConfigError("window_ms and max_speech_ms must be positive, min_words and stable_partials "
                              "at least 1, min_speech_ms at least 0")
        self.window_s = window_ms / 1000
        self.min_words = min_words
        self.max_speech_s = max_speech_ms / 1000
        self.min_speech_s = min_speech_ms / 1000
        self.languages = languages
        self.evidence = TurnEvidence(min_words, stable_partials, languages)
        self.reset()

    def reset(self) -> None:
        self._listening = False  # speech during the reply, not decided yet
        self._speaking = False
        self._ended_at: float | None = None  # when that speech ended (audio time)
        self._voiced_s = 0.0
        self.evidence.reset()

    def is_backchannel(self, text: str) -> bool:
        """Not a turn: the session drops a final said over a reply that this policy let play on —
        a backchannel, or too short to be a request (a garbled "uh-huh" heard as "Other.")."""
        return is_backchannel(text, self.languages) or not self.evidence.decisive(text)

    def _decide(self, decision: Decision) -> Decision:
        if decision is not Decision.NONE:
            self._listening = False
            self._ended_at = None
        return decision

    def on_speech_started(self, audio_t: float) -> Decision:
        self._speaking = True
        self._ended_at = None
        self._voiced_s = 0.0
        self.evidence.reset()
        self._listening = True
        return Decision.PAUSE

    def on_voiced_audio(self, audio_t: float, voiced_s: float) -> Decision:
        if not self._listening:
            return Decision.NONE
        self._voiced_s = voiced_s
        if voiced_s >= self.max_speech_s - 1e-9:
            return self._decide(Decision.INTERRUPT)
        return Decision.NONE

    def on_partial(self, text: str) -> Decision:
        if not self._listening:
            return Decision.NONE
        stable = self.evidence.partial(text)
        if stable and self._voiced_s >= self.min_speech_s - 1e-9:
            return self._decide(Decision.INTERRUPT)
        return Decision.NONE

    def on_final(self, text: str) -> Decision:
        """The final transcript of the speech heard during the reply."""
        if not self._listening:
            return Decision.NONE
        if self.evidence.final(text):
            return self._decide(Decision.INTERRUPT)
        if self._speaking:  # another utterance already began: keep listening to it
            return Decision.NONE
        return self._decide(Decision.RESUME)

    def on_speech_ended(self, audio_t: float) -> Decision:
        self._speaking = False
        if self._listening:
            self._ended_at = audio_t  # wait for the final (or the window) before resuming
        return Decision.NONE

    def on_tick(self, audio_t: float) -> Decision:
        if self._listening and self._ended_at is not None and audio_t - self._ended_at >= self.window_s - 1e-9:
            return self._decide(Decision.RESUME)
        return Decision.NONE


def make_policy(name: str, **options: Any) -> InterruptionPolicy:
    """Policies by name, as the CLI selects them."""
    if name == "none":
        return NeverInterrupt()
    if name == "vad":
        return VADInterruption(**{"pause": True, **options})
    if name == "semantic":
        return SemanticInterruption(**options)
    raise ConfigError(f"unknown interruption policy {name!r}; choose 'vad', 'semantic' or 'none'")
