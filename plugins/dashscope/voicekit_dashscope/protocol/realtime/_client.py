"""The client's state machine for one realtime session: :class:`ClientRealtimeProtocol`."""

from __future__ import annotations

from typing import Any

import attrs

from voicekit.errors import ConfigError
from voicekit_dashscope.protocol._util import ProtocolError
from voicekit_dashscope.protocol.realtime._check import check_session
from voicekit_dashscope.protocol.realtime._codec import MAX_APPEND_BYTES, decode_server, encode, encode_audio_append
from voicekit_dashscope.protocol.realtime._events import (
    RESPONSE_EVENTS,
    AudioAppend,
    AudioCommit,
    ClientEvent,
    ErrorEvent,
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
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
)
from voicekit_dashscope.protocol.realtime._models import RealtimeModel
from voicekit_dashscope.protocol.realtime._session import SessionConfig
from voicekit_dashscope.protocol.realtime._state import CLIENT_SENDS_IN, Phase, Role, next_phase

MAX_RESPONSES_KEPT = 64  # response statuses remembered; older ones are forgotten in halves


def event_type(event: Any) -> str:
    """The wire name of an event (or its class name), for messages."""
    return str(getattr(event, "type", None) or getattr(event, "TYPE", type(event).__name__))


class ClientRealtimeProtocol:
    """The client's view of one realtime session.

    :meth:`send` encodes a client event after checking it is allowed now; :meth:`receive` decodes
    a server frame and checks it fits what came before. Both raise :class:`ProtocolError` for
    malformed frames and out-of-order traffic; :meth:`send` raises :class:`ConfigError` for a
    ``session.update`` the model does not accept.
    """

    def __init__(self, model: RealtimeModel, *, ids: IdMaker | None = None) -> None:
        self.model = model
        self.ids = ids or IdMaker()
        self.phase = Phase.CONNECTING
        self.session: dict[str, Any] = {}
        self.session_id: str | None = None
        self.config = SessionConfig()  # what we asked for so far
        self.active_response: str | None = None
        self.responses: dict[str, str] = {}  # id -> last status ("in_progress", "completed", ...)
        self.cancel_event_ids: set[str] = set()
        self.updates_pending = 0
        self.audio_bytes = 0

    @property
    def manual(self) -> bool:
        return self.config.turn_detection is None

    # -- client → server

    def send(self, event: ClientEvent) -> str:
        if self.phase not in CLIENT_SENDS_IN:
            when = "before session.created arrives" if self.phase is Phase.CONNECTING else "after session.finish"
            raise ProtocolError(f"cannot send {event.TYPE} {when}")
        if event.event_id is None:
            event = attrs.evolve(event, event_id=self.ids("event"))
        self._check_send(event)
        self.phase = next_phase(Role.CLIENT, self.phase, event) or self.phase
        return encode(event)

    def append_audio(self, pcm: bytes) -> str:
        """``send(AudioAppend(audio=pcm))``, the same checks and frame, at a fraction of the cost."""
        if self.phase not in CLIENT_SENDS_IN:
            return self.send(AudioAppend(audio=pcm))  # raises the same error
        if len(pcm) > MAX_APPEND_BYTES:
            raise ProtocolError(f"an audio append may carry at most 15 MiB, not {len(pcm)} bytes")
        self.audio_bytes += len(pcm)
        return encode_audio_append(self.ids("event"), pcm)

    def _check_send(self, event: ClientEvent) -> None:
        match event:
            case SessionUpdate():
                issues = check_session(self.model, event.session)
                if issues:
                    raise ConfigError("; ".join(f"{i.param}: {i.message}" for i in issues))
                self.config = self.config.merged(event.session)
                self.updates_pending += 1
            case AudioAppend():
                if len(event.audio) > MAX_APPEND_BYTES:
                    raise ProtocolError(f"an audio append may carry at most 15 MiB, not {len(event.audio)} bytes")
                self.audio_bytes += len(event.audio)
            case AudioCommit() if not self.manual:
                raise ProtocolError("input_audio_buffer.commit is for manual mode (turn_detection null); "
                                    "with server VAD the server commits by itself")
            case ResponseCancel():
                if self.active_response is None:
                    raise ProtocolError("response.cancel with no response in progress")
                assert event.event_id is not None
                self.cancel_event_ids.add(event.event_id)
            case ResponseCreate() | ItemCreate() | ItemTruncate() | ImageAppend() if not self.model.is_omni:
                raise ProtocolError(f"{event.TYPE} is an Omni event; {self.model.name} only transcribes")

    # -- server → client

    def receive(self, frame: str | bytes) -> ServerEvent:
        event = decode_server(frame)
        if self.phase is Phase.CONNECTING and not isinstance(event, (SessionCreated, ErrorEvent)):
            raise ProtocolError(f"expected session.created first, got {event_type(event)}")
        if self.phase is Phase.FINISHED:
            raise ProtocolError(f"{event_type(event)} after session.finished")
        phase = next_phase(Role.SERVER, self.phase, event)
        if phase is None:
            raise ProtocolError("a second session.created on one connection")
        if isinstance(event, SessionFinished) and self.phase is not Phase.FINISHING:
            raise ProtocolError("session.finished without session.finish")
        self.phase = phase
        self._track(event)
        return event

    def _track(self, event: ServerEvent) -> None:
        match event:
            case SessionCreated():
                self.session = dict(event.session)
                sid = self.session.get("id")
                self.session_id = sid if isinstance(sid, str) else None
            case SessionUpdated():
                self.session = dict(event.session)
                self.updates_pending = max(0, self.updates_pending - 1)
            case ResponseCreated():
                self._response_created(event.response_id)
            case ResponseDone():
                self._response_done(event)
            case ErrorEvent():
                self.cancel_event_ids.discard(event.error.event_id or "")
            case _ if isinstance(event, RESPONSE_EVENTS) and event.response_id not in self.responses:
                raise ProtocolError(f"{event_type(event)} for unknown response {event.response_id}")

    def _response_created(self, rid: str) -> None:
        if self.active_response is not None:
            raise ProtocolError(f"response {rid} created while {self.active_response} is still in progress")
        self.active_response = rid
        self.responses[rid] = "in_progress"

    def _response_done(self, event: ResponseDone) -> None:
        rid = event.response_id
        if rid not in self.responses:
            raise ProtocolError(f"response.done for unknown response {rid}")
        self.responses[rid] = event.status or "completed"
        if self.active_response == rid:
            self.active_response = None
        if len(self.responses) > MAX_RESPONSES_KEPT:  # keep memory flat on long sessions
            for old in list(self.responses)[:-MAX_RESPONSES_KEPT // 2]:
                del self.responses[old]

    def is_stale(self, event: ServerEvent) -> bool:
        """True for a response event of a response that is no longer in progress (e.g. cancelled)."""
        rid = getattr(event, "response_id", None)
        return isinstance(event, RESPONSE_EVENTS) and rid != self.active_response
