"""``voicekit serve`` over real loopback sockets: the page, a conversation with the robot on real
speech (moonshine, webrtc VAD, espeak), and each protection."""

from __future__ import annotations

import json
import re
import shutil
import wave
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
from servekit import serving  # type: ignore[import-not-found]  # next to this file
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from voicekit.errors import ConfigError
from voicekit.plugins.build import load_assistant, make_asr, make_tts, make_vad
from voicekit.serve.protocol import CloseCode
from voicekit.serve.server import STATIC, ServeConfig, SessionRecipe, VoiceServer, check_bind, is_loopback
from voicekit.testing.data import speech


@pytest.fixture(scope="module")
def recipe() -> SessionRecipe:
    return SessionRecipe(asr=make_asr("moonshine"), vad_factory=lambda: make_vad("webrtc", sample_rate=16000),
                         assistant=load_assistant("robot"), tts=make_tts("espeak"),
                         names={"asr": "moonshine", "vad": "webrtc", "tts": "espeak"})


@pytest.fixture(scope="module")
def goforward_pcm() -> bytes:
    with wave.open(str(speech("goforward"))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


def ws_url(server: VoiceServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


async def http(port: int, path: str, *, method: str = "GET",
               headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a real socket, parsed with h11."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    async with stream:
        all_headers = [("host", f"127.0.0.1:{port}"), *headers]
        if any(k == "host" for k, _ in headers):
            all_headers = list(headers)
        await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=all_headers))
                              + conn.send(h11.EndOfMessage()))
        status, got, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                got = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, got, body


async def say_hello(ws: WebSocketConnection, **fields: Any) -> dict[str, Any]:
    await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000, **fields}))
    return json.loads(await ws.get_message())  # type: ignore[no-any-return]


async def closed_with(ws: WebSocketConnection) -> tuple[list[Any], int]:
    """Read until the server closes: the messages, and the close code."""
    got: list[Any] = []
    with trio.fail_after(10):
        try:
            while True:
                message = await ws.get_message()
                got.append(json.loads(message) if isinstance(message, str) else message)
        except ConnectionClosed as exc:
            assert exc.reason is not None
            return got, exc.reason.code


def live_tasks() -> list[str]:
    """The names of every task running under this trio run, for checking that a connection's
    tasks (handler, session, replies, WebSocket reader) are all gone once it has closed."""
    def walk(task: trio.lowlevel.Task) -> list[str]:
        names = [task.name]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                names += walk(child)
        return names
    return walk(trio.lowlevel.current_root_task())


async def no_connection_tasks_left() -> None:
    with trio.fail_after(5):
        while any("_run_handler" in name or "voicekit.session" in name or "voicekit_moonshine" in name
                  or "_reader_task" in name for name in live_tasks()):
            await trio.sleep(0.01)


def errors(messages: list[Any]) -> list[dict[str, Any]]:
    return [m for m in messages if isinstance(m, dict) and m["type"] == "error"]


# -- the page ---------------------------------------------------------------------------------------

