"""The browser ↔ server message protocol of ``voicekit serve``, written sans-IO.

One WebSocket per conversation. Text messages are JSON objects with a ``type``; binary messages
are raw audio (PCM int16 little-endian, mono)::

    client                                   server
    {"type": "hello", "version": 1,
     "sample_rate": 16000, "token": "..."}  ─►
                                          ◄─ {"type": "ready", "session_id": ..., ...}
                                          ◄─ {"type": "audio_format", "sample_rate": 22050, ...}
    <binary: microphone PCM>               ─►
                                          ◄─ {"type": "event", "event": {"event": "transcript", ...}}
                                          ◄─ <binary: reply PCM, at the audio_format rate>
    {"type": "end"}                        ─►   (the microphone stopped; optional)
                                          ◄─ {"type": "error", "code": ..., "message": ...}  (then close)

Nothing here touches a socket: :class:`ServerProtocol` turns received messages into typed values
(or a :class:`ProtocolError` carrying the WebSocket close code to use), and :func:`encode` /
:func:`decode_server` turn typed values into messages and back. Unknown fields are ignored
(a newer client may send more); known fields with a wrong type or value are rejected.
"""

from __future__ import annotations

import enum
import hmac
import json
import math
import re
from typing import Any, Final

import attrs

from voicekit import errors

PROTOCOL_VERSION: Final = 1
AUDIO_FORMAT: Final = "pcm_s16le"
#: Largest binary (audio) message a client may send: 64 KiB ≈ 2 s of 16 kHz mono int16.
MAX_AUDIO_BYTES: Final = 64 * 1024
#: Largest text (JSON) message a client may send.
MAX_TEXT_BYTES: Final = 4 * 1024
MIN_SAMPLE_RATE: Final = 8000
MAX_SAMPLE_RATE: Final = 48000


class CloseCode(enum.IntEnum):
    """WebSocket close codes (RFC 6455 §7.4.1) the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


class ProtocolError(errors.ProtocolError):
    """A browser message the server cannot accept (a :class:`voicekit.errors.ProtocolError`).

    ``code`` is a short machine-readable name sent to the client; ``close_code`` is the WebSocket
    close code to end the connection with."""

    def __init__(self, message: str, *, code: str = "bad_message",
                 close_code: CloseCode = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


# -- client → server ----------------------------------------------------------------------------

@attrs.frozen(kw_only=True)
class Hello:
    """The first message of a connection: the audio format the client will send, and the token."""

    sample_rate: int = 16000
    channels: int = 1
    format: str = AUDIO_FORMAT
    version: int = PROTOCOL_VERSION
    token: str | None = attrs.field(default=None, repr=lambda t: "None" if t is None else "'***'")
    client: str | None = None


@attrs.frozen
class Audio:
    """A chunk of microphone audio (a binary message)."""

    pcm: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen
class End:
    """The client stopped its microphone: the input has ended."""


ClientMessage = Hello | Audio | End


# -- server → client ----------------------------------------------------------------------------

@attrs.frozen(kw_only=True)
class Ready:
    session_id: str
    assistant: str | None
    sample_rate: int  # the input rate the server expects (as the hello announced)
    max_audio_bytes: int = MAX_AUDIO_BYTES
    max_text_bytes: int = MAX_TEXT_BYTES
    version: int = PROTOCOL_VERSION


@attrs.frozen(kw_only=True)
class AudioFormat:
    """The format of the binary reply-audio messages that follow."""

    sample_rate: int
    channels: int = 1
    format: str = AUDIO_FORMAT


@attrs.frozen
class EventMessage:
    """A session event (``voicekit.events``), as its ``to_dict()``."""

    event: dict[str, Any]


@attrs.frozen(kw_only=True)
class ErrorMessage:
    message: str
    code: str = "error"


@attrs.frozen
class ReplyAudio:
    """A chunk of reply audio (a binary message), in the last announced :class:`AudioFormat`."""

    pcm: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


ServerMessage = Ready | AudioFormat | EventMessage | ErrorMessage | ReplyAudio


# -- encoding -----------------------------------------------------------------------------------

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    """``value`` as text that can be sent as UTF-8: JSON lets a client write a lone surrogate
    (``"\\udc80"``), which no UTF-8 encoder accepts; it becomes U+FFFD."""
    if value.isascii():
        return value
    return _SURROGATE.sub("\ufffd", value)


def _jsonable(value: Any) -> Any:
    """Plain JSON values; NaN and infinities (invalid JSON for browsers) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, (int, bool)):
        return value
    return str(value)


