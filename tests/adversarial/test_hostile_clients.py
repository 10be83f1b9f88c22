"""Hostile clients of ``voicekit serve``: one real server process on loopback, attacked the way a
stranger on the network would (slot exhaustion before and after the hello, from one address and
from many, idle connections, frames that break RFC 6455, deeply nested JSON, lone surrogates,
oversize request heads and messages, slowloris heads), and by a handler and a plugin that call
``sys.exit()`` (``hostile_plugins/``, put on the server's ``PYTHONPATH``).

Every attack is bounded in time (``trio.fail_after``) and in count, and after each the real user
(the token holder, from 127.0.0.1) still gets a conversation. Attackers come from other loopback
addresses (127.0.0.2 ...), which Linux routes to the same server, so the per-address limits can be
told apart from the global ones.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

# every test talks to one `voicekit serve` started in a subprocess for the file
pytestmark = pytest.mark.slow

TOKEN = "hostile-clients-token-0123456789"
MAX_SESSIONS = 2
HELLO_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0
REQUEST_TIMEOUT = 3.0
MAX_PENDING = 12
PER_ADDRESS = 4
PLUGINS = Path(__file__).parent / "hostile_plugins"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``voicekit serve`` with small limits, serving an assistant whose handler calls sys.exit(),
    with a VAD plugin that calls sys.exit() on the bytes EXIT. At the end it must still be running
    and its log must hold no traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    log_path = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voicekit.cli.main", "serve", "exiting_assistant:assistant", "--port", "0",
             "--tts", "none", "--vad", "exiting", "--token", TOKEN, "--max-sessions", str(MAX_SESSIONS),
             "--hello-timeout", str(HELLO_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT),
             "--request-timeout", str(REQUEST_TIMEOUT), "--max-pending", str(MAX_PENDING),
             "--max-pending-per-address", str(PER_ADDRESS)],
            stderr=log, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while (match := re.search(r"at http://127\.0\.0\.1:(\d+)/", log_path.read_text(errors="replace"))) is None:
        assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text(errors="replace")
        time.sleep(0.1)
    try:
        yield proc, int(match.group(1))
        assert proc.poll() is None, "voicekit serve stopped:\n" + log_path.read_text(errors="replace")[-4000:]
    finally:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]


# -- clients ------------------------------------------------------------------------------------------

@asynccontextmanager
async def websocket(port: int, source: str = "127.0.0.1") -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to the server from the loopback address ``source``."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    async with trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, f"127.0.0.1:{port}", "/ws")
        try:
            yield ws
        finally:
            with trio.move_on_after(2) as scope:
                scope.shield = True
                await ws.aclose()
            nursery.cancel_scope.cancel()


async def rejection(port: int, source: str) -> ConnectionRejected:
    """How the server refuses a WebSocket handshake from ``source``."""
    try:
        async with websocket(port, source):
            pass
    except ConnectionRejected as exc:
        return exc
    except BaseExceptionGroup as group:
        found = group.split(ConnectionRejected)[0]
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        if isinstance(found, ConnectionRejected):
            return found
        raise
    raise AssertionError(f"a WebSocket from {source} was accepted")


async def hello(ws: WebSocketConnection, **fields: Any) -> dict[str, Any]:
    await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000, "token": TOKEN, **fields}))
    return json.loads(await ws.get_message())  # type: ignore[no-any-return]


async def closed_with(ws: WebSocketConnection, seconds: float = 10) -> tuple[list[Any], int]:
    """Everything until the server closes, and the close code."""
    got: list[Any] = []
    with trio.fail_after(seconds):
        try:
            while True:
                message = await ws.get_message()
                got.append(json.loads(message) if isinstance(message, str) else message)
        except ConnectionClosed as exc:
            assert exc.reason is not None
            return got, exc.reason.code


async def user_gets_a_conversation(port: int, source: str = "127.0.0.1") -> None:
    """The real user, with the token, is served. A place freed by a connection that just closed
    may take the server a moment to notice (it reads what the client still sends before it lets
    go of a socket), so ``busy`` and 429 are retried for 3 s."""
    with trio.fail_after(10):
        for _ in range(30):
            try:
                async with websocket(port, source) as ws:
                    reply = await hello(ws, client="the real user")
                    if reply["type"] == "ready":
                        await ws.send_message(json.dumps({"type": "end"}))
                        _, code = await closed_with(ws)
                        assert code == 1000
                        return
                    assert reply["code"] == "busy", reply
            except BaseExceptionGroup as group:
                if group.split(ConnectionRejected)[1] is not None:
                    raise
            await trio.sleep(0.1)
    raise AssertionError("the real user never got a conversation")


async def raw_request(port: int, head: bytes, source: str = "127.0.0.1") -> bytes:
    """Send ``head`` on a new connection and read the answer until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    answer = b""
    async with stream:
        await stream.send_all(head)
        with trio.fail_after(10):
            try:
                while data := await stream.receive_some(65536):
                    answer += data
            except trio.BrokenResourceError:
                pass
    return answer


