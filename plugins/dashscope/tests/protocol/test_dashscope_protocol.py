"""The sans-IO task protocol: encoding, decoding, state machines, and fuzzing (no sockets)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from voicekit_dashscope.errors import ProtocolError
from voicekit_dashscope.protocol.task import (
    Audio,
    ClientTaskProtocol,
    FinishTask,
    RecognitionParameters,
    ResultGenerated,
    RunTask,
    Sentence,
    ServerTaskProtocol,
    State,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    Violation,
    WordTiming,
    decode_client,
    decode_server,
    encode,
)

# what the official Python SDK sends (captured in the protocol notes)
SDK_RUN_TASK = json.dumps(
    {"header": {"streaming": "duplex", "task_id": "e5cc7428984a4903b24a7bd9b1732a26", "action": "run-task"},
     "payload": {"model": "fun-asr-realtime",
                 "parameters": {"sample_rate": 16000, "format": "pcm", "stream": True,
                                "semantic_punctuation_enabled": False, "vocabulary_id": "vocab-x-1",
                                "heartbeat": True, "language_hints": ["zh"]},
                 "input": {}, "task": "asr", "task_group": "audio", "function": "recognition"}})

DOC_RESULT = json.dumps({
    "header": {"task_id": "2bf83b9a-baeb-4fda-8d9a-0123456789ab", "event": "result-generated", "attributes": {}},
    "payload": {"output": {"sentence": {
        "begin_time": 170, "end_time": 920, "text": "Okay, I got it.", "heartbeat": False, "sentence_end": True,
        "sentence_id": 1, "words": [{"begin_time": 170, "end_time": 295, "text": "Okay", "punctuation": ","},
                                    {"begin_time": 295, "end_time": 503, "text": "I", "punctuation": ""}]}},
        "usage": {"duration": 3}}})


def test_sdk_run_task_decodes_and_keeps_unknown_parameters() -> None:
    msg = decode_client(SDK_RUN_TASK)
    assert isinstance(msg, RunTask)
    assert msg.model == "fun-asr-realtime"
    assert msg.parameters.vocabulary_id == "vocab-x-1"
    assert msg.parameters.heartbeat is True
    assert msg.parameters.language_hints == ("zh",)
    assert msg.parameters.extra == {"stream": True}
    # and it survives a round trip unchanged
    again = decode_client(encode(msg))
    assert again == msg


def test_documented_result_decodes() -> None:
    ev = decode_server(DOC_RESULT)
    assert isinstance(ev, ResultGenerated)
    assert ev.sentence.is_final and ev.usage_duration == 3
    assert ev.sentence.words[0] == WordTiming(170, 295, "Okay", ",")
    assert ev.task_id == "2bf83b9a-baeb-4fda-8d9a-0123456789ab"


def test_final_by_end_time_alone_like_the_sdk() -> None:
    s = Sentence(1, "x", 0, end_time=500, sentence_end=False)
    assert s.is_final
    assert not Sentence(1, "x", 0).is_final


def test_server_events_round_trip() -> None:
    for ev in (TaskStarted("t1"), TaskFinished("t1"), TaskFailed("t1", "CLIENT_ERROR", "request timeout"),
               ResultGenerated("t1", Sentence(2, "hi there", 10, None, False, False,
                                              (WordTiming(10, 20, "hi"),)), None),
               ResultGenerated("t1", Sentence(2, "hi there.", 10, 90, True, False, (), "neutral", 0.8), 1)):
        assert decode_server(encode(ev)) == ev


def test_task_failed_fields_are_in_the_header() -> None:
    frame = json.loads(encode(TaskFailed("t1", "CLIENT_ERROR", "request timeout after 23 seconds.")))
    assert frame["header"]["error_code"] == "CLIENT_ERROR"
    assert frame["header"]["error_message"] == "request timeout after 23 seconds."
    assert frame["payload"] == {}


def test_interim_results_have_null_end_time_and_usage() -> None:
    frame = json.loads(encode(ResultGenerated("t", Sentence(1, "he", 0), None)))
    assert frame["payload"]["usage"] is None
    assert frame["payload"]["output"]["sentence"]["end_time"] is None


@pytest.mark.parametrize("bad", [
    {"format": "flac", "sample_rate": 16000},
    {"format": "pcm", "sample_rate": "16000"},
    {"format": "pcm", "sample_rate": 16000, "max_sentence_silence": 100},
    {"format": "pcm", "sample_rate": 16000, "speech_noise_threshold": 2.0},
    {"format": "pcm", "sample_rate": 16000, "heartbeat": "yes"},
    {"sample_rate": 16000},
])
def test_bad_parameters_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        RecognitionParameters.from_json(bad)


def test_client_state_machine_happy_path() -> None:
    c = ClientTaskProtocol()
    c.run_task(RunTask("t1", "fun-asr-realtime", RecognitionParameters()))
    with pytest.raises(ProtocolError):
        c.audio(b"\0\0")  # not before task-started
    assert isinstance(c.receive(encode(TaskStarted("t1"))), TaskStarted)
    assert c.audio(b"\0\0") == b"\0\0"
    c.receive(encode(ResultGenerated("t1", Sentence(1, "a", 0), None)))
    c.finish_task()
    assert isinstance(c.receive(encode(TaskFinished("t1"))), TaskFinished)
    assert c.state is State.IDLE
    c.run_task(RunTask("t2", "fun-asr-realtime", RecognitionParameters()))  # connection reuse


def test_client_rejects_out_of_order_and_foreign_events() -> None:
    c = ClientTaskProtocol()
    with pytest.raises(ProtocolError):
        c.receive(encode(TaskStarted("t1")))  # no task
    c.run_task(RunTask("t1", "m", RecognitionParameters()))
    with pytest.raises(ProtocolError, match="before task-started"):
        c.receive(encode(ResultGenerated("t1", Sentence(1, "a", 0), None)))
    c2 = ClientTaskProtocol()
    c2.run_task(RunTask("t1", "m", RecognitionParameters()))
    with pytest.raises(ProtocolError, match="running task"):
        c2.receive(encode(TaskStarted("other")))
    with pytest.raises(ProtocolError, match="binary"):
        c2.receive(b"\x00\x01")


def test_server_state_machine_rejects_second_run_task_and_early_audio() -> None:
    s = ServerTaskProtocol()
    v = s.receive(b"\0\0")
    assert isinstance(v, Violation) and "before task-started" in v.reply.error_message
    s = ServerTaskProtocol()
    run = encode(RunTask("t1", "fun-asr-realtime", RecognitionParameters()))
    assert isinstance(s.receive(run), RunTask)
    s.started()
    v = s.receive(encode(RunTask("t2", "fun-asr-realtime", RecognitionParameters())))
    assert isinstance(v, Violation)
    assert v.reply.error_message == "Invalid action('run-task')! Please follow the protocol!"
    s = ServerTaskProtocol()
    s.receive(run)
    s.started()
    v = s.receive(encode(FinishTask("not-t1")))
    assert isinstance(v, Violation) and "does not match" in v.reply.error_message
    s = ServerTaskProtocol(audio_before_start="ignore")
    assert s.receive(b"\0\0") is None


def test_server_protocol_full_task() -> None:
    s = ServerTaskProtocol()
    s.receive(encode(RunTask("t1", "m", RecognitionParameters())))
    assert decode_server(s.started()) == TaskStarted("t1")
    assert isinstance(s.receive(b"\1\0"), Audio)
    assert isinstance(s.receive(encode(FinishTask("t1"))), FinishTask)
    s.result(Sentence(1, "done", 0, 100, True), 1)
    assert decode_server(s.finished()) == TaskFinished("t1")
    assert s.state is State.IDLE


# ------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=8)

header_keys = st.sampled_from(["event", "action", "task_id", "error_code", "error_message", "streaming",
                               "attributes"])
event_names = st.sampled_from(["task-started", "result-generated", "task-finished", "task-failed", "run-task",
                               "finish-task", "continue-task", "bogus"])
structured = st.fixed_dictionaries({
    "header": st.dictionaries(header_keys, event_names | json_values, max_size=6),
    "payload": st.one_of(json_values, st.fixed_dictionaries({
        "output": st.one_of(json_values, st.fixed_dictionaries({"sentence": json_values})),
        "usage": json_values, "parameters": json_values, "model": json_values})),
})
frames = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=200),
    json_values.map(json.dumps),
    structured.map(json.dumps),
    structured.map(lambda d: json.dumps(d)[: len(json.dumps(d)) // 2]),  # truncated
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_fuzz_server_decoder_only_raises_protocol_error(frame: str | bytes) -> None:
    try:
        decode_server(frame)
    except ProtocolError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_fuzz_client_decoder_only_raises_protocol_error(frame: str | bytes) -> None:
    try:
        decode_client(frame)
    except ProtocolError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.lists(frames, max_size=6))
def test_fuzz_state_machines_never_crash(seq: list[str | bytes]) -> None:
    c = ClientTaskProtocol()
    c.run_task(RunTask("t1", "m", RecognitionParameters()))
    s = ServerTaskProtocol()
    for frame in seq:
        try:
            c.receive(frame)
        except ProtocolError:
            pass
        out = s.receive(frame)
        assert out is None or isinstance(out, (Violation, RunTask, Audio)) or hasattr(out, "task_id")


def test_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_server("[" * 100000 + "]" * 100000)
