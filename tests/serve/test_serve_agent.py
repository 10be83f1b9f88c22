"""``voicekit serve ASSISTANT --agent MODEL`` (issue 9, item 16): a browser talks to a realtime agent.

One ``voicekit emulate dashscope`` process (Omni replies scripted: one long answer, and the robot's
``move`` tool on "forward") and one ``voicekit serve robot --agent ...`` process, both on loopback,
serve Python clients that speak the page's protocol and send real speech in real time: each
client gets its own agent conversation, reply audio at the announced rate, a barge-in that stops
the audio, a tool call, and the spoken result; two at once, a third refused while they run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from voicekit.cli.main import main
from voicekit.testing.data import speech
from voicekit.testing.wer import wer

pytestmark = pytest.mark.slow

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
KEY = "sk-serve-agent-0123456789"
MODEL = "qwen3.5-omni-plus-realtime"
LONG_REPLY = ("I can move forward or backward by any number of meters, and I can tell you how far I have "
              "travelled today, which so far is twelve meters, mostly in the morning.")
PROBLEMS = re.compile(r"Traceback|misnesting|\[error|\[critical|exception", re.I)
RATE = 16000
CHUNK = 1600  # samples: 100 ms messages, sent in real time


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "VOICEKIT_SERVE_"))}


def _wait_for(proc: subprocess.Popen[bytes], log: Path, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if m := re.search(pattern, text):
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"no {pattern!r} from {proc.args}:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("serve-agent-emulator")
    script = folder / "omni.json"
    script.write_text(json.dumps({
        "replies": [LONG_REPLY], "after_tool": "Done. {output}",
        "tool_rules": [{"keyword": "forward", "tool": "move", "arguments": {"direction": "forward", "distance": 10}}],
    }))
    log = folder / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([VOICEKIT, "emulate", "dashscope", "--port", "0", "--omni-script", str(script)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env())
    try:
        port = _wait_for(proc, log, r"ws://127\.0\.0\.1:(\d+)").group(1)
        yield f"ws://127.0.0.1:{port}", log
        assert proc.poll() is None, f"the emulator exited:\n{log.read_text()[-3000:]}"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def served(emulator: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``voicekit serve robot --agent MODEL`` on a free port: (its http URL, its log)."""
    base_url, _ = emulator
    log = tmp_path_factory.mktemp("serve-agent") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([VOICEKIT, "serve", "robot", "--agent", MODEL, "--port", "0", "--max-sessions", "2",
                                 "--idle-timeout", "4",
                                 "--agent-option", f"base_url={base_url}", "--agent-option", f"api_key={KEY}"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env())
    try:
        url = _wait_for(proc, log, r"serving 'robot' at (http://127\.0\.0\.1:\d+/)").group(1)
        yield url, log
        assert proc.poll() is None, f"voicekit serve exited:\n{log.read_text()[-3000:]}"
    finally:
        _stop(proc)
    assert KEY not in log.read_text()


def _read_16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate, data = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels())[:, 0]
    if rate != RATE:
        n = round(len(data) * RATE / rate)
        data = np.interp(np.arange(n) * rate / RATE, np.arange(len(data)), data).astype("<i2")
    return data