async def test_serves_the_page_and_its_scripts(recipe: SessionRecipe) -> None:
    async with serving(recipe) as server:
        assert server.port
        status, headers, body = await http(server.port, "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'id="start"' in body and b'src="client.js"' in body
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        for path in ("/client.js", "/capture-worklet.js", "/downsampler.js"):
            status, headers, body = await http(server.port, path)
            assert status == 200 and headers["content-type"].startswith("text/javascript"), path
            assert int(headers["content-length"]) == len(body) > 500
        assert len(STATIC) == 5
        status, headers, body = await http(server.port, "/", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 500
        assert (await http(server.port, "/secret.txt"))[0] == 404
        assert (await http(server.port, "/../pyproject.toml"))[0] == 404
        assert (await http(server.port, "/", method="POST"))[0] == 405
        status, _, body = await http(server.port, "/ws")  # a plain GET of the WebSocket endpoint
        assert status == 426 and b"WebSocket" in body


async def test_broken_websocket_handshake(recipe: SessionRecipe) -> None:
    async with serving(recipe) as server:
        assert server.port
        status, headers, _ = await http(server.port, "/ws", headers=(
            ("host", f"127.0.0.1:{server.port}"), ("upgrade", "websocket"), ("connection", "Upgrade")))
        assert status == 400 and headers["sec-websocket-version"] == "13"
        await no_connection_tasks_left()


async def test_garbage_and_slow_http_requests(recipe: SessionRecipe) -> None:
    async with serving(recipe, request_timeout=0.3) as server:
        assert server.port
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"HELLO THERE\r\n\r\n")
            reply = await stream.receive_some(4096)
        assert reply.startswith(b"HTTP/1.1 400")
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\n")  # never finishes its head
            with trio.fail_after(5):
                reply = await stream.receive_some(4096)
        assert reply.startswith(b"HTTP/1.1 408")
        assert (await http(server.port, "/"))[0] == 200  # the server is still fine


# -- a conversation ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.realspeech
async def test_conversation_with_the_robot(recipe: SessionRecipe, goforward_pcm: bytes) -> None:
    """Real speech in over the socket; transcript, intent, reply text and reply audio out."""
    pcm = b"\x00" * 16000 + goforward_pcm + b"\x00" * 32000  # 0.5 s silence, speech, 1 s silence
    # the audio goes in as one burst, so its oldest second waits for the whole recognition: on a
    # loaded machine that exceeds the default 1.5 s --max-backlog (shedding is tested elsewhere)
    async with serving(recipe, max_backlog=30.0) as server, open_websocket_url(ws_url(server)) as ws:
        ready = await say_hello(ws, client="pytest")
        assert ready["type"] == "ready" and ready["assistant"] == "robot" and ready["sample_rate"] == 16000
        audio_format = json.loads(await ws.get_message())
        assert audio_format == {"type": "audio_format", "sample_rate": 22050, "channels": 1, "format": "pcm_s16le"}
        for i in range(0, len(pcm), 640):  # 20 ms messages, as fast as the socket takes them
            await ws.send_message(pcm[i:i + 640])
        await ws.send_message(json.dumps({"type": "end"}))
        messages, code = await closed_with(ws)
    assert code == CloseCode.NORMAL
    assert not errors(messages)
    events = [m["event"] for m in messages if isinstance(m, dict)]
    kinds = [e["event"] for e in events]
    assert "warning" not in kinds and "error" not in kinds  # e.g. no input audio dropped
    assert kinds[0] == "session_started" and kinds[-1] == "session_ended"
    assert events[-1]["reason"] == "input ended"
    finals = [e["text"] for e in events if e["event"] == "transcript" and e["is_final"]]
    assert len(finals) == 1 and re.fullmatch(r"go forward ten met(er|re)s", re.sub(r"[^a-z ]", "", finals[0].lower()))
    matched = next(e for e in events if e["event"] == "intent_matched")
    assert matched["intent"] == "move" and matched["slots"] == {"direction": "forward", "distance": 10}
    assert [e["text"] for e in events if e["event"] == "reply_text"] == ["Moving forward 10 meters."]
    finished = next(e for e in events if e["event"] == "reply_finished")
    audio = b"".join(m for m in messages if isinstance(m, bytes))
    # every sample the player counted reached the browser, as 16-bit mono at 22050 Hz (a second or more)
    assert len(audio) == 2 * finished["samples_played"] and finished["sample_rate"] == 22050
    assert finished["samples_played"] > 22050
    # the reply audio came after reply_started and before reply_finished
    first_audio = next(i for i, m in enumerate(messages) if isinstance(m, bytes))
    last_audio = max(i for i, m in enumerate(messages) if isinstance(m, bytes))
    started_at = next(i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("event", {}).get("event")
                      == "reply_started")
    finished_at = next(i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("event", {}).get("event")
                       == "reply_finished")
    assert started_at < first_audio and last_audio < finished_at
    assert server.stats.end_reasons == ["input ended"] and server.active == 0


@pytest.mark.slow
@pytest.mark.realspeech
async def test_closing_the_socket_cancels_the_session(recipe: SessionRecipe, goforward_pcm: bytes) -> None:
    """The browser goes away in the middle of the spoken reply: the session is cancelled and
    nothing of it is left running."""
    pcm = goforward_pcm + b"\x00" * 32000
    async with serving(recipe) as server:
        async with open_websocket_url(ws_url(server)) as ws:
            await say_hello(ws)
            await ws.get_message()  # audio_format
            for i in range(0, len(pcm), 640):
                await ws.send_message(pcm[i:i + 640])
            with trio.fail_after(15):
                while True:
                    message = await ws.get_message()
                    if isinstance(message, bytes):
                        break  # the reply has started to play
            assert server.active == 1
            running = live_tasks()
            assert any("voicekit.session" in name for name in running), running
            assert any("_run_handler" in name for name in running), running
        await no_connection_tasks_left()  # nothing of that conversation is left running
        assert server.stats.end_reasons == ["cancelled"] and server.active == 0
        # the server goes on serving
        async with open_websocket_url(ws_url(server)) as ws:
            assert (await say_hello(ws))["type"] == "ready"


@pytest.mark.slow
@pytest.mark.realspeech
async def test_barge_in_stops_the_reply_audio(recipe: SessionRecipe, goforward_pcm: bytes) -> None:
    """The user speaks again while the reply plays: the browser gets a reply_interrupted event,
    and not one sample of the interrupted reply after it."""
    silence = b"\x00" * 32000  # 1 s
    async with serving(recipe) as server, open_websocket_url(ws_url(server)) as ws:
        await say_hello(ws)
        await ws.get_message()  # audio_format
        messages: list[Any] = []
        for i in range(0, len(goforward_pcm + silence), 640):
            await ws.send_message((goforward_pcm + silence)[i:i + 640])
        with trio.fail_after(15):
            while not messages or not isinstance(messages[-1], bytes):  # until the reply plays
                message = await ws.get_message()
                messages.append(json.loads(message) if isinstance(message, str) else message)
        again = goforward_pcm + silence
        for i in range(0, len(again), 640):
            await ws.send_message(again[i:i + 640])
        await ws.send_message(json.dumps({"type": "end"}))
        rest, code = await closed_with(ws)
    messages += rest
    assert code == CloseCode.NORMAL and not errors(messages)
    cut = next(i for i, m in enumerate(messages) if isinstance(m, dict)
               and m.get("event", {}).get("event") == "reply_interrupted")
    interrupted = messages[cut]["event"]
    assert interrupted["turn_id"] == 1 and 0 < interrupted["samples_played"] < 22050 * 1.5
    before = sum(len(m) for m in messages[:cut] if isinstance(m, bytes))
    assert before == 2 * interrupted["samples_played"]  # exactly what was played, nothing more
    after = [m for m in messages[cut:] if isinstance(m, dict) and m["type"] == "event"]
    # the next audio belongs to the second turn's reply, which starts after the interruption
    second = next(i for i, m in enumerate(messages) if i > cut and isinstance(m, dict)
                  and m.get("event", {}).get("event") == "reply_started")
    assert not any(isinstance(m, bytes) for m in messages[cut:second])
    assert messages[second]["event"]["turn_id"] == 2
    assert [e["event"]["text"] for e in after if e["event"]["event"] == "reply_finished"] == [
        "Moving forward 10 meters."]


@pytest.mark.slow
@pytest.mark.realspeech
async def test_the_documented_python_client_ends_cleanly(recipe: SessionRecipe, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """docs/browser.md's client, as printed: it ends on the server's normal close, no traceback."""
    text = (Path(__file__).parents[2] / "docs" / "browser.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "async def talk" in b)
    shutil.copy(speech("goforward"), tmp_path / "go.wav")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/browser.md", "exec"), namespace)
    async with serving(recipe) as server:
        with trio.fail_after(30):
            code = await namespace["talk"](ws_url(server), namespace["pcm"])
        assert server.stats.end_reasons == ["input ended"]
    out = capsys.readouterr().out
    assert code == 1000 and '"type":"ready"' in out and "Moving forward 10 meters." in out
    assert out.rstrip().endswith("closed: 1000 session ended")


# -- protections ------------------------------------------------------------------------------------

def test_binding_beyond_loopback_needs_a_token() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"):
        assert is_loopback(host), host
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        assert not is_loopback(host), host
        with pytest.raises(ConfigError, match=r"without a token.*--token"):
            check_bind(host, None)
        check_bind(host, "a-long-random-token")
    with pytest.raises(ConfigError, match="--token is empty"):
        check_bind("0.0.0.0", "  ")


async def test_server_refuses_to_start_on_a_public_address_without_token(recipe: SessionRecipe) -> None:
    server = VoiceServer(recipe, ServeConfig(host="0.0.0.0", port=0))
    with pytest.raises(ConfigError, match=r"refusing to listen on '0\.0\.0\.0'"):
        await server.serve()
    assert server.port is None  # it never listened


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_sessions must be a positive number"):
        ServeConfig(max_sessions=0)
    with pytest.raises(ConfigError, match=r"port must be 0\.\.65535"):
        ServeConfig(port=70000)
    assert "hunter2" not in repr(ServeConfig(token="hunter2"))


async def test_token_is_required_in_the_hello(recipe: SessionRecipe) -> None:
    async with serving(recipe, token="correct-horse") as server:
        for fields in ({}, {"token": "wrong"}):
            async with open_websocket_url(ws_url(server)) as ws:
                reply = await say_hello(ws, **fields)
                assert reply["type"] == "error" and reply["code"] == "unauthorized"
                _, code = await closed_with(ws)
                assert code == CloseCode.POLICY_VIOLATION
        async with open_websocket_url(ws_url(server)) as ws:
            assert (await say_hello(ws, token="correct-horse"))["type"] == "ready"
        assert server.stats.rejected_unauthorized == 2 and server.stats.sessions_started == 1


async def test_message_size_limits(recipe: SessionRecipe) -> None:
    async with serving(recipe) as server:
        async with open_websocket_url(ws_url(server)) as ws:
            await say_hello(ws)
            await ws.send_message(b"\x00" * (64 * 1024 + 2))
            messages, code = await closed_with(ws)
            assert code == CloseCode.MESSAGE_TOO_BIG
            assert "65538 bytes is over the 65536-byte limit" in errors(messages)[0]["message"]
        async with open_websocket_url(ws_url(server)) as ws:
            await ws.send_message(json.dumps({"type": "hello", "client": "x" * 5000}))
            messages, code = await closed_with(ws)
            assert code == CloseCode.MESSAGE_TOO_BIG and errors(messages)[0]["code"] == "too_big"
        async with open_websocket_url(ws_url(server)) as ws:  # far over: cut off by the WebSocket layer
            await say_hello(ws)
            await ws.send_message(b"\x00" * (1024 * 1024))
            _, code = await closed_with(ws)
            # the server reads and drops the rest of the message (a lingering close), so the close
            # frame reaches the client instead of being destroyed by a TCP reset
            assert code == CloseCode.MESSAGE_TOO_BIG
        with trio.fail_after(5):
            while server.active:
                await trio.sleep(0.01)


async def test_bad_traffic_closes_with_a_reason(recipe: SessionRecipe) -> None:
    async with serving(recipe) as server:
        async with open_websocket_url(ws_url(server)) as ws:
            await ws.send_message(b"\x00\x00" * 160)  # audio before the hello
            messages, code = await closed_with(ws)
            assert code == CloseCode.POLICY_VIOLATION and "before the hello" in errors(messages)[0]["message"]
        async with open_websocket_url(ws_url(server)) as ws:
            await ws.send_message(json.dumps({"type": "hello", "sample_rate": 1000}))
            messages, code = await closed_with(ws)
            assert code == CloseCode.PROTOCOL_ERROR and errors(messages)[0]["code"] == "bad_hello"
        async with open_websocket_url(ws_url(server)) as ws:  # nonsense in the middle of a conversation
            await say_hello(ws)
            await ws.send_message("{not json")
            messages, code = await closed_with(ws)
            assert code == CloseCode.UNSUPPORTED_DATA and "not valid JSON" in errors(messages)[0]["message"]
            assert messages[-1]["type"] == "error"
        assert server.stats.protocol_errors == 3


async def test_hello_timeout(recipe: SessionRecipe) -> None:
    async with serving(recipe, hello_timeout=0.3) as server, open_websocket_url(ws_url(server)) as ws:
        start = trio.current_time()
        messages, code = await closed_with(ws)  # we say nothing
        assert code == CloseCode.POLICY_VIOLATION
        assert errors(messages)[0]["code"] == "timeout" and "no hello within 0.3 s" in errors(messages)[0]["message"]
        assert 0.25 < trio.current_time() - start < 3
        assert server.active == 0


async def test_concurrent_sessions_are_capped(recipe: SessionRecipe) -> None:
    async with serving(recipe, max_sessions=2) as server:
        async with open_websocket_url(ws_url(server)) as first, open_websocket_url(ws_url(server)) as second:
            assert (await say_hello(first))["type"] == "ready"
            assert (await say_hello(second))["type"] == "ready"
            async with open_websocket_url(ws_url(server)) as third:
                assert server.active == 2  # a connection takes a slot only once its hello is accepted
                busy = await say_hello(third)
                messages, code = await closed_with(third)
                messages.insert(0, busy)
                assert code == CloseCode.TRY_AGAIN_LATER
                assert errors(messages)[0]["code"] == "busy" and "2 conversations" in errors(messages)[0]["message"]
            assert server.active == 2 and server.stats.rejected_busy == 1
        with trio.fail_after(5):
            while server.active:  # closing the two frees their places
                await trio.sleep(0.01)
        async with open_websocket_url(ws_url(server)) as again:
            assert (await say_hello(again))["type"] == "ready"
        assert server.stats.end_reasons[:2] == ["cancelled", "cancelled"]


async def test_foreign_origin_and_host_are_refused(recipe: SessionRecipe) -> None:
    async with serving(recipe, allowed_origins=("https://app.example",)) as server:
        assert server.port
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url(server), extra_headers=[(b"Origin", b"https://evil.example")]):
                pass
        assert info.value.status_code == 403 and b"evil.example" in (info.value.body or b"")
        own = f"http://127.0.0.1:{server.port}".encode()
        for origin in (own, b"https://app.example"):
            async with open_websocket_url(ws_url(server), extra_headers=[(b"Origin", origin)]) as ws:
                assert (await say_hello(ws))["type"] == "ready"
        # DNS rebinding: a page of evil.example whose name now points at 127.0.0.1
        status, _, body = await http(server.port, "/", headers=(("host", f"evil.example:{server.port}"),))
        assert status == 403 and b"answers only to localhost" in body
        assert (await http(server.port, "/", headers=(("host", f"localhost:{server.port}"),)))[0] == 200


async def test_with_a_token_other_host_names_are_fine(recipe: SessionRecipe) -> None:
    async with serving(recipe, token="t0ken") as server:
        assert server.port
        status, _, _ = await http(server.port, "/", headers=(("host", f"voice.lan:{server.port}"),))
        assert status == 200


@pytest.mark.slow
async def test_pending_pool_and_idle_are_counted(recipe: SessionRecipe) -> None:
    """The pool of connections without a hello is separate from the session slots, bounded, and
    counted in the stats; so are idle closes."""
    async with serving(recipe, max_sessions=1, max_pending=2, idle_timeout=0.3) as server:
        async with open_websocket_url(ws_url(server)) as a, open_websocket_url(ws_url(server)) as b:
            with trio.fail_after(5):
                while server.pending < 2:
                    await trio.sleep(0.01)
            assert server.active == 0  # silent connections hold no session slot
            async with open_websocket_url(ws_url(server)) as c:  # the pool is full: the oldest makes room
                messages, code = await closed_with(a)
                assert code == CloseCode.TRY_AGAIN_LATER and errors(messages)[0]["code"] == "busy"
                assert server.stats.evicted == 1
                assert (await say_hello(c))["type"] == "ready" and server.active == 1
                messages, code = await closed_with(c)  # then says nothing
                assert code == CloseCode.POLICY_VIOLATION and errors(messages)[0]["code"] == "idle_timeout"
                assert server.stats.idle_closed == 1
            assert (await say_hello(b))["type"] == "ready"
