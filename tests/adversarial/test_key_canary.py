"""Key canary: every DashScope error path, run with a known key against servers that echo it back,
must not show any 8 characters of it in a row — not on stdout, stderr, in log lines at any
verbosity, in exception messages, reprs or attributes.

Hostile servers (``dashscope_hostile``) copy the ``Authorization`` header into HTTP error bodies
(JSON and HTML, at many offsets so every length limit cuts some copy in the middle), into
WebSocket handshake rejections, ``task-failed`` and ``error`` events, malformed frames and close
reasons. Paths: vocabulary (hotwords), file transcription (submit, upload), the OpenAI-compatible
API, the task protocol (Fun-ASR) and the realtime protocol (Qwen3-ASR), through the CLI (a
subprocess, with ``-v`` and ``-vv``) and through the Python API with debug logging.
"""

from __future__ import annotations

import io
import os
import sys
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from dashscope_hostile import (
    HostileHTTP,
    HostileWS,
    canary_key,
    leaked_runs,
    serve_http,
    serve_ws,
    straddling_html,
    stream_call,
)

pytest.importorskip("voicekit_dashscope")

from voicekit_dashscope.asr.realtime import Qwen3ASRRealtime
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.auth import ApiKey, excerpt, scrub
from voicekit_dashscope.client.compat import CompatClient
from voicekit_dashscope.client.files import FileTranscriber
from voicekit_dashscope.client.task import RetryPolicy, Timeouts
from voicekit_dashscope.protocol.files import FileOptions
from voicekit_dashscope.upload import Uploader
from voicekit_dashscope.vocabulary import VocabularyClient

QUICK = dict(retry=RetryPolicy(max_retries=1, backoff_initial=0.01, backoff_max=0.02),
             timeouts=Timeouts(connect=5, start=2, finish=3, ping_interval=0.5, ping_timeout=1.0))


def _wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(os.urandom(int(32000 * seconds)) if seconds else b"")
    return path