async def raw_websocket(port: int, source: str = "127.0.0.1") -> tuple[trio.SocketStream, bytes]:
    """A WebSocket handshake by hand, for sending frames no library would send."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    key = base64.b64encode(os.urandom(16))
    await stream.send_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key))
    buf = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(4096)
            assert data, buf
            buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream, rest


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """One client frame (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def server_close(stream: trio.SocketStream, buf: bytes = b"") -> tuple[int | None, list[tuple[int, bytes]]]:
    """Read server frames until its close frame: (close code, frames before it); the code is None
    when the TCP connection ended without a close frame."""
    frames: list[tuple[int, bytes]] = []
    with trio.fail_after(10):
        while True:
            while len(buf) >= 2:
                opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n, at = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n, at = struct.unpack("!Q", buf[2:10])[0], 10
                if len(buf) < at + n:
                    break
                payload, buf = buf[at:at + n], buf[at + n:]
                if opcode == 0x8:
                    return (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005), frames
                frames.append((opcode, payload))
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return None, frames
            buf += data


# -- slot exhaustion ------------------------------------------------------------------------------------

@pytest.mark.slow
async def test_connections_without_a_hello_hold_no_session_slot(server: tuple[Any, int]) -> None:
    """The issue's attack: more silent WebSockets than --max-sessions. The user still gets in;
    the silent ones are closed at the hello deadline; one address gets at most its share."""
    _, port = server
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            silent: list[WebSocketConnection] = []

            async def squat(source: str) -> None:
                async with websocket(port, source) as ws:
                    silent.append(ws)
                    messages, code = await closed_with(ws, HELLO_TIMEOUT + 8)
                    assert code == 1008 and messages[-1]["code"] == "timeout"

            for source in ("127.0.0.2", "127.0.0.3"):  # 2 x 4 = 8 > --max-sessions 2
                for _ in range(PER_ADDRESS):
                    nursery.start_soon(squat, source)
            while len(silent) < 2 * PER_ADDRESS:
                await trio.sleep(0.01)
            # one more from an address that has its share: refused before anything is read
            refused = await rejection(port, "127.0.0.2")
            assert refused.status_code == 429 and b"too many connections" in (refused.body or b"")
            start = trio.current_time()
            await user_gets_a_conversation(port)  # while all eight squat
            assert trio.current_time() - start < HELLO_TIMEOUT  # not by waiting for them to go
    await user_gets_a_conversation(port, "127.0.0.2")  # their places are free again


@pytest.mark.slow
async def test_a_flood_from_many_addresses_cannot_lock_the_user_out(server: tuple[Any, int]) -> None:
    """More silent connections than the whole pending pool: the oldest are dropped with 1013
    (busy), the pool never grows past its size, and the user's connection, which says hello at
    once, gets through."""
    _, port = server
    count = 2 * MAX_PENDING
    codes: list[int] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            opened = 0

            async def squat(source: str) -> None:
                nonlocal opened
                async with websocket(port, source) as ws:
                    opened += 1
                    codes.append((await closed_with(ws, HELLO_TIMEOUT + 8))[1])

            for i in range(count):  # 24 connections from 6 addresses, 4 each
                nursery.start_soon(squat, f"127.0.1.{10 + i // PER_ADDRESS}")
                await trio.sleep(0.005)
            while opened < count:
                await trio.sleep(0.01)
            await user_gets_a_conversation(port)
    assert len(codes) == count
    assert codes.count(1013) >= count - MAX_PENDING  # evicted to make room: at most the pool survives
    assert set(codes) <= {1013, 1008}  # the rest ran into the hello deadline


@pytest.mark.slow
async def test_idle_conversations_are_closed_and_free_their_slots(server: tuple[Any, int]) -> None:
    """Post-auth exhaustion: token holders who say hello and then nothing fill --max-sessions; a
    third is told busy (1013); the idle ones are closed after --idle-timeout with 1008, and the
    user gets in."""
    _, port = server
    with trio.fail_after(30):
        async with websocket(port, "127.0.0.4") as a, websocket(port, "127.0.0.4") as b:
            assert (await hello(a))["type"] == "ready" and (await hello(b))["type"] == "ready"
            async with websocket(port) as third:
                busy = await hello(third)
                assert busy["type"] == "error" and busy["code"] == "busy"
                assert (await closed_with(third))[1] == 1013
            start = trio.current_time()
            for ws in (a, b):
                messages, code = await closed_with(ws, IDLE_TIMEOUT + 8)
                assert code == 1008 and ws.closed is not None and ws.closed.reason == "idle timeout"
                error = [m for m in messages if isinstance(m, dict) and m["type"] == "error"][-1]
                assert error["code"] == "idle_timeout" and "nothing received for 2 s" in error["message"]
            assert IDLE_TIMEOUT - 0.5 < trio.current_time() - start < IDLE_TIMEOUT + 6
        await user_gets_a_conversation(port)


@pytest.mark.slow
async def test_a_talking_client_is_not_idle(server: tuple[Any, int]) -> None:
    """Audio keeps a conversation alive past the idle timeout."""
    _, port = server
    with trio.fail_after(30):
        async with websocket(port, "127.0.0.5") as ws:
            assert (await hello(ws))["type"] == "ready"
            for _ in range(int(2 * IDLE_TIMEOUT / 0.1)):  # twice the idle timeout of silence, sent
                await ws.send_message(b"\x00\x00" * 1600)
                await trio.sleep(0.1)
            await ws.send_message(json.dumps({"type": "end"}))
            _, code = await closed_with(ws)
            assert code == 1000


# -- malformed traffic ---------------------------------------------------------------------------------

VIOLATIONS = {  # name: (frame, the close code RFC 6455 asks for)
    "unmasked frame": (frame(0x1, b'{"type": "end"}', mask=False), 1002),
    "reserved bit set": (frame(0x1, b"{}", rsv=4), 1002),
    "reserved opcode": (frame(0x3, b"x"), 1002),
    "fragmented ping": (frame(0x9, b"x", fin=False), 1002),
    "ping over 125 bytes": (frame(0x9, b"x" * 126), 1002),
    "continuation without a start": (frame(0x0, b"x"), 1002),
    "close with a 1-byte body": (frame(0x8, b"\x03"), 1002),
    "text that is not UTF-8": (frame(0x1, b'{"type": "\xff\xfe"}'), 1007),
}


@pytest.mark.parametrize("after_hello", [False, True], ids=["before hello", "after hello"])
async def test_frame_level_violations_get_a_close_frame(server: tuple[Any, int], after_hello: bool) -> None:
    _, port = server
    with trio.fail_after(60):
        for name, (bad, expected) in VIOLATIONS.items():
            stream, buf = await raw_websocket(port, "127.0.0.6")
            async with stream:
                if after_hello:
                    await stream.send_all(frame(0x1, json.dumps({"type": "hello", "token": TOKEN}).encode()))
                    with trio.fail_after(10):  # the ready message: the conversation is running
                        while b'"ready"' not in buf:
                            buf += await stream.receive_some(4096)
                    buf = b""
                await stream.send_all(bad)
                code, _ = await server_close(stream, buf)
            assert code == expected, f"{name}: closed with {code} (None: no close frame)"
    await user_gets_a_conversation(port)


async def test_deeply_nested_json_is_a_bad_message(server: tuple[Any, int]) -> None:
    _, port = server
    with trio.fail_after(20):
        for body in ("[" * 4000, '{"type": "hello", "x": ' + "[" * 2000 + "]" * 2000 + "}"):
            async with websocket(port, "127.0.0.7") as ws:
                await ws.send_message(body)
                messages, code = await closed_with(ws)
                assert code == 1003 and messages[-1]["code"] == "bad_message", (code, messages)
                assert "nested too deeply" in messages[-1]["message"]
        async with websocket(port, "127.0.0.7") as ws:  # in the middle of a conversation too
            assert (await hello(ws))["type"] == "ready"
            await ws.send_message('{"type": "end", "x": ' + "[" * 1500 + "]" * 1500 + "}")
            messages, code = await closed_with(ws)
            assert code == 1003 and messages[-1]["code"] == "bad_message"
    await user_gets_a_conversation(port)


async def test_lone_surrogates(server: tuple[Any, int]) -> None:
    """JSON may spell a lone surrogate ("\\udc80"), which is not text any UTF-8 encoder accepts."""
    _, port = server
    with trio.fail_after(20):
        async with websocket(port, "127.0.0.8") as ws:
            await ws.send_message('{"type": "hello", "token": "\\udc80' + TOKEN[1:] + '"}')
            messages, code = await closed_with(ws)
            assert code == 1008 and messages[-1]["code"] == "unauthorized"
        async with websocket(port, "127.0.0.8") as ws:
            await ws.send_message('{"type": "hello", "token": "' + TOKEN + '", "client": "a\\ud800b"}')
            assert json.loads(await ws.get_message())["type"] == "ready"
            await ws.send_message('{"type": "\\udfff"}')  # echoed in the error message
            messages, code = await closed_with(ws)
            assert code == 1003 and messages[-1]["code"] == "bad_message"


async def test_oversize_messages(server: tuple[Any, int]) -> None:
    _, port = server
    with trio.fail_after(30):
        async with websocket(port, "127.0.0.9") as ws:
            await ws.send_message(json.dumps({"type": "hello", "token": TOKEN, "client": "x" * 5000}))
            messages, code = await closed_with(ws)
            assert code == 1009 and messages[-1]["code"] == "too_big"
        async with websocket(port, "127.0.0.9") as ws:
            assert (await hello(ws))["type"] == "ready"
            await ws.send_message(b"\x00" * (64 * 1024 + 2))
            messages, code = await closed_with(ws)
            assert code == 1009 and messages[-1]["code"] == "too_big"
        async def send(stream: trio.SocketStream, data: bytes) -> None:
            with trio.move_on_after(5):
                try:
                    await stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

        for size in (1 << 20, 4 << 20):  # far over: cut off by the WebSocket layer, still with a close frame
            stream, buf = await raw_websocket(port, "127.0.0.9")
            async with stream:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send, stream, frame(0x2, bytes(size)))
                    code, _ = await server_close(stream, buf)
                    nursery.cancel_scope.cancel()
            assert code == 1009, size
    await user_gets_a_conversation(port)


