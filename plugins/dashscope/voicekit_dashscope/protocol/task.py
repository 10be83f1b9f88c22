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
wrong types, events out of order). Every failure is a :class:`ProtocolError`.
"""

from __future__ import annotations

import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from voicekit_dashscope.errors import ProtocolError

AUDIO_FORMATS = ("pcm", "wav", "mp3", "opus", "speex", "aac", "amr")
MAX_FRAME_CHARS = 1 << 20  # a control frame larger than 1 MiB is not a real DashScope frame
_TASK_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,127}$")
INVALID_ACTION_RUN_TASK = "Invalid action('run-task')! Please follow the protocol!"


def new_task_id() -> str:
    """A fresh task id, in the form the official SDK uses (32 hex digits)."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- parameters


def _opt_tuple(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _opt_bool(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")


@attrs.frozen
class RecognitionParameters:
    """``payload.parameters`` of ``run-task``. ``None`` means "not sent" (server default)."""

    format: str = "pcm"
    sample_rate: int = 16000
    vocabulary_id: str | None = None
    semantic_punctuation_enabled: bool | None = None
    max_sentence_silence: int | None = None
    multi_threshold_mode_enabled: bool | None = None
    heartbeat: bool | None = None
    language_hints: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    speech_noise_threshold: float | None = None
    special_word_filter: Any = None  # object (WebSocket docs) or JSON string (SDK docs)
    punctuation_prediction_enabled: bool | None = None
    inverse_text_normalization_enabled: bool | None = None
    disfluency_removal_enabled: bool | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=dict, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.format not in AUDIO_FORMATS:
            raise ValueError(f"format must be one of {', '.join(AUDIO_FORMATS)}, not {self.format!r}")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or not (
                1000 <= self.sample_rate <= 192000):
            raise ValueError(f"sample_rate must be a whole number of Hz (e.g. 16000), not {self.sample_rate!r}")
        if self.max_sentence_silence is not None and (
                isinstance(self.max_sentence_silence, bool)
                or not isinstance(self.max_sentence_silence, int)
                or not 200 <= self.max_sentence_silence <= 6000):
            raise ValueError(f"max_sentence_silence must be 200..6000 ms, not {self.max_sentence_silence!r}")
        if self.speech_noise_threshold is not None and (
                isinstance(self.speech_noise_threshold, bool)
                or not isinstance(self.speech_noise_threshold, (int, float))
                or not -1.0 <= float(self.speech_noise_threshold) <= 1.0):
            raise ValueError(f"speech_noise_threshold must be in [-1.0, 1.0], not {self.speech_noise_threshold!r}")
        for name in ("semantic_punctuation_enabled", "multi_threshold_mode_enabled", "heartbeat",
                     "punctuation_prediction_enabled", "inverse_text_normalization_enabled",
                     "disfluency_removal_enabled"):
            _opt_bool(name, getattr(self, name))
        if self.language_hints is not None and not all(
                isinstance(x, str) and x for x in self.language_hints):
            raise ValueError("language_hints must be a list of language codes such as ['en']")
        if self.vocabulary_id is not None and not (isinstance(self.vocabulary_id, str) and self.vocabulary_id):
            raise ValueError("vocabulary_id must be a non-empty string such as 'vocab-name-…'")

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


def _int(d: Mapping[str, Any], key: str, *, optional: bool = False, where: str = "") -> int | None:
    v = d.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
        raise ProtocolError(f"{where}{key} must be an integer, got {v!r}")
    return int(v)


def _str(d: Mapping[str, Any], key: str, *, default: str | None = None, where: str = "") -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise ProtocolError(f"{where}{key} must be a string, got {v!r}")
    return v


def _bool(d: Mapping[str, Any], key: str, default: bool, where: str = "") -> bool:
    v = d.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ProtocolError(f"{where}{key} must be true or false, got {v!r}")
    return v


def _decode_sentence(s: Any) -> Sentence:
    where = "sentence."
    if not isinstance(s, dict):
        raise ProtocolError("payload.output.sentence must be an object")
    words_raw = s.get("words") or []
    if not isinstance(words_raw, list):
        raise ProtocolError("sentence.words must be a list")
    words = []
    for w in words_raw:
        if not isinstance(w, dict):
            raise ProtocolError("sentence.words[] items must be objects")
        words.append(WordTiming(
            _int(w, "begin_time", where="word.") or 0, _int(w, "end_time", where="word.") or 0,
            _str(w, "text", where="word."), _str(w, "punctuation", default="", where="word.") if
            w.get("punctuation") is not None else ""))
    emo_conf = s.get("emo_confidence")
    if emo_conf is not None and (isinstance(emo_conf, bool) or not isinstance(emo_conf, (int, float))):
        raise ProtocolError(f"sentence.emo_confidence must be a number, got {emo_conf!r}")
    emo_tag = s.get("emo_tag")
    if emo_tag is not None and not isinstance(emo_tag, str):
        raise ProtocolError(f"sentence.emo_tag must be a string, got {emo_tag!r}")
    heartbeat = _bool(s, "heartbeat", False, where)
    return Sentence(
        sentence_id=_int(s, "sentence_id", optional=heartbeat, where=where) or 0,
        text=_str(s, "text", default="", where=where) if s.get("text") is not None else "",
        begin_time=_int(s, "begin_time", optional=True, where=where) or 0,
        end_time=_int(s, "end_time", optional=True, where=where),
        sentence_end=_bool(s, "sentence_end", False, where),
        heartbeat=heartbeat,
        words=tuple(words),
        emo_tag=emo_tag,
        emo_confidence=None if emo_conf is None else float(emo_conf),
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
                duration = _int(usage, "duration", optional=True, where="usage.")
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
            streaming = header.get("streaming")
            if streaming != "duplex":
                raise ProtocolError(f"header.streaming must be 'duplex' for recognition, got {streaming!r}")
            for key, want in (("task_group", "audio"), ("task", "asr"), ("function", "recognition")):
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
            inp = payload.get("input", {})
            if inp is None:
                inp = {}
            if not isinstance(inp, dict):
                raise ProtocolError("payload.input must be an object")
            resources = payload.get("resources")
            if resources is not None and not (isinstance(resources, list)
                                              and all(isinstance(r, dict) for r in resources)):
                raise ProtocolError("payload.resources must be a list of objects")
            return RunTask(tid, model, parameters, inp, None if resources is None else tuple(resources))
        case "continue-task":
            inp = payload.get("input", {})
            if not isinstance(inp, dict):
                raise ProtocolError("payload.input must be an object")
            return ContinueTask(tid, inp)
        case "finish-task":
            return FinishTask(tid)
    raise ProtocolError(f"Invalid action({action!r})! Please follow the protocol!")


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


@attrs.frozen
class Violation:
    """What the server must answer to a bad client frame: a ``task-failed``, then close."""

    reply: TaskFailed
    close: bool = True


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

    def _violation(self, message: str, code: str = "InvalidParameter", task_id: str | None = None) -> Violation:
        self.state = State.FAILED
        return Violation(TaskFailed(task_id or self.task_id or "unknown", code, message))

    def receive(self, frame: str | bytes) -> ClientMessage | Violation | None:
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
