"""The browser protocol of ``voicekit serve``, sans-IO: no socket, just messages in and out."""

from __future__ import annotations

import json
import math

import pytest

from voicekit import events as ev
from voicekit.asr.base import Word
from voicekit.serve.protocol import (
    MAX_AUDIO_BYTES,
    MAX_TEXT_BYTES,
    Audio,
    AudioFormat,
    CloseCode,
    End,
    ErrorMessage,
    EventMessage,
    Hello,
    ProtocolError,
    Ready,
    ReplyAudio,
    ServerProtocol,
    State,
    decode_server,
    encode,
)


def hello(**fields: object) -> str:
    return json.dumps({"type": "hello", **fields})


def test_hello_then_audio_then_end() -> None:
    proto = ServerProtocol()
    got = proto.receive(hello(sample_rate=16000, client="test"))
    assert got == Hello(sample_rate=16000, client="test")
    assert proto.state is State.STREAMING
    assert proto.receive(b"\x01\x00" * 320) == Audio(b"\x01\x00" * 320)
    assert proto.receive(b"") == Audio(b"")
    assert proto.audio_bytes == 640
    assert proto.receive(json.dumps({"type": "end"})) == End()
    assert proto.state is State.ENDED


def test_hello_defaults_and_unknown_fields_are_ignored() -> None:
    got = ServerProtocol().receive(hello(future_field={"x": 1}))
    assert got == Hello(sample_rate=16000, channels=1, format="pcm_s16le", version=1, token=None)


@pytest.mark.parametrize(("fields", "words"), [
    ({"sample_rate": 4000}, "8000..48000"),
    ({"sample_rate": 96000}, "8000..48000"),
    ({"sample_rate": "16000"}, "integer"),
    ({"sample_rate": True}, "integer"),
    ({"channels": 2}, "mono"),
    ({"format": "opus"}, "pcm_s16le"),
    ({"version": 2}, "version 2"),
    ({"token": 1234}, "string"),
])
def test_bad_hello_is_refused_with_a_clear_error(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ProtocolError, match=words) as info:
        ServerProtocol().receive(hello(**fields))
    assert info.value.code == "bad_hello"
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR


def test_audio_or_end_before_hello_is_a_policy_violation() -> None:
    for message in (b"\x00\x00", json.dumps({"type": "end"})):
        with pytest.raises(ProtocolError, match="before the hello") as info:
            ServerProtocol().receive(message)
        assert info.value.close_code == CloseCode.POLICY_VIOLATION
        assert info.value.code == "no_hello"


def test_out_of_order_messages() -> None:
    proto = ServerProtocol()
    proto.receive(hello())
    with pytest.raises(ProtocolError, match="second hello"):
        proto.receive(hello())
    proto.receive(json.dumps({"type": "end"}))
    with pytest.raises(ProtocolError, match="after the end"):
        proto.receive(b"\x00\x00")
    with pytest.raises(ProtocolError, match="second end"):
        proto.receive(json.dumps({"type": "end"}))


@pytest.mark.parametrize(("message", "words", "close"), [
    ("not json", "not valid JSON", CloseCode.UNSUPPORTED_DATA),
    ("[1, 2]", "JSON object", CloseCode.UNSUPPORTED_DATA),
    ('{"kind": "hello"}', "no \"type\"", CloseCode.UNSUPPORTED_DATA),
    ('{"type": "dance"}', "unknown message type 'dance'", CloseCode.UNSUPPORTED_DATA),
])
def test_malformed_text(message: str, words: str, close: CloseCode) -> None:
    proto = ServerProtocol()
    proto.receive(hello())
    with pytest.raises(ProtocolError, match=words) as info:
        proto.receive(message)
    assert info.value.close_code == close


def test_size_limits() -> None:
    proto = ServerProtocol()
    big_text = hello(client="x" * MAX_TEXT_BYTES)
    with pytest.raises(ProtocolError, match="4096-byte limit") as info:
        proto.receive(big_text)
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG
    proto.receive(hello())
    proto.receive(b"\x00" * MAX_AUDIO_BYTES)  # exactly the limit is fine
    with pytest.raises(ProtocolError, match="65536-byte limit") as info:
        proto.receive(b"\x00" * (MAX_AUDIO_BYTES + 2))
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG
    assert info.value.code == "too_big"
    with pytest.raises(ProtocolError, match="whole number of 16-bit samples"):
        proto.receive(b"\x00" * 3)


def test_limits_are_configurable() -> None:
    proto = ServerProtocol(max_audio_bytes=640, max_text_bytes=64)
    with pytest.raises(ProtocolError, match="64-byte limit"):
        proto.receive(hello(client="a-rather-long-client-name-to-exceed-the-limit"))
    proto.receive(hello())
    with pytest.raises(ProtocolError, match="642 bytes is over the 640-byte limit"):
        proto.receive(b"\x00" * 642)