# -- HTTP request heads ---------------------------------------------------------------------------------

def request(port: int, pad: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Pad: %s\r\n\r\n" % (port, b"a" * pad)


async def test_request_heads_over_8_kib_are_refused(server: tuple[Any, int]) -> None:
    _, port = server
    with trio.fail_after(30):
        assert (await raw_request(port, request(port, 7 * 1024), "127.0.0.10")).startswith(b"HTTP/1.1 200")
        for pad in (8 * 1024, 9 * 1024, 12 * 1024, 64 * 1024):
            answer = await raw_request(port, request(port, pad), "127.0.0.10")
            assert answer.startswith(b"HTTP/1.1 431"), (pad, answer[:80])


@pytest.mark.slow
async def test_slowloris_heads_are_bounded(server: tuple[Any, int]) -> None:
    """Heads that trickle in a byte at a time: each gets 408 at the --request-timeout, one
    address holds at most its share, and the page and conversations go on being served."""
    _, port = server
    answers: list[bytes] = []
    with trio.fail_after(REQUEST_TIMEOUT + 20):
        async with trio.open_nursery() as nursery:
            async def trickle() -> None:
                stream = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.11")
                async with stream:
                    answer = b""
                    with trio.move_on_after(REQUEST_TIMEOUT + 10):
                        for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 1000:
                            try:
                                await stream.send_all(bytes([byte]))
                            except trio.BrokenResourceError:
                                break
                            with trio.move_on_after(0.2):
                                answer += await stream.receive_some(4096)
                            if answer:
                                break
                        else:
                            raise AssertionError("the server waited for the whole slow head")
                    answers.append(answer)

            start = trio.current_time()
            for _ in range(PER_ADDRESS):
                nursery.start_soon(trickle)
            await trio.sleep(0.5)
            refused = await raw_request(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "127.0.0.11")
            assert refused.startswith(b"HTTP/1.1 429")
            assert (await raw_request(port, request(port, 10))).startswith(b"HTTP/1.1 200")
            await user_gets_a_conversation(port)
        assert len(answers) == PER_ADDRESS and all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
        assert trio.current_time() - start < REQUEST_TIMEOUT + 6


# -- code that exits -------------------------------------------------------------------------------------

async def test_a_plugin_calling_sys_exit_ends_only_its_conversation(server: tuple[Any, int]) -> None:
    """SystemExit raised inside a session (here by the VAD plugin) fails that conversation with
    1011 and a session_failed error; the server goes on serving everyone else."""
    proc, port = server
    with trio.fail_after(20):
        async with websocket(port, "127.0.0.12") as bystander:
            assert (await hello(bystander))["type"] == "ready"
            async with websocket(port) as ws:
                assert (await hello(ws))["type"] == "ready"
                await ws.send_message(b"EXIT" * 160)
                messages, code = await closed_with(ws)
            assert code == 1011, messages
            error = [m for m in messages if isinstance(m, dict) and m["type"] == "error"][-1]
            assert error["code"] == "session_failed" and "SystemExit" in error["message"]
            assert proc.poll() is None
            await bystander.send_message(b"\x00\x00" * 320)  # the other conversation is untouched
            await bystander.send_message(json.dumps({"type": "end"}))
            assert (await closed_with(bystander))[1] == 1000
        await user_gets_a_conversation(port)


# -- a handler that exits --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.realspeech
async def test_a_handler_calling_sys_exit_does_not_stop_the_server(server: tuple[Any, int]) -> None:
    from voicekit.testing.data import speech

    proc, port = server
    with wave.open(str(speech("goforward"))) as w:
        pcm = b"\x00" * 16000 + w.readframes(w.getnframes()) + b"\x00" * 32000
    with trio.fail_after(60):
        async with websocket(port) as ws:
            assert (await hello(ws))["type"] == "ready"
            for i in range(0, len(pcm), 640):
                await ws.send_message(pcm[i:i + 640])
            await ws.send_message(json.dumps({"type": "end"}))
            messages, code = await closed_with(ws, 40)
        events = [m["event"] for m in messages if isinstance(m, dict) and m["type"] == "event"]
        assert any(e["event"] == "intent_matched" for e in events), events  # the handler did run
        assert code in (1000, 1011)  # the conversation ends (or, if the session survives, goes on)
        assert proc.poll() is None  # the server does not
        await user_gets_a_conversation(port)
        assert (await raw_request(port, request(port, 10))).startswith(b"HTTP/1.1 200")