def test_scrub_masks_whole_cut_and_shaped_keys() -> None:
    """The one masking step: masks before cutting, and masks what a cut left over."""
    key = canary_key()
    ApiKey(key)
    for text in (f"Bearer {key}", key[:-1], key[5:], f"x{key[3:14]}y", f"{key}{key}",
                 straddling_html(f"Bearer {key}")[:200], f"sk-{key[3:9]}"):
        assert leaked_runs(key, scrub(text)) == [], text
    # mask first, cut second: no cut can keep 8 characters of the key
    for limit in range(1, 120):
        assert leaked_runs(key, excerpt("." * 30 + key + "." * 30, limit)) == []
    assert scrub("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer <redacted>"
    assert scrub("task-failed, disk-full, risk-free") == "task-failed, disk-full, risk-free"


# ------------------------------------------------------------------------------ through the CLI

# (name, server kind, status/code, argv after "voicekit"): {http}, {ws}, {wav} are filled in
CLI_CASES: list[tuple[str, str, Any, list[str]]] = [
    ("hotwords 500 html page", "http:html-echo", 500, ["hotwords", "list", "--base-url", "{http}"]),
    ("hotwords 401 json", "http:json-echo", 401, ["hotwords", "list", "--base-url", "{http}"]),
    ("files submit 400 json", "http:json-echo", 400,
     ["dashscope", "transcribe", "https://files.invalid/a.wav", "--base-url", "{http}"]),
    ("files upload 403 html", "http:html-echo", 403, ["dashscope", "transcribe", "{wav}", "--base-url", "{http}"]),
    ("compat 400 json", "http:json-echo", 400,
     ["transcribe", "{wav}", "--asr", "qwen3-asr-flash", "--asr-option", "base_url={http}"]),
    ("task handshake rejected", "ws:reject-echo", 403,
     ["transcribe", "{wav}", "--asr", "fun-asr-realtime", "--asr-option", "base_url={ws}"]),
    ("task-failed echo", "ws:failed-echo", "InvalidParameter",
     ["transcribe", "{wav}", "--asr", "fun-asr-realtime", "--asr-option", "base_url={ws}"]),
    ("task malformed frame", "ws:garbage", "InvalidParameter",
     ["transcribe", "{wav}", "--asr", "fun-asr-realtime", "--asr-option", "base_url={ws}",
      "--asr-option", "retry=1"]),
    ("realtime error event", "ws:failed-echo", "InvalidParameter",
     ["transcribe", "{wav}", "--asr", "qwen3-asr-flash-realtime", "--asr-option", "base_url={ws}"]),
    ("realtime malformed frame", "ws:garbage", "InvalidParameter",
     ["transcribe", "{wav}", "--asr", "qwen3-asr-flash-realtime", "--asr-option", "base_url={ws}",
      "--asr-option", "retry=1"]),
    ("realtime close reason", "ws:close-echo", "InvalidParameter",
     ["transcribe", "{wav}", "--asr", "qwen3-asr-flash-realtime", "--asr-option", "base_url={ws}",
      "--asr-option", "retry=1"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("verbosity", ["", "-v", "-vv"])
@pytest.mark.parametrize(("name", "server", "arg", "argv"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
async def test_cli_never_prints_the_key(tmp_path: Path, name: str, server: str, arg: Any, argv: list[str],
                                        verbosity: str) -> None:
    if verbosity and argv[0] != "transcribe":
        pytest.skip(f"'voicekit {argv[0]}' has no -v option")
    key = canary_key()
    side, kind = server.split(":")
    http = HostileHTTP(arg if isinstance(arg, int) else 500, kind if side == "http" else "json-echo")
    ws = HostileWS(kind if side == "ws" else "hang", status=arg if isinstance(arg, int) else 500,
                   code=arg if isinstance(arg, str) else "InternalError")
    wav = _wav(tmp_path / "speech.wav")
    async with serve_http(http), serve_ws(ws):
        filled = [a.format(http=http.url, ws=ws.url, wav=wav) for a in argv]
        if verbosity:
            filled.append(verbosity)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
        env["DASHSCOPE_API_KEY"] = key
        with trio.fail_after(60):
            proc = await trio.run_process([sys.executable, "-m", "voicekit.cli.main", *filled], env=env,
                                          capture_stdout=True, capture_stderr=True, check=False)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert http.requests or ws.connections, f"{name}: the hostile server was never reached\n{err}"
    assert proc.returncode != 0, (out, err)
    assert "Traceback" not in err, err
    assert leaked_runs(key, out + err) == [], f"{name}: key pieces printed:\n{out}\n{err}"


# ------------------------------------------------------------------------- through the Python API


async def _collect(key: str, calls: list[tuple[str, Callable[[], Awaitable[Any]]]]) -> str:
    """Run each call with voicekit's logging at debug into a buffer; return everything shown."""
    import structlog

    from voicekit.logging import configure

    buf = io.StringIO()
    configure("debug", stream=buf)
    shown: list[str] = []
    try:
        for name, call in calls:
            with trio.fail_after(30):
                try:
                    await call()
                except Exception as exc:
                    shown += [name, str(exc), repr(exc), repr(getattr(exc, "server_message", None)),
                              repr(getattr(exc, "code", None)), repr(exc.__cause__)]
                else:
                    shown.append(f"{name}: no error")
    finally:
        structlog.reset_defaults()
    return "\n".join(shown) + "\n" + buf.getvalue()


@pytest.mark.slow
async def test_python_api_errors_and_logs_never_hold_the_key(tmp_path: Path) -> None:
    key = canary_key()
    wav = _wav(tmp_path / "speech.wav")
    http = HostileHTTP()
    calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
    async with serve_http(http):
        vocab = VocabularyClient(key, base_url=http.url, retries=0)
        files = FileTranscriber(key, base_url=http.url)
        compat = CompatClient(key, base_url=http.url)

        def every(status: int, kind: str) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
            def setting(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
                async def go() -> Any:
                    http.status, http.kind = status, kind
                    return await fn()
                return go
            tag = f"{status} {kind}"
            return [
                (f"vocabulary {tag}", setting(lambda: vocab.list())),
                (f"submit {tag}", setting(lambda: files.submit("fun-asr", ["https://files.invalid/a.wav"],
                                                               FileOptions()))),
                (f"query {tag}", setting(lambda: files.query("t-1"))),
                (f"upload {tag}", setting(lambda: Uploader(files).upload(wav, "fun-asr"))),
                (f"compat {tag}", setting(lambda: compat.chat({"model": "qwen3-asr-flash", "messages": []}))),
                (f"native {tag}", setting(lambda: compat.native_asr("qwen3-asr-flash", "https://files.invalid/a"))),
            ]

        for status in (400, 401, 403, 404, 500, 503):
            for kind in ("json-echo", "html-echo", "garbage"):
                calls += every(status, kind)
        calls += every(200, "not-json-200")
        shown = await _collect(key, calls)
    assert http.requests >= len(calls) - 5
    assert leaked_runs(key, shown) == [], shown


@pytest.mark.parametrize("kind", ["reject-echo", "reject-auth", "failed-echo", "failed-after-start", "garbage",
                                  "close-echo", "wrong-first", "binary"])
@pytest.mark.parametrize("code", ["InvalidParameter", "InternalError"])
async def test_streaming_errors_and_logs_never_hold_the_key(kind: str, code: str) -> None:
    key = canary_key()
    pcm = os.urandom(32000)
    server = HostileWS(kind, status=500, code=code)
    async with serve_ws(server):
        calls = [
            ("fun-asr", stream_call(FunASRRealtime(api_key=key, base_url=server.url, **QUICK), pcm)),
            ("qwen3-asr", stream_call(Qwen3ASRRealtime(api_key=key, base_url=server.url, **QUICK), pcm)),
        ]
        shown = await _collect(key, calls)
    assert server.connections >= 2
    assert "no error" not in shown, shown
    assert leaked_runs(key, shown) == [], shown


@pytest.mark.parametrize("configured", [True, False])
def test_log_lines_and_tracebacks_are_masked(configured: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """Fields, reprs, exception text and tracebacks: before rendering and on the rendered line,
    in the CLI's set-up and in the quiet fallback a library gets before anyone configures logging."""
    import structlog

    from voicekit.logging import configure, get_logger

    key = canary_key()
    ApiKey(key)
    structlog.reset_defaults()
    if configured:
        configure("debug")
    try:
        try:
            raise ValueError(f"upstream said {key[:-2]}")
        except ValueError:
            get_logger("voicekit.test").warning("failed", exc_info=True, detail=key[3:30],
                                                headers={"Authorization": f"Bearer {key}"})
    finally:
        structlog.reset_defaults()
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "failed" in shown and "Traceback" in shown
    assert leaked_runs(key, shown) == [], shown