def _talk() -> bytes:
    """A question, then "go forward ten meters" over the (long) answer, then time for the last reply."""
    parts = [np.zeros(RATE // 2, np.int16), _read_16k(speech("something")),
             np.zeros(RATE * 5 // 2, np.int16), _read_16k(speech("goforward")), np.zeros(RATE * 9, np.int16)]
    return np.concatenate(parts).astype("<i2").tobytes()


async def converse(ws_url: str, pcm: bytes) -> dict[str, Any]:
    """What the page does: hello, microphone audio in real time, end; everything received, in order."""
    got: dict[str, Any] = {"order": [], "audio": 0, "events": []}
    async with open_websocket_url(ws_url) as ws:
        await ws.send_message(json.dumps({"type": "hello", "version": 1, "sample_rate": RATE, "client": "test"}))
        got["ready"] = json.loads(await ws.get_message())
        got["audio_format"] = json.loads(await ws.get_message())

        async def send() -> None:
            start = trio.current_time()
            for i, at in enumerate(range(0, len(pcm), CHUNK * 2)):
                await trio.sleep_until(start + i * CHUNK / RATE)
                await ws.send_message(pcm[at:at + CHUNK * 2])
            await ws.send_message(json.dumps({"type": "end"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while True:
                    message = await ws.get_message()
                    if isinstance(message, bytes):
                        got["audio"] += len(message)
                        got["order"].append(("audio", len(message)))
                        continue
                    body = json.loads(message)
                    if body["type"] == "event":
                        got["events"].append(body["event"])
                        got["order"].append(("event", body["event"]))
                    else:
                        got.setdefault("other", []).append(body)
            except ConnectionClosed as closed:
                got["close"] = closed.reason.code
            nursery.cancel_scope.cancel()
    return got


async def refused(ws_url: str) -> tuple[dict[str, Any], int | None]:
    async with open_websocket_url(ws_url) as ws:
        await ws.send_message(json.dumps({"type": "hello", "sample_rate": RATE}))
        answer = json.loads(await ws.get_message())
        try:
            await ws.get_message()
        except ConnectionClosed as closed:
            return answer, closed.reason.code
    return answer, None


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def audio_after_interruption(order: list[tuple[str, Any]]) -> int:
    """Reply-audio bytes that arrived after the interruption and before the next reply started."""
    total, counting = 0, False
    for kind, value in order:
        if kind == "event" and value["event"] == "reply_interrupted":
            counting = True
        elif kind == "event" and value["event"] == "reply_started":
            counting = False
        elif kind == "audio" and counting:
            total += value
    return total


def check_conversation(got: dict[str, Any]) -> None:
    events = got["events"]
    assert got["ready"]["type"] == "ready" and got["ready"]["assistant"] == "robot", got["ready"]
    assert got["audio_format"] == {"type": "audio_format", "sample_rate": 24000, "channels": 1,
                                   "format": "pcm_s16le"}, got["audio_format"]
    assert events[0]["event"] == "session_started" and events[0]["asr"] == MODEL
    assert events[-1]["event"] == "session_ended", events[-1]
    assert got["close"] == 1000, (got["close"], got.get("other"))
    finals = [e["text"] for e in kinds(events, "transcript") if e["is_final"]]
    assert len(finals) == 2 and wer(["go forward ten meters"], [finals[1]]) <= 0.25, finals
    (cut,) = kinds(events, "reply_interrupted")
    assert cut["text"].startswith("I can move forward") and len(cut["heard_text"]) < len(LONG_REPLY), cut
    assert audio_after_interruption(got["order"]) <= 24000 * 2 // 10  # the barge-in stopped the audio
    (call,) = kinds(events, "intent_matched")
    assert call["intent"] == "move" and "Moving forward 10 meters" in str(call["slots"]), call
    assert [e["text"] for e in kinds(events, "reply_finished")] == ["Done. Moving forward 10 meters."]
    # the page joins a turn's reply_text pieces with spaces: they come a sentence at a time (not
    # the model's word deltas), and a reply cut in its first sentence shows what was heard
    texts = {(e["turn_id"], e["text"]) for e in kinds(events, "reply_text")}
    by_turn: dict[int, list[str]] = {}
    for e in kinds(events, "reply_text"):
        by_turn.setdefault(e["turn_id"], []).append(e["text"])
    assert by_turn[cut["turn_id"]] == [cut["heard_text"] + " …"], texts
    assert " ".join(by_turn[kinds(events, "reply_finished")[0]["turn_id"]]) == "Done. Moving forward 10 meters."
    assert all(t.endswith((".", "…")) for _, t in texts), texts
    assert got["audio"] > 24000 * 2 * 2  # over 2 s of the agent's voice, as played


async def test_two_browsers_talk_to_their_own_agents_at_once(served: tuple[str, Path],
                                                             emulator: tuple[str, Path]) -> None:
    url, log = served
    ws_url = url.replace("http://", "ws://") + "ws"
    pcm = _talk()
    results: list[dict[str, Any]] = []
    busy: list[tuple[dict[str, Any], int | None]] = []

    async def one() -> None:
        results.append(await converse(ws_url, pcm))

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
            await trio.sleep(3)  # both past their hello: --max-sessions 2 is full
            busy.append(await refused(ws_url))
    assert busy[0][0]["code"] == "busy" and busy[0][1] == 1013, busy
    assert len(results) == 2
    for got in results:
        check_conversation(got)
    assert results[0]["ready"]["session_id"] != results[1]["ready"]["session_id"]

    metrics = urllib.request.urlopen(url + "metrics", timeout=10).read().decode()
    assert re.search(r'voicekit_serve_sessions_ended_total\{reason="session_ended"\} 2\.0', metrics), metrics
    assert re.search(r'voicekit_serve_turn_latency_seconds_count\{stage="first_audio"\} [1-9]', metrics)
    assert re.search(r"voicekit_serve_barge_in_latency_seconds_count [1-9]", metrics)
    text = log.read_text(errors="replace")
    assert not PROBLEMS.search(text), text[-3000:]
    emulator_log = emulator[1].read_text(errors="replace")
    assert not PROBLEMS.search(emulator_log), emulator_log[-3000:]


async def test_one_more_conversation_then_an_idle_client_is_closed(served: tuple[str, Path]) -> None:
    """The server outlives its conversations: one more after the first two; then a client that
    says hello and goes silent is closed by --idle-timeout (4 s here), agent and all."""
    url, _ = served
    ws_url = url.replace("http://", "ws://") + "ws"
    with trio.fail_after(60):
        got = await converse(ws_url, _talk())
    check_conversation(got)
    with trio.fail_after(30):
        async with open_websocket_url(ws_url) as ws:
            await ws.send_message(json.dumps({"type": "hello", "sample_rate": RATE}))
            assert json.loads(await ws.get_message())["type"] == "ready"
            messages = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    messages.append(await ws.get_message())
    errors = [json.loads(m) for m in messages if isinstance(m, str) and json.loads(m)["type"] == "error"]
    assert [e["code"] for e in errors] == ["idle_timeout"] and closed.value.reason.code == 1008, messages


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "--port", "0"], "name the assistant to serve"),
    (["serve", "robot", "--agent", MODEL, "--asr", "moonshine"], "--asr has no effect with --agent"),
    (["serve", "robot", "--agent", MODEL, "--tts", "none"], "--tts has no effect with --agent"),
    (["serve", "robot", "--agent", MODEL, "--end-silence-ms", "500"], "--end-silence-ms has no effect"),
    (["serve", "robot", "--agent", MODEL, "--interrupt", "none"], "--interrupt none is not available"),
    (["serve", "robot", "--agent", "qwen3-omni-flash-realtime", "--interrupt", "semantic",
      "--agent-option", f"api_key={KEY}"], "has no semantic_vad"),
    (["serve", "robot", "--agent", MODEL, "--agent-option", "colour=red"], "has no option 'colour'"),
    (["serve", "robot", "--agent-option", "voice=Cherry"], "--agent-option needs --agent"),
    (["serve", "--agent", "no-such-agent"], "no agents plugin named 'no-such-agent'"),
])
def test_agent_command_line_mistakes_are_one_line(argv: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from voicekit.logging import _redactors

    before = list(_redactors)
    try:  # in this process: the key redactors the command registers must not outlive the test
        assert main(argv) == 1
    finally:
        _redactors[:] = before
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0, err
