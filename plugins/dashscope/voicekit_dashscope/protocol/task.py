"""The DashScope WebSocket *task* protocol (``/api-ws/v1/inference``), sans I/O.

Used by Fun-ASR and Paraformer real-time recognition. One connection carries a sequence of
tasks; each task is ``run-task`` → ``task-started`` → binary audio and ``result-generated`` events
→ ``finish-task`` → ``task-finished`` (or ``task-failed`` at any point, after which the server
closes the connection). JSON text frames are ``{"header": {...}, "payload": {...}}``; client
commands carry ``header.action``, server events ``header.event``. Audio goes in binary frames.

This module has no sockets and no clock: typed messages (attrs), :func:`encode`,
:func:`decode_client` / :func:`decode_server`, and two state machines —
:class:`ClientTaskProtocol` and :class:`ServerTaskProtocol` — that reject traffic in the wrong
order. The trio client and the emulator are thin shells around it.

Parsing is lenient where the real peers differ (unknown fields, dashed or undashed task ids,
``null`` versus missing) and strict where a mistake would corrupt a transcript (wrong task id,
wrong types, events out of order). Every failure is a :class:`ProtocolError`; a client frame
the server refuses is a :class:`Violation` (a ``task-failed``, then close).
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from voicekit_dashscope.protocol._util import Fields, ProtocolError
from voicekit_dashscope.protocol._util import Violation as Violation  # re-exported: the one Violation

AUDIO_FORMATS = ("pcm", "wav", "mp3", "opus", "speex", "aac", "amr")
MAX_FRAME_CHARS = 1 << 20  # a control frame larger than 1 MiB is not a real DashScope frame
_TASK_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,127}$")
INVALID_ACTION_RUN_TASK = "Invalid action('run-task')! Please follow the protocol!"
F = Fields("task event")


def new_task_id() -> str:
    """A fresh task id, in the form the official SDK uses (32 hex digits)."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- parameters


def _opt_tuple(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _is_number(value: Any, kind: type) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int,) if kind is int else (int, float))


def _within(lo: float, hi: float, kind: type, message: str, *, optional: bool = True) -> Any:
    """A validator: ``kind`` (int, or any number for float) within ``[lo, hi]``; ``message`` is a
    template with ``{value}``. ``None`` passes when ``optional`` (the field is not sent)."""
    def check(_: Any, attribute: Any, value: Any) -> None:
        if (value is not None or not optional) and not (_is_number(value, kind) and lo <= value <= hi):
            raise ValueError(message.format(value=repr(value)))
    return check


