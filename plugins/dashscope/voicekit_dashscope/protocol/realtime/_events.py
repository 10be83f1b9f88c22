"""The realtime protocol's messages: one frozen attrs class per client and server event.

Every class has its wire name in ``TYPE``; :data:`CLIENT_TYPES` and :data:`SERVER_TYPES` map wire
names to classes for the decoder. The server's ``error`` event turns into a
:class:`RealtimeServerError` with :meth:`ErrorInfo.exception`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from voicekit_dashscope.errors import DashScopeError
from voicekit_dashscope.protocol._util import dict_of
from voicekit_dashscope.protocol.realtime._models import TRANSCRIPTION_DELTA, TRANSCRIPTION_TEXT
from voicekit_dashscope.protocol.realtime._session import SessionConfig


class RealtimeServerError(DashScopeError):
    """The server answered with an ``error`` event. ``code``/``param`` are the server's."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 error_type: str | None = None, event_id: str | None = None) -> None:
        where = f" (parameter {param})" if param else ""
        super().__init__(f"DashScope realtime error {code or error_type or ''}{where}: {message}",
                         code=code, server_message=message)
        self.param = param
        self.error_type = error_type
        self.event_id = event_id


_ALNUM = string.ascii_letters + string.digits


class IdMaker:
    """Ids in the service's shape (``event_`` + 21 letters and digits). Seedable for tests.

    Each id is a random 13-character stem drawn once per maker, then a counter in 8 hex digits:
    unique within a maker, unpredictable across makers, and cheap (one id per audio append)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._stem = ""
        self._n = 0xFFFFFFFF  # draws a stem at the first call

    def __call__(self, prefix: str) -> str:
        self._n += 1
        if self._n > 0xFFFFFFFF:
            self._stem = "".join(self._rng.choices(_ALNUM, k=13))
            self._n = 0
        return f"{prefix}_{self._stem}{self._n:08x}"


# ---- the base of every event


@attrs.frozen(kw_only=True)
class Event:
    """One realtime event; ``TYPE`` is its wire name, ``event_id`` is filled in when sent."""

    TYPE: ClassVar[str] = ""
    event_id: str | None = None


# ---- client events


@attrs.frozen(kw_only=True)
class SessionUpdate(Event):
    TYPE: ClassVar[str] = "session.update"
    session: SessionConfig


@attrs.frozen(kw_only=True)
class AudioAppend(Event):
    TYPE: ClassVar[str] = "input_audio_buffer.append"
    audio: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True)
class AudioCommit(Event):
    TYPE: ClassVar[str] = "input_audio_buffer.commit"


@attrs.frozen(kw_only=True)
class AudioClear(Event):
    TYPE: ClassVar[str] = "input_audio_buffer.clear"


@attrs.frozen(kw_only=True)
class ImageAppend(Event):
    TYPE: ClassVar[str] = "input_image_buffer.append"
    image: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True)
class ResponseCreate(Event):
    TYPE: ClassVar[str] = "response.create"
    instructions: str | None = None
    modalities: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class ResponseCancel(Event):
    TYPE: ClassVar[str] = "response.cancel"


@attrs.frozen(kw_only=True)
class ItemCreate(Event):
    """``conversation.item.create``; documented for ``function_call_output`` items."""

    TYPE: ClassVar[str] = "conversation.item.create"
    item: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)

    @classmethod
    def function_output(cls, call_id: str, output: str, *, item_id: str | None = None,
                        event_id: str | None = None) -> ItemCreate:
        item: dict[str, Any] = {"type": "function_call_output", "call_id": call_id, "output": output}
        if item_id is not None:
            item = {"id": item_id, **item}
        return cls(item=item, event_id=event_id)


@attrs.frozen(kw_only=True)
class ItemTruncate(Event):
    """OpenAI's ``conversation.item.truncate``. **Not** in DashScope's documented event list; sent
    only when the client is configured to, and accepted by the emulator only when told to."""

    TYPE: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    content_index: int = 0
    audio_end_ms: int = 0


@attrs.frozen(kw_only=True)
class SessionFinish(Event):
    TYPE: ClassVar[str] = "session.finish"


ClientEvent = (SessionUpdate | AudioAppend | AudioCommit | AudioClear | ImageAppend | ResponseCreate
               | ResponseCancel | ItemCreate | ItemTruncate | SessionFinish)

# ---- server events


@attrs.frozen
class ErrorInfo:
    type: str = "invalid_request_error"
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "code": self.code, "message": self.message, "param": self.param,
                "event_id": self.event_id}

    def exception(self) -> RealtimeServerError:
        return RealtimeServerError(self.message, code=self.code, param=self.param, error_type=self.type,
                                   event_id=self.event_id)


@attrs.frozen(kw_only=True)
class ErrorEvent(Event):
    TYPE: ClassVar[str] = "error"
    error: ErrorInfo


@attrs.frozen(kw_only=True)
class SessionCreated(Event):
    TYPE: ClassVar[str] = "session.created"
    session: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)


@attrs.frozen(kw_only=True)
class SessionUpdated(Event):
    TYPE: ClassVar[str] = "session.updated"
    session: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)


@attrs.frozen(kw_only=True)
class SessionFinished(Event):
    TYPE: ClassVar[str] = "session.finished"


@attrs.frozen(kw_only=True)
class SpeechStarted(Event):
    TYPE: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


@attrs.frozen(kw_only=True)
class SpeechStopped(Event):
    TYPE: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


@attrs.frozen(kw_only=True)
class AudioCommitted(Event):
    TYPE: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


@attrs.frozen(kw_only=True)
class AudioCleared(Event):
    TYPE: ClassVar[str] = "input_audio_buffer.cleared"


@attrs.frozen(kw_only=True)
class ItemCreated(Event):
    TYPE: ClassVar[str] = "conversation.item.created"
    item: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)
    previous_item_id: str | None = None


@attrs.frozen(kw_only=True)
class TranscriptionText(Event):
    """Partial user transcript (Qwen3-ASR): ``text`` is confirmed, ``stash`` still tentative."""

    TYPE: ClassVar[str] = TRANSCRIPTION_TEXT
    item_id: str
    content_index: int = 0
    text: str = ""
    stash: str = ""
    language: str | None = None
    emotion: str | None = None

    @property
    def display(self) -> str:
        return self.text + self.stash


@attrs.frozen(kw_only=True)
class TranscriptionDelta(TranscriptionText):
    """The Omni models' name for the same partial-transcript event."""

    TYPE: ClassVar[str] = TRANSCRIPTION_DELTA


