"""Everything a session does, as frozen timestamped values.

``t`` is seconds on the session's trio clock since the session started (virtual under
``MockClock``), so a timeline of events is exact in tests. Audio positions (``audio_t``,
``start``, ``end``) are seconds of input audio.
"""

from __future__ import annotations

from typing import Any

import attrs

from voicekit.asr.base import Word

__all__ = [
    "ErrorEvent",
    "Event",
    "IntentMatched",
    "ReplyFinished",
    "ReplyInterrupted",
    "ReplyStarted",
    "ReplyText",
    "SessionEnded",
    "SessionStarted",
    "SpeechEnded",
    "SpeechStarted",
    "Transcript",
    "TurnEnded",
    "WarningEvent",
]


@attrs.frozen(kw_only=True)
class Event:
    t: float
    turn_id: int | None = None

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=True)
        d = {"event": self.kind, **d}
        return d


@attrs.frozen(kw_only=True)
class SessionStarted(Event):
    session_id: str
    asr: str
    vad: str
    tts: str | None
    assistant: str | None


@attrs.frozen(kw_only=True)
class SessionEnded(Event):
    reason: str = "input ended"


@attrs.frozen(kw_only=True)
class SpeechStarted(Event):
    audio_t: float


@attrs.frozen(kw_only=True)
class SpeechEnded(Event):
    audio_t: float
    duration: float


@attrs.frozen(kw_only=True)
class Transcript(Event):
    text: str
    is_final: bool
    utterance_id: int = 0
    start: float | None = None
    end: float | None = None
    words: tuple[Word, ...] = ()
    language: str | None = None
    emotion: str | None = None
    speaker: str | None = None


@attrs.frozen(kw_only=True)
class TurnEnded(Event):
    text: str


@attrs.frozen(kw_only=True)
class IntentMatched(Event):
    intent: str
    slots: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ReplyStarted(Event):
    text: str


@attrs.frozen(kw_only=True)
class ReplyText(Event):
    """A piece of reply text, as a streaming handler produces it."""

    text: str


@attrs.frozen(kw_only=True)
class ReplyFinished(Event):
    text: str
    samples_played: int
    sample_rate: int


@attrs.frozen(kw_only=True)
class ReplyInterrupted(Event):
    """The user barged in: ``samples_played`` is exactly what reached the sink."""

    text: str
    samples_played: int
    sample_rate: int
    heard_text: str = ""


@attrs.frozen(kw_only=True)
class WarningEvent(Event):
    """Something went wrong that the session survived (``count`` times): dropped audio, a slow sink."""

    where: str
    message: str
    count: int = 1


@attrs.frozen(kw_only=True)
class ErrorEvent(Event):
    """An error, as data: ``where`` it happened, one line for a person, and the exception's type name."""

    where: str
    message: str
    error_type: str


_KINDS: dict[type, str] = {
    SessionStarted: "session_started",
    SessionEnded: "session_ended",
    SpeechStarted: "speech_started",
    SpeechEnded: "speech_ended",
    Transcript: "transcript",
    TurnEnded: "turn_ended",
    IntentMatched: "intent_matched",
    ReplyStarted: "reply_started",
    ReplyText: "reply_text",
    ReplyFinished: "reply_finished",
    ReplyInterrupted: "reply_interrupted",
    WarningEvent: "warning",
    ErrorEvent: "error",
}

# The names these two events had before: they shadow the built-ins ``Warning`` and ``Error`` in
# ``from voicekit.events import *`` style code, so they are kept only as deprecated aliases (and
# left out of ``__all__``). Write ``WarningEvent`` and ``ErrorEvent``.
Warning = WarningEvent  # noqa: A001
Error = ErrorEvent
