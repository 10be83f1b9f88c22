"""Hostile servers against the DashScope clients: garbage and non-JSON answers, huge frames,
servers that hang, transient and permanent errors at every protocol phase (handshake, task start
/ session open, mid-stream), for the HTTP clients (vocabulary, files, compatible mode), the task
protocol client (Fun-ASR) and the realtime client (Qwen3-ASR).

Every failure must be a typed :class:`~voicekit_dashscope.errors.DashScopeError` within a bounded
time (never a hang, never a bare ``AssertionError``/``KeyError``/``JSONDecodeError``); permanent
errors are not retried and name their code and fix; transient ones are retried a bounded number
of times. Through the CLI: a non-zero exit, one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from dashscope_hostile import HostileHTTP, HostileWS, canary_key, serve_http, serve_ws, stream_call

pytest.importorskip("voicekit_dashscope")

from voicekit_dashscope.asr.realtime import Qwen3ASRRealtime
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.client.compat import CompatClient
from voicekit_dashscope.client.files import FileTranscriber
from voicekit_dashscope.client.task import RetryPolicy, Timeouts
from voicekit_dashscope.errors import (
    AuthenticationError,
    DashScopeError,
    RetriesExhaustedError,
    ServerTimeoutError,
    is_retryable,
)
from voicekit_dashscope.protocol.files import FileOptions
from voicekit_dashscope.vocabulary import VocabularyClient

RETRIES = 2
QUICK = dict(retry=RetryPolicy(max_retries=RETRIES, backoff_initial=0.01, backoff_max=0.02),
             timeouts=Timeouts(connect=3, start=1.5, finish=2, ping_interval=0.3, ping_timeout=1.0, close=0.5))


async def _fails(call: Callable[[], Awaitable[Any]], within: float) -> BaseException:
    """Run ``call``; it must raise, within ``within`` seconds; return what it raised."""
    with trio.fail_after(within):
        try:
            await call()
        except Exception as exc:
            return exc
    raise AssertionError("no error from a hostile server")


# ------------------------------------------------------------------------------------------ HTTP


@pytest.mark.parametrize("kind", ["json-echo", "html-echo", "garbage", "empty", "not-json-200",
                                  # slow: megabytes of answer, or the timeouts waited out
                                  *(pytest.param(k, marks=pytest.mark.slow) for k in ("huge", "hang", "drip"))])
@pytest.mark.parametrize("status", [400, 401, 500, 503])
async def test_http_clients_turn_every_bad_answer_into_a_typed_error(kind: str, status: int) -> None:
    if kind in ("hang", "drip", "not-json-200") and status != 500:
        pytest.skip("status does not matter for this answer")
    key = canary_key()
    server = HostileHTTP(status, kind, code="InvalidParameter")
    async with serve_http(server):
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: VocabularyClient(key, base_url=server.url, timeout=1.0, retries=1).list(),
            lambda: FileTranscriber(key, base_url=server.url, timeout=1.0).submit(
                "fun-asr", ["https://files.invalid/a.wav"], FileOptions()),
            lambda: FileTranscriber(key, base_url=server.url, timeout=1.0).query("t-1"),
            lambda: CompatClient(key, base_url=server.url, timeout=1.0).chat(
                {"model": "qwen3-asr-flash", "messages": []}),
            lambda: CompatClient(key, base_url=server.url, timeout=1.0).native_asr(
                "qwen3-asr-flash", "https://files.invalid/a.wav"),
        ]
        for call in calls:
            exc = await _fails(call, within=15)
            assert isinstance(exc, DashScopeError), repr(exc)
            text = str(exc)
            assert text and "\n" not in text.strip(), text
            if kind in ("hang", "drip"):
                assert is_retryable(exc) and ("unreachable" in text or "timed out" in text.lower()), text
                # and says why: httpx's timeouts carry no message, so an unexplained one ends in ": "
                assert "in time" in text or "timed out" in text.lower(), text
            elif status == 401 and kind == "json-echo":
                assert isinstance(exc, AuthenticationError) or exc.status == 401, repr(exc)


# ------------------------------------------------------------------------------------ streaming


def _stream(plugin: Any, seconds: float = 1.5) -> Callable[[], Awaitable[None]]:
    return stream_call(plugin, os.urandom(int(32000 * seconds)))


PLUGINS = {
    "fun-asr": lambda key, url: FunASRRealtime(api_key=key, base_url=url, **QUICK),
    "qwen3-asr": lambda key, url: Qwen3ASRRealtime(api_key=key, base_url=url, **QUICK),
}

# (kind, status or code, permanent?) — every phase: handshake, start / open, mid-stream
CASES = [
    ("reject-echo", 400, True),  # handshake: a bad request
    ("reject-auth", 401, True),  # handshake: the key refused
    ("reject-echo", 503, False),  # handshake: overloaded
    ("reject-echo", 500, False),  # handshake: server error
    ("failed-echo", "InvalidParameter", True),  # start: the request is wrong
    ("failed-echo", "InternalError", False),  # start: a server fault
    ("failed-after-start", "InvalidParameter", True),  # mid-stream, permanent
    ("failed-after-start", "Throttling", False),  # mid-stream, transient
    ("garbage", "", False),  # a frame that is not JSON
    ("binary", "", False),  # a binary frame where JSON is due
    ("huge", "", False),  # a 20 MB frame
    ("wrong-first", "", False),  # an event out of order
    ("close-echo", "", False),  # closed with 1011
    ("hang", "", False),  # accepts, then never answers
]


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
@pytest.mark.parametrize(("kind", "arg", "permanent"),
                         # slow: a 20 MB frame, or a server that hangs waited out
                         [pytest.param(*c, marks=pytest.mark.slow) if c[0] in ("huge", "hang") else c for c in CASES],
                         ids=[f"{k}-{a}" if a else k for k, a, _ in CASES])
async def test_streaming_clients_classify_and_bound_every_failure(plugin: str, kind: str, arg: Any,
                                                                  permanent: bool) -> None:
    server = HostileWS(kind, status=arg if isinstance(arg, int) else 500,
                       code=arg if isinstance(arg, str) and arg else "InternalError")
    async with serve_ws(server):
        asr = PLUGINS[plugin](canary_key(), server.url)
        exc = await _fails(_stream(asr), within=60)
    assert isinstance(exc, DashScopeError), repr(exc)
    text = str(exc)
    assert text and "\n" not in text.strip(), text
    if permanent:
        assert not isinstance(exc, RetriesExhaustedError), repr(exc)
        assert server.connections == 1, f"a permanent error was retried: {server.connections} connections"
        if isinstance(arg, str):
            assert exc.code == arg and arg in text and "—" in text, text  # the code and what to do
    else:
        assert isinstance(exc, RetriesExhaustedError), repr(exc)
        assert server.connections == RETRIES + 1, server.connections
        if kind == "hang":
            assert isinstance(exc.__cause__, ServerTimeoutError), repr(exc.__cause__)


# ---------------------------------------------------------------------------------- through the CLI


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(os.urandom(32000))
    return path


async def _cli(argv: list[str], within: float = 90) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["DASHSCOPE_API_KEY"] = canary_key()
    with trio.fail_after(within):
        proc = await trio.run_process([sys.executable, "-m", "voicekit.cli.main", *argv], env=env,
                                      capture_stdout=True, capture_stderr=True, check=False)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("asr", ["fun-asr-realtime", "qwen3-asr-flash-realtime"])
async def test_cli_permanent_error_is_one_line_and_not_retried(tmp_path: Path, asr: str) -> None:
    """Issue 10 item 12: ``task-failed InvalidParameter`` was retried 6 times and shown as a 1006 close."""
    server = HostileWS("failed-after-start", code="InvalidParameter")
    async with serve_ws(server):
        code, _out, err = await _cli(["transcribe", str(_wav(tmp_path / "a.wav")), "--asr", asr,
                                     "--asr-option", f"base_url={server.url}"])
    assert code != 0 and "Traceback" not in err, err
    assert server.connections == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("voicekit: error:")]
    assert len(lines) == 1, err
    assert "InvalidParameter" in lines[0] and "check" in lines[0] and "1006" not in lines[0], lines[0]


@pytest.mark.slow
async def test_cli_against_a_server_that_hangs_ends_with_a_clear_error(tmp_path: Path) -> None:
    server = HostileWS("hang")
    async with serve_ws(server):
        code, _out, err = await _cli(["transcribe", str(_wav(tmp_path / "a.wav")), "--asr", "fun-asr-realtime",
                                     "--asr-option", f"base_url={server.url}", "--asr-option", "retry=0"])
    assert code != 0 and "Traceback" not in err, err
    assert "task-started" in err and "voicekit: error:" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["garbage", "huge", "html-echo", "empty"])
async def test_cli_hotwords_against_hostile_http(kind: str) -> None:
    server = HostileHTTP(502, kind)
    async with serve_http(server):
        code, out, err = await _cli(["hotwords", "list", "--base-url", server.url], within=120)
    assert code != 0 and "Traceback" not in err, err
    assert out == ""
    assert err.strip().count("\n") == 0 and err.startswith("voicekit hotwords list:"), err
    assert len(err) < 1500, err  # one readable line, not the 8 MB body