@attrs.frozen(kw_only=True)
class TranscriptionCompleted(Event):
    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int = 0
    transcript: str = ""
    language: str | None = None
    emotion: str | None = None


@attrs.frozen(kw_only=True)
class TranscriptionFailed(Event):
    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int = 0
    error: Mapping[str, Any] = attrs.field(factory=dict, converter=dict_of, hash=False)


@attrs.frozen(kw_only=True)
class ResponseCreated(Event):
    TYPE: ClassVar[str] = "response.created"
    response: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)

    @property
    def response_id(self) -> str:
        return str(self.response["id"])


@attrs.frozen(kw_only=True)
class ResponseDone(Event):
    TYPE: ClassVar[str] = "response.done"
    response: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)

    @property
    def response_id(self) -> str:
        return str(self.response["id"])

    @property
    def status(self) -> str:
        return str(self.response.get("status") or "")


@attrs.frozen(kw_only=True)
class ResponsePart(Event):
    response_id: str
    item_id: str | None = None
    output_index: int = 0
    content_index: int = 0


@attrs.frozen(kw_only=True)
class OutputItemAdded(Event):
    TYPE: ClassVar[str] = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)


@attrs.frozen(kw_only=True)
class OutputItemDone(OutputItemAdded):
    TYPE: ClassVar[str] = "response.output_item.done"


