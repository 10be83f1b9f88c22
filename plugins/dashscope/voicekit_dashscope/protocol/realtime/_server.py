"""The server's state machine for one realtime session: :class:`ServerRealtimeProtocol`.

The emulator runs one per connection. A client frame the server refuses does not raise: it
becomes a :class:`Violation` holding the ``error`` event to answer with, in the service's words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from voicekit_dashscope.protocol._util import ProtocolError, Violation
from voicekit_dashscope.protocol.realtime._check import check_session
from voicekit_dashscope.protocol.realtime._codec import decode_client, encode
from voicekit_dashscope.protocol.realtime._events import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    AudioCommitted,
    ClientEvent,
    ErrorEvent,
    ErrorInfo,
    IdMaker,
    ImageAppend,
    ItemCreate,
    ItemTruncate,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SessionCreated,
    SessionFinish,
    SessionUpdate,
)
from voicekit_dashscope.protocol.realtime._models import RealtimeModel
from voicekit_dashscope.protocol.realtime._session import (
    UNSET,
    SessionConfig,
    TurnDetection,
    default_session,
    effective_session,
)
from voicekit_dashscope.protocol.realtime._state import Phase, Role, next_phase

OMNI_ONLY = (ResponseCreate, ResponseCancel, ItemCreate, ImageAppend)  # refused by the ASR-only model


class ServerRealtimeProtocol:
    """The server's view of one realtime session (used by the emulator).

    :meth:`receive` returns the decoded client event, or a :class:`Violation` holding the
    ``error`` event to send back; it applies accepted ``session.update`` s to :attr:`config`.
    :meth:`send` encodes server events (filling ids) and tracks the response in progress.
    """

    def __init__(self, model: RealtimeModel, *, ids: IdMaker | None = None, accept_truncate: bool = False,
                 session_finish: bool = True, lock_format_after_audio: bool = True) -> None:
        self.model = model
        self.ids = ids or IdMaker()
        self.accept_truncate = accept_truncate
        self.session_finish = session_finish
        self.lock_format_after_audio = lock_format_after_audio
        self.phase = Phase.CONNECTING
        self.session_id = self.ids("sess")
        self.session: dict[str, Any] = default_session(model, self.session_id)
        self.config = SessionConfig(turn_detection=TurnDetection("server_vad", model.default_threshold,
                                                                 model.default_silence_ms))
        self.active_response: str | None = None
        self.audio_seen = False
        self.buffer_bytes = 0
        self._handlers: dict[type[Any], Callable[[Any], Violation[ErrorEvent] | None]] = {
            SessionUpdate: self._session_update, AudioAppend: self._audio_append,
            AudioCommit: self._audio_commit, AudioClear: self._audio_clear,
            ResponseCancel: self._response_cancel, ResponseCreate: self._response_create,
            SessionFinish: self._session_finish}

    # -- client → server

    def _error(self, message: str, *, param: str | None = None, code: str = "invalid_value",
               event_id: str | None = None) -> Violation[ErrorEvent]:
        return Violation(ErrorEvent(error=ErrorInfo("invalid_request_error", code, message, param, event_id),
                                    event_id=self.ids("event")))

    def receive(self, frame: str | bytes) -> ClientEvent | Violation[ErrorEvent]:
        try:
            event = decode_client(frame)
        except ProtocolError as exc:
            text = str(exc)
            code = "invalid_event_type" if text.startswith("invalid event type") else "invalid_request"
            return self._error(text, code=code)
        refusal = self._refusal(event)
        if refusal is None:
            handler = self._handlers.get(type(event))
            refusal = handler(event) if handler is not None else None
        return event if refusal is None else refusal

    def _refusal(self, event: ClientEvent) -> Violation[ErrorEvent] | None:
        """Refusals that depend only on the event's type, the model and the phase."""
        eid = event.event_id
        if isinstance(event, ItemTruncate) and not self.accept_truncate:
            return self._error(f"invalid event type {event.TYPE!r}", code="invalid_event_type", event_id=eid)
        if self.phase in (Phase.FINISHING, Phase.FINISHED):
            return self._error(f"{event.TYPE} after session.finish", code="invalid_state", event_id=eid)
        if ((not self.model.is_omni and isinstance(event, OMNI_ONLY))
                or (isinstance(event, SessionFinish) and not self.session_finish)):
            return self._error(f"invalid event type {event.TYPE!r}", code="invalid_event_type", event_id=eid)
        return None

    def _session_update(self, event: SessionUpdate) -> Violation[ErrorEvent] | None:
        eid = event.event_id
        issues = check_session(self.model, event.session)
        if issues:
            i = issues[0]
            return self._error(i.message, param=i.param, code=i.code, event_id=eid)
        if self.audio_seen and self.lock_format_after_audio and self._changes_format(event.session):
            return self._error("the input audio format and turn_detection cannot change after audio "
                               "was sent; set them in the first session.update", param="session", event_id=eid)
        self.config = self.config.merged(event.session)
        self.session = effective_session(self.model, self.session, event.session)
        return None

    def _changes_format(self, u: SessionConfig) -> bool:
        return (u.input_format is not None or u.sample_rate is not None
                or (u.input_audio_format is not None and u.input_audio_format != self.config.input_audio_format)
                or (u.turn_detection is not UNSET and u.turn_detection != self.config.turn_detection))

    def _audio_append(self, event: AudioAppend) -> None:
        self.audio_seen = True
        self.buffer_bytes += len(event.audio)

    def _audio_commit(self, event: AudioCommit) -> Violation[ErrorEvent] | None:
        if not self.config.manual:
            return self._error("input_audio_buffer.commit is not available in server VAD mode",
                               code="invalid_state", event_id=event.event_id)
        if self.buffer_bytes == 0:
            return self._error("Error committing input audio buffer: the buffer is empty.",
                               code="input_audio_buffer_commit_empty", event_id=event.event_id)
        self.buffer_bytes = 0
        return None

    def _audio_clear(self, event: AudioClear) -> None:
        self.buffer_bytes = 0

    def _response_cancel(self, event: ResponseCancel) -> Violation[ErrorEvent] | None:
        if self.active_response is None:
            return self._error("Cancellation failed: no active response found.",
                               code="response_cancel_not_active", event_id=event.event_id)
        return None

    def _response_create(self, event: ResponseCreate) -> Violation[ErrorEvent] | None:
        if self.active_response is not None:
            return self._error(f"Conversation already has an active response {self.active_response}",
                               code="conversation_already_has_active_response", event_id=event.event_id)
        return None

    def _session_finish(self, event: SessionFinish) -> Violation[ErrorEvent] | None:
        phase = next_phase(Role.CLIENT, self.phase, event)
        if phase is None:
            return self._error(f"{event.TYPE} before session.created", code="invalid_state",
                               event_id=event.event_id)
        self.phase = phase
        return None

    # -- server → client

    def send(self, event: ServerEvent) -> str:
        if event.event_id is None:
            event = attrs.evolve(event, event_id=self.ids("event"))
        phase = next_phase(Role.SERVER, self.phase, event)
        if phase is None:
            raise ProtocolError(f"{event.TYPE} cannot be sent while the session is {self.phase.value}"
                                + (" (it was already sent)" if isinstance(event, SessionCreated) else ""))
        match event:
            case ResponseCreated():
                if self.active_response is not None:
                    raise ProtocolError("a response is already in progress")
                self.active_response = event.response_id
            case ResponseDone() if self.active_response == event.response_id:
                self.active_response = None
            case AudioCommitted():
                self.buffer_bytes = 0
        self.phase = phase
        return encode(event)
