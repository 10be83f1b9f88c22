"""``voicekit serve`` on the command line: refusals are one clear line and exit 1; the token can
come from the environment; ``--tts none`` serves text-only replies."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from voicekit.cli.main import build_parser, main


def test_serve_is_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert "serve" in build_parser().format_help()
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--token", "--max-sessions", "--asr", "--tts", "--allow-origin",
                   "--hello-timeout", "--idle-timeout", "--request-timeout", "--max-pending",
                   "--max-pending-per-address"):
        assert option in out


def test_public_address_without_token_is_refused(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEKIT_SERVE_TOKEN", raising=False)
    assert main(["serve", "robot", "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "refusing to listen on '0.0.0.0' without a token" in err and "--token" in err


def test_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "robot", "--port", str(port), "--tts", "none"]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_unknown_assistant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "no-such-assistant", "--port", "0"]) == 1
    assert "no-such-assistant" in capsys.readouterr().err


@pytest.mark.slow
async def test_token_from_the_environment_and_text_only_replies() -> None:
    env = {**os.environ, "VOICEKIT_SERVE_TOKEN": "env-secret-123"}
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "voicekit.cli.main", "serve", "robot", "--port", "0", "--tts", "none"],
        stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    try:
        seen = b""
        with trio.fail_after(30):
            while (match := re.search(rb"at (http://127\.0\.0\.1:(\d+)/)", seen)) is None:
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, seen.decode(errors="replace")
                seen += chunk
        assert b"env-secret-123" not in seen  # the token is never printed
        assert b"#token=" in seen  # but the user is told how to pass it
        url = f"ws://127.0.0.1:{match.group(2).decode()}/ws"
        with trio.fail_after(15):
            async with open_websocket_url(url) as ws:
                await ws.send_message(json.dumps({"type": "hello"}))
                assert json.loads(await ws.get_message())["code"] == "unauthorized"
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
            async with open_websocket_url(url) as ws:
                await ws.send_message(json.dumps({"type": "hello", "token": "env-secret-123"}))
                assert json.loads(await ws.get_message())["type"] == "ready"
                # no TTS: no audio_format; the next message is the first event
                first = json.loads(await ws.get_message())
                assert first["type"] == "event" and first["event"]["event"] == "session_started"
                assert first["event"]["tts"] is None
    finally:
        proc.send_signal(2)  # Ctrl-C
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130