@attrs.frozen(kw_only=True)
class ContentPartAdded(ResponsePart):
    TYPE: ClassVar[str] = "response.content_part.added"
    part: Mapping[str, Any] = attrs.field(factory=dict, converter=dict_of, hash=False)


@attrs.frozen(kw_only=True)
class ContentPartDone(ContentPartAdded):
    TYPE: ClassVar[str] = "response.content_part.done"


@attrs.frozen(kw_only=True)
class AudioTranscriptDelta(ResponsePart):
    TYPE: ClassVar[str] = "response.audio_transcript.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class AudioTranscriptDone(ResponsePart):
    TYPE: ClassVar[str] = "response.audio_transcript.done"
    transcript: str = ""


@attrs.frozen(kw_only=True)
class AudioDelta(ResponsePart):
    TYPE: ClassVar[str] = "response.audio.delta"
    delta: bytes = attrs.field(default=b"", repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True)
class AudioDone(ResponsePart):
    TYPE: ClassVar[str] = "response.audio.done"


@attrs.frozen(kw_only=True)
class TextDelta(ResponsePart):
    TYPE: ClassVar[str] = "response.text.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class TextDone(ResponsePart):
    TYPE: ClassVar[str] = "response.text.done"
    text: str = ""


@attrs.frozen(kw_only=True)
class FunctionArgumentsDelta(ResponsePart):
    TYPE: ClassVar[str] = "response.function_call_arguments.delta"
    call_id: str = ""
    delta: str = ""


@attrs.frozen(kw_only=True)
class FunctionArgumentsDone(ResponsePart):
    TYPE: ClassVar[str] = "response.function_call_arguments.done"
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@attrs.frozen(kw_only=True)
class UnknownServerEvent(Event):
    """A server event type this module does not know; kept so a newer server does not break us."""

    type: str
    raw: Mapping[str, Any] = attrs.field(converter=dict_of, hash=False)


ServerEvent = (ErrorEvent | SessionCreated | SessionUpdated | SessionFinished | SpeechStarted | SpeechStopped
               | AudioCommitted | AudioCleared | ItemCreated | TranscriptionText | TranscriptionDelta
               | TranscriptionCompleted | TranscriptionFailed | ResponseCreated | ResponseDone | OutputItemAdded
               | OutputItemDone | ContentPartAdded | ContentPartDone | AudioTranscriptDelta | AudioTranscriptDone
               | AudioDelta | AudioDone | TextDelta | TextDone | FunctionArgumentsDelta | FunctionArgumentsDone
               | UnknownServerEvent)

RESPONSE_EVENTS = (OutputItemAdded, OutputItemDone, ContentPartAdded, ContentPartDone, AudioTranscriptDelta,
                   AudioTranscriptDone, AudioDelta, AudioDone, TextDelta, TextDone, FunctionArgumentsDelta,
                   FunctionArgumentsDone)

CLIENT_TYPES: dict[str, type[Event]] = {c.TYPE: c for c in (
    SessionUpdate, AudioAppend, AudioCommit, AudioClear, ImageAppend, ResponseCreate, ResponseCancel,
    ItemCreate, ItemTruncate, SessionFinish)}
SERVER_TYPES: dict[str, type[Event]] = {c.TYPE: c for c in (
    ErrorEvent, SessionCreated, SessionUpdated, SessionFinished, SpeechStarted, SpeechStopped, AudioCommitted,
    AudioCleared, ItemCreated, TranscriptionText, TranscriptionDelta, TranscriptionCompleted,
    TranscriptionFailed, ResponseCreated, ResponseDone, OutputItemAdded, OutputItemDone, ContentPartAdded,
    ContentPartDone, AudioTranscriptDelta, AudioTranscriptDone, AudioDelta, AudioDone, TextDelta, TextDone,
    FunctionArgumentsDelta, FunctionArgumentsDone)}

