"""The sans-IO realtime protocol: model table, messages, validation, state machines, fuzzing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from voicekit_dashscope.errors import ProtocolError
from voicekit_dashscope.protocol.realtime import (
    CLIENT_TYPES,
    MODELS,
    SERVER_TYPES,
    AudioAppend,
    AudioCommit,
    AudioDelta,
    ClientRealtimeProtocol,
    ErrorEvent,
    ItemCreate,
    ItemTruncate,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ServerRealtimeProtocol,
    SessionConfig,
    SessionCreated,
    SessionFinish,
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    ToolSpec,
    Transcription,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionText,
    TurnDetection,
    UnknownServerEvent,
    Violation,
    check_session,
    decode_client,
    decode_server,
    encode,
    get_realtime_model,
)

from voicekit.errors import ConfigError

ASR = MODELS["qwen3-asr-flash-realtime"]
PLUS = MODELS["qwen3.5-omni-plus-realtime"]
FLASH = MODELS["qwen3.5-omni-flash-realtime"]
OMNI3 = MODELS["qwen3-omni-flash-realtime"]


def test_model_table_records_the_documented_differences() -> None:
    assert not ASR.output_audio and ASR.voice_count == 0 and ASR.emotion
    assert ASR.input_rates == (16000, 8000) and ASR.transcription_event.endswith(".text")
    for m in (PLUS, FLASH):
        assert m.semantic_vad and m.tools and m.default_voice == "Tina" and m.session_limit_s == 7200
        assert m.output_rates == (8000, 16000, 24000, 48000) and m.default_output_rate == 24000
        assert m.transcription_event.endswith(".delta") and m.language_count == 113
    assert not OMNI3.semantic_vad and OMNI3.tools is None and OMNI3.default_voice == "Cherry"
    assert OMNI3.output_rates == (24000,) and OMNI3.smooth_output
    # dated snapshots share their family's record
    assert get_realtime_model("qwen3-asr-flash-realtime-2026-02-10").family == "qwen3-asr"
    with pytest.raises(ConfigError, match="unknown DashScope realtime model"):
        get_realtime_model("qwen9-omni")


def test_what_the_official_sdk_sends_decodes() -> None:
    # session.update exactly as the Python SDK sends it for qwen3-asr-flash-realtime (notes 4.7)
    frame = json.dumps({"event_id": "event_8313", "type": "session.update", "session": {
        "modalities": ["text"], "voice": None, "input_audio_format": "pcm", "output_audio_format": "pcm16",
        "input_audio_transcription": {"language": "zh", "corpus": {"text": "hot words"}},
        "turn_detection": {"type": "server_vad", "threshold": 0.2, "prefix_padding_ms": 300,
                           "silence_duration_ms": 800}, "sample_rate": 16000}})
    ev = decode_client(frame)
    assert isinstance(ev, SessionUpdate)
    s = ev.session
    assert s.voice is None and s.sample_rate == 16000 and s.output_audio_format == "pcm16"
    assert s.transcription == Transcription(language="zh", corpus_text="hot words")
    assert s.turn_detection == TurnDetection("server_vad", 0.2, 800, 300)
    assert check_session(ASR, s) == []
    # and for qwen3.5-omni with semantic VAD and a tool (notes 5.3.1)
    frame = json.dumps({"event_id": "e", "type": "session.update", "session": {
        "modalities": ["audio", "text"], "voice": "Tina", "input_audio_format": "pcm16",
        "output_audio_format": "pcm16", "input_audio_transcription": {"model": None},
        "turn_detection": {"type": "semantic_vad", "threshold": 0.2, "prefix_padding_ms": 300,
                           "silence_duration_ms": 800},
        "instructions": "be brief",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                                   "properties": {}}}}]}})
    s = decode_client(frame).session  # type: ignore[union-attr]
    assert s.transcription == Transcription(model=None) and s.tools == (ToolSpec("f"),)
    assert check_session(PLUS, s) == []
    assert [i.param for i in check_session(OMNI3, s)] == ["session.turn_detection.type"]


@pytest.mark.parametrize(("model", "session", "param"), [
    (PLUS, {"modalities": ["audio"]}, "session.modalities"),
    (ASR, {"modalities": ["text", "audio"]}, "session.modalities"),
    (ASR, {"input_audio_format": "pcm16"}, "session.input_audio_format"),
    (ASR, {"sample_rate": 24000}, "session.sample_rate"),
    (ASR, {"voice": "Tina"}, "session.voice"),
    (ASR, {"tools": [{"type": "function", "function": {"name": "f"}}]}, "session.tools"),
    (PLUS, {"turn_detection": {"type": "server_vad", "threshold": 1.5}}, "session.turn_detection.threshold"),
    (PLUS, {"turn_detection": {"silence_duration_ms": 100}}, "session.turn_detection.silence_duration_ms"),
    (PLUS, {"turn_detection": {"type": "semantic_vad", "idle_timeout_ms": 8000}},
     "session.turn_detection.idle_timeout_ms"),
    (PLUS, {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 1000}},
     "session.turn_detection.idle_timeout_ms"),
    (PLUS, {"enable_search": True, "tools": [{"type": "function", "function": {"name": "f"}}]}, "session.tools"),
    (PLUS, {"audio": {"output": {"format": {"type": "mp3", "sample_rate": 24000}}}},
     "session.audio.output.format.type"),
    (OMNI3, {"audio": {"output": {"format": {"type": "pcm", "sample_rate": 24000}}}}, "session.audio.output.format"),
    (PLUS, {"smooth_output": True}, "session.smooth_output"),
    (PLUS, {"temperature": 2.0}, "session.temperature"),
])
def test_session_validation_names_the_parameter(model: Any, session: dict[str, Any], param: str) -> None:
    srv = ServerRealtimeProtocol(model)
    srv.send(SessionCreated(session=srv.session))
    out = srv.receive(json.dumps({"event_id": "event_x", "type": "session.update", "session": session}))
    assert isinstance(out, Violation)
    assert out.reply.error.param == param and out.reply.error.event_id == "event_x"
    assert out.reply.error.type == "invalid_request_error" and out.reply.error.message


def test_modalities_error_uses_the_documented_wording() -> None:
    issues = check_session(PLUS, SessionConfig(modalities=("audio",)))
    assert issues[0].message == ("Invalid modalities: ['audio']. Supported combinations are: ['text'] and "
                                 "['audio', 'text'].")


def test_round_trip_of_every_event_kind() -> None:
    events = [
        SessionUpdate(session=SessionConfig(modalities=("text", "audio"), voice="Tina", instructions="hi",
                                            turn_detection=None, tools=(ToolSpec("f", "d"),))),
        AudioAppend(audio=b"\x01\x02" * 50), AudioCommit(), ResponseCreate(instructions="x", modalities=("text",)),
        ResponseCancel(), ItemCreate.function_output("call_1", "ok"), SessionFinish(),
        ItemTruncate(item_id="item_1", audio_end_ms=1500),
    ]
    for e in events:
        back = decode_client(encode(e))
        assert type(back) is type(e) and back == e
    server = [
        SessionCreated(session={"id": "s"}), SessionUpdated(session={"id": "s"}), SessionFinished(),
        SpeechStarted(audio_start_ms=64, item_id="i"),
        TranscriptionText(item_id="i", text="a", stash="b", language="en", emotion="happy"),
        TranscriptionDelta(item_id="i", stash="x"), TranscriptionCompleted(item_id="i", transcript="t", language="zh"),
        ResponseCreated(response={"id": "r", "status": "in_progress"}),
        AudioDelta(response_id="r", item_id="i", delta=b"\x00\x01" * 10),
        ResponseDone(response={"id": "r", "status": "cancelled"}),
    ]
    for e in server:
        assert decode_server(encode(e)) == e
    assert decode_server(encode(server[-1])).status == "cancelled"  # type: ignore[union-attr]
    # a server event type we do not know is kept, not refused
    unknown = decode_server('{"type": "response.brand_new", "x": 1}')
    assert isinstance(unknown, UnknownServerEvent) and unknown.raw["x"] == 1


@pytest.mark.parametrize(("frame", "match"), [
    ("not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"no": "type"}', "no 'type'"),
    ('{"type": "input_audio_buffer.append", "audio": "%%%"}', "not valid base64"),
    ('{"type": "input_audio_buffer.append", "audio": 5}', "'audio' must be a string"),
    ('{"type": "session.update", "session": {"modalities": "text"}}', "session.modalities"),
    ('{"type": "session.update", "session": {"turn_detection": {"threshold": "high"}}}', "threshold"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c", "output": {}}}',
     "item.output"),
    ('{"type": "teleport"}', "invalid event type"), ("[" * 100000, "not valid JSON"),
])
def test_malformed_client_frames_are_typed_errors(frame: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_client(frame)


def _open_client(model: Any = PLUS) -> tuple[ClientRealtimeProtocol, ServerRealtimeProtocol]:
    cli, srv = ClientRealtimeProtocol(model), ServerRealtimeProtocol(model)
    cli.receive(srv.send(SessionCreated(session=srv.session)))
    return cli, srv


def test_client_state_machine_rejects_out_of_order_traffic() -> None:
    cli = ClientRealtimeProtocol(PLUS)
    with pytest.raises(ProtocolError, match=r"before session.created"):
        cli.send(AudioAppend(audio=b"\0\0"))
    with pytest.raises(ProtocolError, match=r"expected session.created"):
        cli.receive('{"type": "session.updated", "session": {}}')
    cli, srv = _open_client()
    with pytest.raises(ProtocolError, match=r"second session.created"):
        cli.receive('{"type": "session.created", "session": {}}')
    with pytest.raises(ProtocolError, match="manual mode"):
        cli.send(AudioCommit())
    with pytest.raises(ProtocolError, match="no response in progress"):
        cli.send(ResponseCancel())
    with pytest.raises(ProtocolError, match="unknown response"):
        cli.receive('{"type": "response.audio.delta", "response_id": "r9", "delta": ""}')
    with pytest.raises(ProtocolError, match=r"without session.finish"):
        cli.receive('{"type": "session.finished"}')
    c3, _ = _open_client(OMNI3)
    with pytest.raises(ConfigError, match="semantic_vad"):
        c3.send(SessionUpdate(session=SessionConfig(turn_detection=TurnDetection("semantic_vad"))))
    asr, _ = _open_client(ASR)
    with pytest.raises(ProtocolError, match="only transcribes"):
        asr.send(ResponseCreate())
    # a response: created -> deltas -> done; later deltas of it are stale
    cli.receive(srv.send(ResponseCreated(response={"id": "r1", "status": "in_progress"})))
    with pytest.raises(ProtocolError, match="still in progress"):
        cli.receive('{"type": "response.created", "response": {"id": "r2"}}')
    delta = decode_server(srv.send(AudioDelta(response_id="r1", delta=b"\0\0")))
    assert not cli.is_stale(delta)
    cli.send(ResponseCancel())
    cli.receive(srv.send(ResponseDone(response={"id": "r1", "status": "cancelled"})))
    assert cli.is_stale(cli.receive(srv.send(AudioDelta(response_id="r1", delta=b"\0\0"))))
    cli.send(SessionFinish())
    with pytest.raises(ProtocolError, match=r"after session.finish"):
        cli.send(AudioAppend(audio=b"\0\0"))
    cli.receive(srv.send(SessionFinished()))
    with pytest.raises(ProtocolError, match=r"after session.finished"):
        cli.receive('{"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "i"}')


def test_server_state_machine_answers_with_documented_errors() -> None:
    _, srv = _open_client()
    assert isinstance(srv.receive('{"type": "input_audio_buffer.commit"}'), Violation)  # VAD mode
    out = srv.receive('{"event_id": "e1", "type": "response.cancel"}')
    assert isinstance(out, Violation) and out.reply.error.code == "response_cancel_not_active"
    assert isinstance(srv.receive('{"type": "session.update", "session": {"turn_detection": null}}'), SessionUpdate)
    out = srv.receive('{"type": "input_audio_buffer.commit"}')
    assert isinstance(out, Violation) and out.reply.error.code == "input_audio_buffer_commit_empty"
    srv.receive(encode(AudioAppend(audio=b"\0\0" * 10)))
    assert isinstance(srv.receive('{"type": "input_audio_buffer.commit"}'), AudioCommit)
    # the input format and turn detection are fixed once audio has flowed
    out = srv.receive('{"type": "session.update", "session": {"turn_detection": {"type": "server_vad"}}}')
    assert isinstance(out, Violation) and out.reply.error.param == "session"
    assert isinstance(srv.receive('{"type": "session.update", "session": {"instructions": "new"}}'), SessionUpdate)
    assert srv.session["instructions"] == "new"
    # conversation.item.truncate is not a DashScope event unless the emulator is told to accept it
    out = srv.receive(encode(ItemTruncate(item_id="i", audio_end_ms=10)))
    assert isinstance(out, Violation) and out.reply.error.code == "invalid_event_type"
    srv2 = ServerRealtimeProtocol(FLASH, session_finish=False)
    srv2.send(SessionCreated(session=srv2.session))
    out = srv2.receive('{"type": "session.finish"}')
    assert isinstance(out, Violation) and "invalid event type" in out.reply.error.message
    assert isinstance(srv.receive('{"type": "session.finish"}'), SessionFinish)
    assert isinstance(srv.receive(encode(AudioAppend(audio=b"\0\0"))), Violation)


def test_error_event_becomes_a_typed_exception() -> None:
    ev = decode_server(json.dumps({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                                              "message": "Invalid value: 'pcm16'.",
                                                              "param": "session.input_audio_format"}}))
    assert isinstance(ev, ErrorEvent)
    exc = ev.error.exception()
    assert isinstance(exc, ProtocolError) is False and exc.code == "invalid_value"
    assert "session.input_audio_format" in str(exc)


# ----------------------------------------------------------------------------- fuzzing

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)
_fields = ["session", "audio", "delta", "response", "response_id", "item_id", "item", "error", "event_id",
           "audio_start_ms", "text", "stash", "transcript", "call_id", "arguments", "content_index", "part"]
_frames = st.one_of(
    st.text(max_size=200),
    st.builds(lambda t, body: json.dumps({"type": t, **body}),
              st.sampled_from(sorted({*CLIENT_TYPES, *SERVER_TYPES, "x"})),
              st.dictionaries(st.sampled_from(_fields), _json, max_size=5)),
)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_frames)
def test_fuzz_decoders_raise_only_typed_errors(frame: str) -> None:
    for decode in (decode_client, decode_server):
        try:
            decode(frame)
        except ProtocolError:
            pass


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, max_size=8))
def test_fuzz_state_machines_never_crash(frames: list[str]) -> None:
    cli, srv = _open_client()
    for frame in frames:
        try:
            cli.receive(frame)
        except ProtocolError:
            pass
        out = srv.receive(frame)  # the server never raises: it answers with an error event
        assert isinstance(out, Violation) or out.TYPE
        if isinstance(out, Violation):
            assert decode_server(srv.send(out.reply)).error.message  # type: ignore[union-attr]


def test_one_protocol_error_and_one_violation_for_every_dashscope_protocol() -> None:
    """The realtime and task protocols share the plugin's ProtocolError and one Violation type;
    the realtime error names of earlier releases are that same class."""
    from voicekit_dashscope.protocol import realtime, task
    from voicekit_dashscope.protocol._util import Violation as SharedViolation

    assert realtime.RealtimeProtocolError is ProtocolError and realtime.RealtimeStateError is ProtocolError
    assert realtime.Violation is SharedViolation and task.Violation is SharedViolation
    refused = ServerRealtimeProtocol(PLUS).receive('{"type": "no.such.event"}')
    assert isinstance(refused, SharedViolation) and not refused.close
    failed = task.ServerTaskProtocol().receive("not json")
    assert isinstance(failed, SharedViolation) and failed.close