def encode(message: ClientMessage | ServerMessage) -> str | bytes:
    """The WebSocket message for ``message``: ``bytes`` for audio, JSON text for the rest."""
    if isinstance(message, (Audio, ReplyAudio)):
        return message.pcm
    if isinstance(message, End):
        body: dict[str, Any] = {"type": "end"}
    elif isinstance(message, Hello):
        body = {"type": "hello", **{k: v for k, v in attrs.asdict(message).items() if v is not None}}
    elif isinstance(message, Ready):
        body = {"type": "ready", **attrs.asdict(message)}
    elif isinstance(message, AudioFormat):
        body = {"type": "audio_format", **attrs.asdict(message)}
    elif isinstance(message, EventMessage):
        body = {"type": "event", "event": message.event}
    elif isinstance(message, ErrorMessage):
        body = {"type": "error", "code": message.code, "message": message.message}
    else:
        raise TypeError(f"not a protocol message: {message!r}")
    return json.dumps(_jsonable(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


#: Deepest nesting of arrays and objects a client message may have (a hello needs 2). Checked before
#: parsing, so the answer does not depend on the interpreter's recursion limit.
MAX_JSON_DEPTH: Final = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _nesting(data: str) -> int:
    """How deeply arrays and objects nest in ``data`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_JSON_STRING.sub('""', data)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _parse_json(data: str, *, limit: int | None) -> dict[str, Any]:
    if limit is not None and len(data.encode("utf-8")) > limit:
        raise ProtocolError(f"text message of {len(data.encode('utf-8'))} bytes is over the {limit}-byte limit; "
                            "send audio as binary messages and keep JSON messages small",
                            code="too_big", close_code=CloseCode.MESSAGE_TOO_BIG)
    if _nesting(data) > MAX_JSON_DEPTH:
        raise ProtocolError("text message is nested too deeply; send a flat JSON object such as "
                            "{\"type\": \"hello\", ...}", close_code=CloseCode.UNSUPPORTED_DATA)
    try:
        body = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"text message is not valid JSON ({exc.msg} at position {exc.pos}); "
                            "send a JSON object such as {\"type\": \"hello\", ...}",
                            close_code=CloseCode.UNSUPPORTED_DATA) from None
    except RecursionError:  # e.g. 4 KB of "[[[[...": nesting no client message needs
        raise ProtocolError("text message is nested too deeply; send a flat JSON object such as "
                            "{\"type\": \"hello\", ...}", close_code=CloseCode.UNSUPPORTED_DATA) from None
    if not isinstance(body, dict):
        raise ProtocolError(f"text message must be a JSON object with a \"type\", got a {type(body).__name__}",
                            close_code=CloseCode.UNSUPPORTED_DATA)
    if not isinstance(body.get("type"), str):
        raise ProtocolError("JSON message has no \"type\" field (a string such as \"hello\")",
                            close_code=CloseCode.UNSUPPORTED_DATA)
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any, what: str) -> Any:
    value = body.get(name, default)
    if value is None and default is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"{body['type']} field {name!r} must be {what}, got {value!r}",
                            code="bad_hello" if body["type"] == "hello" else "bad_message")
    return value


def parse_hello(body: dict[str, Any]) -> Hello:
    """Validate a hello's fields (the ``type`` is already known to be ``"hello"``)."""
    version = _field(body, "version", int, PROTOCOL_VERSION, "an integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version} is not supported; this server speaks version "
                            f"{PROTOCOL_VERSION}: reload the page served by this server", code="bad_hello")
    rate = _field(body, "sample_rate", int, 16000, "an integer number of Hz")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(f"hello sample_rate {rate} Hz is out of range: send audio at "
                            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz (16000 is best)", code="bad_hello")
    channels = _field(body, "channels", int, 1, "an integer")
    if channels != 1:
        raise ProtocolError(f"hello channels {channels}: only mono audio is accepted; mix down to 1 channel",
                            code="bad_hello")
    fmt = _field(body, "format", str, AUDIO_FORMAT, "a string")
    if fmt != AUDIO_FORMAT:
        raise ProtocolError(f"hello format {fmt!r} is not supported; send {AUDIO_FORMAT!r} "
                            "(16-bit signed little-endian PCM)", code="bad_hello")
    token = _field(body, "token", str, None, "a string")
    client = _field(body, "client", str, None, "a string")
    return Hello(sample_rate=rate, channels=channels, format=fmt, version=version, token=token,
                 client=_text(client[:100]) if client else None)


def decode_server(data: str | bytes) -> ServerMessage:
    """A server message as a typed value (for Python clients and tests)."""
    if isinstance(data, (bytes, bytearray)):
        return ReplyAudio(bytes(data))
    body = _parse_json(data, limit=None)
    kind = body["type"]
    try:
        if kind == "ready":
            return Ready(session_id=body["session_id"], assistant=body.get("assistant"),
                         sample_rate=body["sample_rate"], max_audio_bytes=body["max_audio_bytes"],
                         max_text_bytes=body["max_text_bytes"], version=body["version"])
        if kind == "audio_format":
            return AudioFormat(sample_rate=body["sample_rate"], channels=body["channels"], format=body["format"])
        if kind == "event":
            if not isinstance(body["event"], dict):
                raise ProtocolError("event message: \"event\" must be an object")
            return EventMessage(body["event"])
        if kind == "error":
            return ErrorMessage(message=body["message"], code=body.get("code", "error"))
    except KeyError as exc:
        raise ProtocolError(f"{kind} message lacks the field {exc.args[0]!r}") from None
    raise ProtocolError(f"unknown server message type {kind!r}")


# -- the server's state machine -----------------------------------------------------------------

class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    STREAMING = "streaming"
    ENDED = "ended"


class ServerProtocol:
    """Validates what one client sends, in order: a hello (with the token, if the server has one),
    then audio, then optionally an end. Every method raises :class:`ProtocolError` on bad traffic;
    after an error the connection must be closed with its ``close_code``."""

    def __init__(self, *, token: str | None = None, max_audio_bytes: int = MAX_AUDIO_BYTES,
                 max_text_bytes: int = MAX_TEXT_BYTES) -> None:
        self._token = token
        self.max_audio_bytes = max_audio_bytes
        self.max_text_bytes = max_text_bytes
        self.state = State.AWAIT_HELLO
        self.hello: Hello | None = None
        self.audio_bytes = 0

    def __repr__(self) -> str:
        return f"ServerProtocol(state={self.state.value}, token={'set' if self._token else 'none'})"

    def receive(self, data: str | bytes) -> ClientMessage:
        if isinstance(data, (bytes, bytearray)):
            return self._audio(bytes(data))
        body = _parse_json(data, limit=self.max_text_bytes)
        kind = body["type"]
        if kind == "hello":
            if self.state is not State.AWAIT_HELLO:
                raise ProtocolError("a second hello on the same connection; open a new connection instead")
            hello = parse_hello(body)
            self._check_token(hello.token)
            self.hello = hello
            self.state = State.STREAMING
            return hello
        if self.state is State.AWAIT_HELLO:
            raise ProtocolError(f"{kind!r} message before the hello; the first message must be "
                                "{\"type\": \"hello\", \"sample_rate\": 16000, ...}", code="no_hello",
                                close_code=CloseCode.POLICY_VIOLATION)
        if kind == "end":
            if self.state is State.ENDED:
                raise ProtocolError("a second end message; the input has already ended")
            self.state = State.ENDED
            return End()
        raise ProtocolError(f"unknown message type {kind!r}; a client sends \"hello\", binary audio and \"end\"",
                            close_code=CloseCode.UNSUPPORTED_DATA)

    def _audio(self, pcm: bytes) -> Audio:
        if self.state is State.AWAIT_HELLO:
            raise ProtocolError("audio before the hello; send {\"type\": \"hello\", \"sample_rate\": 16000, ...} "
                                "first", code="no_hello", close_code=CloseCode.POLICY_VIOLATION)
        if self.state is State.ENDED:
            raise ProtocolError("audio after the end message; open a new connection to talk again")
        if len(pcm) > self.max_audio_bytes:
            raise ProtocolError(f"audio message of {len(pcm)} bytes is over the {self.max_audio_bytes}-byte "
                                "limit; send short chunks (20 ms is 640 bytes at 16 kHz)",
                                code="too_big", close_code=CloseCode.MESSAGE_TOO_BIG)
        if len(pcm) % 2:
            raise ProtocolError(f"audio message of {len(pcm)} bytes is not a whole number of 16-bit samples",
                                close_code=CloseCode.UNSUPPORTED_DATA)
        self.audio_bytes += len(pcm)
        return Audio(pcm)

    def _check_token(self, token: str | None) -> None:
        if self._token is None:
            return
        if token is None:
            raise ProtocolError("this server needs a token: put it in the hello (the page reads it from "
                                "the URL as #token=...)", code="unauthorized",
                                close_code=CloseCode.POLICY_VIOLATION)
        # surrogatepass: a token with a lone surrogate (valid JSON, not valid UTF-8) is just wrong
        given, expected = token.encode("utf-8", "surrogatepass"), self._token.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, expected):
            raise ProtocolError("wrong token", code="unauthorized", close_code=CloseCode.POLICY_VIOLATION)
