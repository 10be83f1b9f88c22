"""The DashScope *realtime* event protocol (``/api-ws/v1/realtime?model=...``), sans I/O.

Qwen3-ASR-Flash-Realtime (transcription only) and the Qwen-Omni realtime models (speech in,
speech and text out, tools) speak the same OpenAI-Realtime-style protocol: JSON text frames
``{"event_id": ..., "type": ..., ...}`` in both directions, audio as base64 inside
``input_audio_buffer.append`` (client) and ``response.audio.delta`` (server).

No sockets and no clock; one concern per module, all re-exported here:

* :mod:`._models` — :data:`MODELS`, what each model supports (output audio, voices, semantic
  VAD, tools, session limit, audio rates, which transcription event it sends), as data;
* :mod:`._session` — :class:`SessionConfig` (the ``session`` object of ``session.update``),
  :func:`parse_session`, and the session the server reports;
* :mod:`._check` — :func:`check_session`, the per-model validation (limits as a table) the
  emulator answers with an ``error`` event and the client runs before sending;
* :mod:`._events` — typed messages (attrs) for every client and server event;
* :mod:`._codec` — :func:`encode`, :func:`decode_client`, :func:`decode_server`;
* :mod:`._state` — the session phases and the events that move them, as a table;
* :mod:`._client` / :mod:`._server` — :class:`ClientRealtimeProtocol` and
  :class:`ServerRealtimeProtocol`, the two state machines.

Parsing is lenient where real peers differ (unknown fields are kept, ``null`` versus missing,
``pcm``/``pcm16`` spellings) and strict where a mistake would corrupt a conversation (wrong
types, unknown response ids, events out of order). Every failure is a
:class:`~voicekit_dashscope.errors.ProtocolError`; a refused client frame on the server side is
a :class:`~voicekit_dashscope.protocol._util.Violation`.
"""

from __future__ import annotations

from voicekit_dashscope.protocol._util import ProtocolError, Violation
from voicekit_dashscope.protocol.realtime._check import (
    IDLE_TIMEOUT_RANGE,
    NESTED_FORMAT_TYPES,
    OMNI_MODALITIES,
    OUTPUT_AUDIO_FORMATS,
    RANGES,
    SAMPLING_RANGES,
    TURN_RANGES,
    Range,
    SessionIssue,
    check_session,
)
from voicekit_dashscope.protocol.realtime._client import (
    MAX_RESPONSES_KEPT,
    ClientRealtimeProtocol,
    event_type,
)
from voicekit_dashscope.protocol.realtime._codec import (
    MAX_APPEND_BYTES,
    MAX_FRAME_CHARS,
    decode_client,
    decode_server,
    encode,
)
from voicekit_dashscope.protocol.realtime._events import (
    CLIENT_TYPES,
    RESPONSE_EVENTS,
    SERVER_TYPES,
    AudioAppend,
    AudioClear,
    AudioCleared,
    AudioCommit,
    AudioCommitted,
    AudioDelta,
    AudioDone,
    AudioTranscriptDelta,
    AudioTranscriptDone,
    ClientEvent,
    ContentPartAdded,
    ContentPartDone,
    ErrorEvent,
    ErrorInfo,
    Event,
    FunctionArgumentsDelta,
    FunctionArgumentsDone,
    IdMaker,
    ImageAppend,
    ItemCreate,
    ItemCreated,
    ItemTruncate,
    OutputItemAdded,
    OutputItemDone,
    RealtimeServerError,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ResponsePart,
    ServerEvent,
    SessionCreated,
    SessionFinish,
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TextDone,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    TranscriptionText,
    UnknownServerEvent,
)
from voicekit_dashscope.protocol.realtime._models import (
    ASR_EMOTIONS,
    ASR_LANGUAGES,
    MODELS,
    OMNI3_LANGUAGES,
    TRANSCRIPTION_DELTA,
    TRANSCRIPTION_TEXT,
    RealtimeModel,
    get_realtime_model,
)
from voicekit_dashscope.protocol.realtime._server import (
    OMNI_ONLY,
    ServerRealtimeProtocol,
)
from voicekit_dashscope.protocol.realtime._session import (
    UNSET,
    AudioFormat,
    SessionConfig,
    ToolSpec,
    Transcription,
    TurnDetection,
    default_session,
    effective_session,
    parse_session,
)
from voicekit_dashscope.protocol.realtime._state import (
    CLIENT_SENDS_IN,
    PHASE_EVENTS,
    TRANSITIONS,
    Phase,
    Role,
    next_phase,
)

# Earlier names of the one ProtocolError, kept for code that catches them.
RealtimeProtocolError = ProtocolError
RealtimeStateError = ProtocolError

__all__ = [
    "ASR_EMOTIONS",
    "ASR_LANGUAGES",
    "CLIENT_SENDS_IN",
    "CLIENT_TYPES",
    "IDLE_TIMEOUT_RANGE",
    "MAX_APPEND_BYTES",
    "MAX_FRAME_CHARS",
    "MAX_RESPONSES_KEPT",
    "MODELS",
    "NESTED_FORMAT_TYPES",
    "OMNI3_LANGUAGES",
    "OMNI_MODALITIES",
    "OMNI_ONLY",
    "OUTPUT_AUDIO_FORMATS",
    "PHASE_EVENTS",
    "RANGES",
    "RESPONSE_EVENTS",
    "SAMPLING_RANGES",
    "SERVER_TYPES",
    "TRANSCRIPTION_DELTA",
    "TRANSCRIPTION_TEXT",
    "TRANSITIONS",
    "TURN_RANGES",
    "UNSET",
    "AudioAppend",
    "AudioClear",
    "AudioCleared",
    "AudioCommit",
    "AudioCommitted",
    "AudioDelta",
    "AudioDone",
    "AudioFormat",
    "AudioTranscriptDelta",
    "AudioTranscriptDone",
    "ClientEvent",
    "ClientRealtimeProtocol",
    "ContentPartAdded",
    "ContentPartDone",
    "ErrorEvent",
    "ErrorInfo",
    "Event",
    "FunctionArgumentsDelta",
    "FunctionArgumentsDone",
    "IdMaker",
    "ImageAppend",
    "ItemCreate",
    "ItemCreated",
    "ItemTruncate",
    "OutputItemAdded",
    "OutputItemDone",
    "Phase",
    "ProtocolError",
    "Range",
    "RealtimeModel",
    "RealtimeProtocolError",
    "RealtimeServerError",
    "RealtimeStateError",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseCreated",
    "ResponseDone",
    "ResponsePart",
    "Role",
    "ServerEvent",
    "ServerRealtimeProtocol",
    "SessionConfig",
    "SessionCreated",
    "SessionFinish",
    "SessionFinished",
    "SessionIssue",
    "SessionUpdate",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "TextDelta",
    "TextDone",
    "ToolSpec",
    "Transcription",
    "TranscriptionCompleted",
    "TranscriptionDelta",
    "TranscriptionFailed",
    "TranscriptionText",
    "TurnDetection",
    "UnknownServerEvent",
    "Violation",
    "check_session",
    "decode_client",
    "decode_server",
    "default_session",
    "effective_session",
    "encode",
    "event_type",
    "get_realtime_model",
    "next_phase",
    "parse_session",
]