def _opt_bool(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be true or false, not {value!r}")


def _format(_: Any, attribute: Any, value: Any) -> None:
    if value not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {', '.join(AUDIO_FORMATS)}, not {value!r}")


def _language_hints(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and not all(isinstance(x, str) and x for x in value):
        raise ValueError("language_hints must be a list of language codes such as ['en']")


def _vocabulary_id(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError("vocabulary_id must be a non-empty string such as 'vocab-name-…'")


# The documented limits of the numeric parameters, as data: name -> validator.
LIMITS = {
    "sample_rate": _within(1000, 192000, int, "sample_rate must be a whole number of Hz (e.g. 16000), not {value}",
                           optional=False),
    "max_sentence_silence": _within(200, 6000, int, "max_sentence_silence must be 200..6000 ms, not {value}"),
    "speech_noise_threshold": _within(-1.0, 1.0, float, "speech_noise_threshold must be in [-1.0, 1.0], not {value}"),
}


@attrs.frozen
class RecognitionParameters:
    """``payload.parameters`` of ``run-task``. ``None`` means "not sent" (server default).

    Every value is checked when the object is made (attrs validators; :class:`ValueError` names
    the parameter and the allowed values)."""

    format: str = attrs.field(default="pcm", validator=_format)
    sample_rate: int = attrs.field(default=16000, validator=LIMITS["sample_rate"])
    vocabulary_id: str | None = attrs.field(default=None, validator=_vocabulary_id)
    semantic_punctuation_enabled: bool | None = attrs.field(default=None, validator=_opt_bool)
    max_sentence_silence: int | None = attrs.field(default=None, validator=LIMITS["max_sentence_silence"])
    multi_threshold_mode_enabled: bool | None = attrs.field(default=None, validator=_opt_bool)
    heartbeat: bool | None = attrs.field(default=None, validator=_opt_bool)
    language_hints: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple,
                                                         validator=_language_hints)
    speech_noise_threshold: float | None = attrs.field(default=None, validator=LIMITS["speech_noise_threshold"])
    special_word_filter: Any = None  # object (WebSocket docs) or JSON string (SDK docs)
    punctuation_prediction_enabled: bool | None = attrs.field(default=None, validator=_opt_bool)
    inverse_text_normalization_enabled: bool | None = attrs.field(default=None, validator=_opt_bool)
    disfluency_removal_enabled: bool | None = attrs.field(default=None, validator=_opt_bool)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "sample_rate": self.sample_rate}
        for f in attrs.fields(RecognitionParameters):
            if f.name in ("format", "sample_rate", "extra"):
                continue
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecognitionParameters:
        known = {f.name for f in attrs.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if "format" not in data:
            raise ValueError("parameters.format is required (e.g. 'pcm')")
        if "sample_rate" not in data:
            raise ValueError("parameters.sample_rate is required (e.g. 16000)")
        if isinstance(kwargs.get("language_hints"), str):
            kwargs["language_hints"] = [kwargs["language_hints"]]
        if kwargs.get("language_hints") is not None and not isinstance(kwargs["language_hints"], list):
            raise ValueError("parameters.language_hints must be a list of strings")
        return cls(**kwargs, extra=extra)


# --------------------------------------------------------------------------- messages


@attrs.frozen
class RunTask:
    task_id: str
    model: str
    parameters: RecognitionParameters
    input: Mapping[str, Any] = attrs.field(factory=dict, converter=dict, hash=False)
    resources: tuple[Mapping[str, Any], ...] | None = None
    task_group: str = "audio"
    task: str = "asr"
    function: str = "recognition"


@attrs.frozen
class ContinueTask:
    task_id: str
    input: Mapping[str, Any] = attrs.field(factory=dict, converter=dict, hash=False)


@attrs.frozen
class FinishTask:
    task_id: str


@attrs.frozen
class Audio:
    data: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


ClientMessage = RunTask | ContinueTask | FinishTask | Audio


@attrs.frozen
class WordTiming:
    begin_time: int
    end_time: int
    text: str
    punctuation: str = ""


def _word_tuple(value: Any) -> tuple[WordTiming, ...]:
    return tuple(value)


@attrs.frozen
class Sentence:
    """``payload.output.sentence``. Times are ms from the start of the task's audio."""

    sentence_id: int
    text: str
    begin_time: int
    end_time: int | None = None
    sentence_end: bool = False
    heartbeat: bool = False
    words: tuple[WordTiming, ...] = attrs.field(default=(), converter=_word_tuple)
    emo_tag: str | None = None
    emo_confidence: float | None = None

    @property
    def is_final(self) -> bool:
        """Final when flagged so, or when an end time is set (the official SDKs' rule)."""
        return self.sentence_end or self.end_time is not None


@attrs.frozen
class TaskStarted:
    task_id: str


@attrs.frozen
class ResultGenerated:
    task_id: str
    sentence: Sentence
    usage_duration: int | None = None


@attrs.frozen
class TaskFinished:
    task_id: str


@attrs.frozen
class TaskFailed:
    task_id: str
    error_code: str
    error_message: str


ServerEvent = TaskStarted | ResultGenerated | TaskFinished | TaskFailed


# --------------------------------------------------------------------------- encoding


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _sentence_json(s: Sentence) -> dict[str, Any]:
    out: dict[str, Any] = {
        "begin_time": s.begin_time,
        "end_time": s.end_time,
        "text": s.text,
        "heartbeat": s.heartbeat,
        "sentence_end": s.sentence_end,
        "sentence_id": s.sentence_id,
        "words": [{"begin_time": w.begin_time, "end_time": w.end_time, "text": w.text,
                   "punctuation": w.punctuation} for w in s.words],
    }
    if s.emo_tag is not None:
        out["emo_tag"] = s.emo_tag
    if s.emo_confidence is not None:
        out["emo_confidence"] = s.emo_confidence
    return out


def encode(message: ClientMessage | ServerEvent) -> str | bytes:
    """The WebSocket frame for a message: ``bytes`` for audio, JSON text otherwise."""
    match message:
        case Audio(data=data):
            return data
        case RunTask():
            payload: dict[str, Any] = {
                "task_group": message.task_group, "task": message.task, "function": message.function,
                "model": message.model, "parameters": message.parameters.to_json(),
                "input": dict(message.input),
            }
            if message.resources is not None:
                payload["resources"] = [dict(r) for r in message.resources]
            return _dumps({"header": {"action": "run-task", "task_id": message.task_id,
                                      "streaming": "duplex"}, "payload": payload})
        case ContinueTask():
            return _dumps({"header": {"action": "continue-task", "task_id": message.task_id,
                                      "streaming": "duplex"}, "payload": {"input": dict(message.input)}})
        case FinishTask():
            return _dumps({"header": {"action": "finish-task", "task_id": message.task_id,
                                      "streaming": "duplex"}, "payload": {"input": {}}})
        case TaskStarted():
            return _dumps({"header": {"task_id": message.task_id, "event": "task-started",
                                      "attributes": {}}, "payload": {}})
        case ResultGenerated():
            usage = None if message.usage_duration is None else {"duration": message.usage_duration}
            return _dumps({"header": {"task_id": message.task_id, "event": "result-generated",
                                      "attributes": {}},
                           "payload": {"output": {"sentence": _sentence_json(message.sentence)},
                                       "usage": usage}})
        case TaskFinished():
            return _dumps({"header": {"task_id": message.task_id, "event": "task-finished",
                                      "attributes": {}}, "payload": {"output": {}, "usage": None}})
        case TaskFailed():
            return _dumps({"header": {"task_id": message.task_id, "event": "task-failed",
                                      "error_code": message.error_code,
                                      "error_message": message.error_message, "attributes": {}},
                           "payload": {}})
    raise TypeError(f"cannot encode {type(message).__name__}")


# --------------------------------------------------------------------------- decoding


def _load(frame: str | bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    if len(frame) > MAX_FRAME_CHARS:
        raise ProtocolError(f"text frame of {len(frame)} characters is too large for a control message")
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"text frame is not valid JSON ({type(exc).__name__}): {str(frame)[:80]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"text frame must be a JSON object, got {type(obj).__name__}")
    header = obj.get("header")
    if not isinstance(header, dict):
        raise ProtocolError("text frame has no 'header' object")
    payload = obj.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ProtocolError("'payload' must be a JSON object")
    return header, payload


def _task_id(header: Mapping[str, Any]) -> str:
    tid = header.get("task_id")
    if not isinstance(tid, str) or not _TASK_ID.match(tid):
        raise ProtocolError(f"header.task_id must be a task id string (e.g. a UUID), got {tid!r}")
    return tid


def _word(w: Any) -> WordTiming:
    if not isinstance(w, dict):
        raise ProtocolError("sentence.words[] items must be objects")
    return WordTiming(F.integer(w, "begin_time", "word.begin_time", required=True) or 0,
                      F.integer(w, "end_time", "word.end_time", required=True) or 0,
                      F.text(w, "text", "word.text", required=True) or "",
                      F.text(w, "punctuation", "word.punctuation") or "")


def _decode_sentence(s: Any) -> Sentence:
    if not isinstance(s, dict):
        raise ProtocolError("payload.output.sentence must be an object")
    heartbeat = bool(F.flag(s, "heartbeat", "sentence.heartbeat"))
    emo_conf = F.number(s, "emo_confidence", "sentence.emo_confidence")
    return Sentence(
        sentence_id=F.integer(s, "sentence_id", "sentence.sentence_id", required=not heartbeat) or 0,
        text=F.text(s, "text", "sentence.text") or "",
        begin_time=F.integer(s, "begin_time", "sentence.begin_time") or 0,
        end_time=F.integer(s, "end_time", "sentence.end_time"),
        sentence_end=bool(F.flag(s, "sentence_end", "sentence.sentence_end")),
        heartbeat=heartbeat,
        words=tuple(_word(w) for w in F.array(s, "words", "sentence.words") or ()),
        emo_tag=F.text(s, "emo_tag", "sentence.emo_tag"),
        emo_confidence=emo_conf,
    )


def decode_server(frame: str | bytes) -> ServerEvent:
    """Parse a frame the server sent. Raises :class:`ProtocolError` on anything malformed."""
    if isinstance(frame, (bytes, bytearray)):
        raise ProtocolError(f"unexpected binary frame of {len(frame)} bytes from the server "
                            "(recognition tasks only send JSON events)")
    header, payload = _load(frame)
    event = header.get("event")
    if event is None and "action" in header:
        raise ProtocolError(f"got a client command {header['action']!r} where a server event was expected")
    tid = _task_id(header)
    match event:
        case "task-started":
            return TaskStarted(tid)
        case "task-finished":
            return TaskFinished(tid)
        case "task-failed":
            code = header.get("error_code")
            msg = header.get("error_message")
            if not isinstance(code, str) or not code:
                raise ProtocolError("task-failed without a header.error_code string")
            return TaskFailed(tid, code, msg if isinstance(msg, str) else "")
        case "result-generated":
            output = payload.get("output")
            if not isinstance(output, dict) or "sentence" not in output:
                raise ProtocolError("result-generated without payload.output.sentence")
            sentence = _decode_sentence(output["sentence"])
            usage = payload.get("usage")
            duration = None
            if usage is not None:
                if not isinstance(usage, dict):
                    raise ProtocolError("payload.usage must be an object or null")
                duration = F.integer(usage, "duration", "usage.duration")
            return ResultGenerated(tid, sentence, duration)
    raise ProtocolError(f"unknown server event {event!r}")


def decode_client(frame: str | bytes) -> ClientMessage:
    """Parse a frame a client sent (used by the emulator)."""
    if isinstance(frame, (bytes, bytearray)):
        return Audio(bytes(frame))
    header, payload = _load(frame)
    action = header.get("action")
    tid = _task_id(header)
    match action:
        case "run-task":
            return _run_task(tid, header, payload)
        case "continue-task":
            return ContinueTask(tid, _input(payload))
        case "finish-task":
            return FinishTask(tid)
    raise ProtocolError(f"Invalid action({action!r})! Please follow the protocol!")


_RUN_TASK_FIXED = (("task_group", "audio"), ("task", "asr"), ("function", "recognition"))


def _run_task(tid: str, header: Mapping[str, Any], payload: Mapping[str, Any]) -> RunTask:
    streaming = header.get("streaming")
    if streaming != "duplex":
        raise ProtocolError(f"header.streaming must be 'duplex' for recognition, got {streaming!r}")
    for key, want in _RUN_TASK_FIXED:
        if payload.get(key) != want:
            raise ProtocolError(f"payload.{key} must be {want!r}, got {payload.get(key)!r}")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError("Missing required parameter 'payload.model'! Please follow the protocol!")
    params = payload.get("parameters")
    if not isinstance(params, dict):
        raise ProtocolError("Missing required parameter 'payload.parameters'! Please follow the protocol!")
    try:
        parameters = RecognitionParameters.from_json(params)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"invalid payload.parameters: {exc}") from None
    resources = payload.get("resources")
    if resources is not None and not (isinstance(resources, list) and all(isinstance(r, dict) for r in resources)):
        raise ProtocolError("payload.resources must be a list of objects")
    return RunTask(tid, model, parameters, _input(payload, none_ok=True),
                   None if resources is None else tuple(resources))


def _input(payload: Mapping[str, Any], *, none_ok: bool = False) -> dict[str, Any]:
    inp = payload.get("input", {})
    if inp is None and none_ok:
        return {}
    if not isinstance(inp, dict):
        raise ProtocolError("payload.input must be an object")
    return inp


# --------------------------------------------------------------------------- state machines


class State(enum.Enum):
    IDLE = "idle"  # connected, no task
    STARTING = "starting"  # run-task sent, waiting for task-started
    RUNNING = "running"  # audio flows
    FINISHING = "finishing"  # finish-task sent, waiting for task-finished
    FAILED = "failed"  # task-failed seen: the server closes the connection
    CLOSED = "closed"


class ClientTaskProtocol:
    """The client's view of one connection. Produces frames to send, checks frames received."""

    def __init__(self) -> None:
        self.state = State.IDLE
        self.task_id: str | None = None

    def _expect(self, *states: State, doing: str) -> None:
        if self.state not in states:
            raise ProtocolError(f"cannot {doing} while the task is {self.state.value}")

    def run_task(self, message: RunTask) -> str | bytes:
        self._expect(State.IDLE, doing="start a task")
        self.state = State.STARTING
        self.task_id = message.task_id
        return encode(message)

    def audio(self, data: bytes) -> bytes:
        self._expect(State.RUNNING, doing="send audio")
        return data

    def continue_task(self, context_input: Mapping[str, Any]) -> str | bytes:
        self._expect(State.RUNNING, doing="update the context")
        assert self.task_id is not None
        return encode(ContinueTask(self.task_id, context_input))

    def finish_task(self) -> str | bytes:
        self._expect(State.RUNNING, doing="finish the task")
        assert self.task_id is not None
        self.state = State.FINISHING
        return encode(FinishTask(self.task_id))

    def receive(self, frame: str | bytes) -> ServerEvent:
        event = decode_server(frame)
        if self.state in (State.IDLE, State.FAILED, State.CLOSED):
            raise ProtocolError(f"unexpected {type(event).__name__} while no task is running")
        if event.task_id != self.task_id:
            raise ProtocolError(f"event for task {event.task_id!r} but the running task is {self.task_id!r}")
        match event:
            case TaskFailed():
                self.state = State.FAILED
            case TaskStarted():
                self._expect(State.STARTING, doing="accept task-started")
                self.state = State.RUNNING
            case ResultGenerated():
                if self.state is State.STARTING:
                    raise ProtocolError("result-generated before task-started")
            case TaskFinished():
                if self.state is State.STARTING:
                    raise ProtocolError("task-finished before task-started")
                self.state = State.IDLE
        return event

    def connection_lost(self) -> None:
        self.state = State.CLOSED


class ServerTaskProtocol:
    """The server's view of one connection (used by the emulator).

    :meth:`receive` returns the parsed client message, or a :class:`Violation` whose ``reply``
    must be sent before closing. ``audio_before_start`` chooses what audio outside a task does:
    ``"fail"`` (a task-failed) or ``"ignore"`` — the real service's behaviour is not documented.
    """

    def __init__(self, *, audio_before_start: str = "fail") -> None:
        if audio_before_start not in ("fail", "ignore"):
            raise ValueError("audio_before_start must be 'fail' or 'ignore'")
        self.state = State.IDLE
        self.task_id: str | None = None
        self.audio_before_start = audio_before_start

    def _violation(self, message: str, code: str = "InvalidParameter",
                   task_id: str | None = None) -> Violation[TaskFailed]:
        self.state = State.FAILED
        return Violation(TaskFailed(task_id or self.task_id or "unknown", code, message), close=True)

    def receive(self, frame: str | bytes) -> ClientMessage | Violation[TaskFailed] | None:
        if self.state in (State.FAILED, State.CLOSED):
            return None
        try:
            msg = decode_client(frame)
        except ProtocolError as exc:
            return self._violation(str(exc))
        match msg:
            case Audio():
                if self.state is not State.RUNNING:
                    if self.audio_before_start == "ignore":
                        return None
                    return self._violation("audio received before task-started; send run-task first")
                return msg
            case RunTask():
                if self.state is not State.IDLE:
                    return self._violation(INVALID_ACTION_RUN_TASK)
                self.task_id = msg.task_id
                self.state = State.STARTING
                return msg
            case ContinueTask() | FinishTask():
                if self.state is not State.RUNNING:
                    return self._violation(f"{type(msg).__name__} outside a running task")
                if msg.task_id != self.task_id:
                    return self._violation(f"task_id {msg.task_id!r} does not match the running task")
                if isinstance(msg, FinishTask):
                    self.state = State.FINISHING
                return msg
        return None  # pragma: no cover

    def started(self) -> str | bytes:
        if self.state is not State.STARTING:
            raise ProtocolError(f"cannot start a task while {self.state.value}")
        self.state = State.RUNNING
        assert self.task_id is not None
        return encode(TaskStarted(self.task_id))

    def result(self, sentence: Sentence, usage_duration: int | None = None) -> str | bytes:
        if self.state not in (State.RUNNING, State.FINISHING):
            raise ProtocolError(f"cannot send a result while {self.state.value}")
        assert self.task_id is not None
        return encode(ResultGenerated(self.task_id, sentence, usage_duration))

    def finished(self) -> str | bytes:
        if self.state is not State.FINISHING:
            raise ProtocolError(f"cannot finish a task while {self.state.value}")
        assert self.task_id is not None
        tid, self.task_id, self.state = self.task_id, None, State.IDLE
        return encode(TaskFinished(tid))

    def failed(self, code: str, message: str) -> str | bytes:
        tid = self.task_id or "unknown"
        self.state = State.FAILED
        return encode(TaskFailed(tid, code, message))