def test_token() -> None:
    with pytest.raises(ProtocolError, match="needs a token") as info:
        ServerProtocol(token="s3cret").receive(hello())
    assert (info.value.code, info.value.close_code) == ("unauthorized", CloseCode.POLICY_VIOLATION)
    with pytest.raises(ProtocolError, match="wrong token") as info:
        ServerProtocol(token="s3cret").receive(hello(token="guess"))
    assert "s3cret" not in str(info.value) and "guess" not in str(info.value)
    proto = ServerProtocol(token="s3cret")
    got = proto.receive(hello(token="s3cret"))
    assert isinstance(got, Hello)
    assert "s3cret" not in repr(got) and "s3cret" not in repr(proto)
    # a server without a token accepts a hello that carries one
    assert isinstance(ServerProtocol().receive(hello(token="anything")), Hello)


def test_server_messages_round_trip() -> None:
    messages = [
        Ready(session_id="abc", assistant="robot", sample_rate=16000),
        AudioFormat(sample_rate=22050),
        EventMessage({"event": "transcript", "text": "go forward", "is_final": True}),
        ErrorMessage(message="the server is busy", code="busy"),
        ReplyAudio(b"\x01\x02"),
    ]
    for message in messages:
        data = encode(message)
        assert isinstance(data, bytes) == isinstance(message, ReplyAudio)
        assert decode_server(data) == message
    assert json.loads(encode(Ready(session_id="abc", assistant=None, sample_rate=8000))) == {
        "type": "ready", "session_id": "abc", "assistant": None, "sample_rate": 8000,
        "max_audio_bytes": MAX_AUDIO_BYTES, "max_text_bytes": MAX_TEXT_BYTES, "version": 1}


def test_client_messages_encode_to_what_the_server_accepts() -> None:
    proto = ServerProtocol(token="t")
    assert proto.receive(encode(Hello(sample_rate=48000, token="t"))) == Hello(sample_rate=48000, token="t")
    assert proto.receive(encode(Audio(b"\x00\x01"))) == Audio(b"\x00\x01")
    assert proto.receive(encode(End())) == End()


def test_session_events_encode_as_plain_json() -> None:
    event = ev.Transcript(t=1.5, text="go forward ten meters", is_final=True, start=0.2, end=math.nan,
                          words=(Word("go", 0.2, 0.4, 0.9),))
    body = json.loads(encode(EventMessage(event.to_dict())))
    assert body["type"] == "event"
    assert body["event"]["event"] == "transcript"
    assert body["event"]["text"] == "go forward ten meters"
    assert body["event"]["end"] is None  # NaN is not JSON a browser can parse
    assert body["event"]["words"][0]["text"] == "go"
    slots = ev.IntentMatched(t=2.0, turn_id=1, intent="move", slots={"distance": 10, "direction": "forward"})
    assert json.loads(encode(EventMessage(slots.to_dict())))["event"]["slots"] == {
        "distance": 10, "direction": "forward"}


def test_decode_server_rejects_garbage() -> None:
    with pytest.raises(ProtocolError, match="unknown server message type 'nope'"):
        decode_server('{"type": "nope"}')
    with pytest.raises(ProtocolError, match="lacks the field 'sample_rate'"):
        decode_server('{"type": "audio_format"}')


def test_deep_nesting_is_a_bad_message_not_a_crash() -> None:
    for text in ("[" * 4000, '{"type": "hello", "x": ' + "[" * 2000 + "]" * 2000 + "}"):
        with pytest.raises(ProtocolError, match="nested too deeply") as info:
            ServerProtocol().receive(text)
        assert info.value.code == "bad_message" and info.value.close_code == CloseCode.UNSUPPORTED_DATA


def test_lone_surrogates() -> None:
    """JSON can spell a lone surrogate, which is not text a UTF-8 encoder accepts: a token with one
    is simply wrong, and one echoed in a message or a client name is sent as U+FFFD."""
    with pytest.raises(ProtocolError) as info:
        ServerProtocol(token="s3cret").receive('{"type": "hello", "token": "\\udc80s3cret"}')
    assert info.value.code == "unauthorized"
    hello = ServerProtocol().receive('{"type": "hello", "client": "a\\ud800b"}')
    assert isinstance(hello, Hello) and hello.client == "a\ufffdb"
    text = encode(ErrorMessage(message="x\udc80y", code="bad_message"))
    assert isinstance(text, str) and "x\ufffdy" in text
    text.encode("utf-8")  # sendable


def test_deep_nesting_is_refused_whatever_the_recursion_limit() -> None:
    """An embedding program (or a test runner) may raise the recursion limit: the answer to a
    deeply nested message must not change with it."""
    import sys

    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        for text in ("[" * 4000, "[" * 2000 + "]" * 2000, '{"type": "hello", "x": ' + "[" * 40 + "]" * 40 + "}"):
            with pytest.raises(ProtocolError, match="nested too deeply"):
                ServerProtocol().receive(text)
    finally:
        sys.setrecursionlimit(saved)
    # brackets inside strings are text, not nesting: this hello is accepted
    ServerProtocol().receive('{"type": "hello", "x": "' + "[" * 100 + '\\"[{"}')
