"""A conversation that falls behind real time first drops to a cheaper VAD (Silero → webrtc),
reported to the client, in the log and in the metrics, and is shed only if it still lags.

One ``voicekit serve`` server in this process over real loopback sockets, with the real Silero
plugin; the overload is made by a Silero that waits 30 ms more per 20 ms input frame (slower than
real time, without blocking the event loop), or by an ASR that is itself too slow.
"""

from __future__ import annotations

import json
import re
import wave
from typing import Any

import pytest
import structlog
import trio
from servekit import SlowASR, get, serving  # type: ignore[import-not-found]  # next to this file
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from voicekit.cli.main import main
from voicekit.plugins.build import load_assistant, make_vad
from voicekit.serve.fallback import FallbackVAD
from voicekit.serve.server import SessionRecipe
from voicekit.testing.data import speech
from voicekit.testing.fakes import FakeASR

pytest.importorskip("voicekit_silero", reason="the Silero VAD plugin (plugins/silero)")

CHUNK = 640  # 20 ms at 16 kHz


def slow_silero() -> Any:
    from voicekit_silero.vad import SileroVAD

    class SlowSilero(SileroVAD):
        async def prepare(self, pcm: bytes) -> None:
            await trio.sleep(0.03)
            await super().prepare(pcm)

    return SlowSilero(sample_rate=16000)


def recipe(asr: FakeASR, vad: Any) -> SessionRecipe:
    return SessionRecipe(asr=asr, assistant=load_assistant("robot"), vad_factory=vad,
                         vad_fallback=lambda: make_vad("webrtc", sample_rate=16000, frame_ms=30),
                         names={"vad": "silero", "vad_fallback": "webrtc"})


def utterance() -> bytes:
    """1 s of silence, "go forward ten meters", 1.5 s of silence."""
    with wave.open(str(speech("goforward"))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return b"\0" * 32000 + w.readframes(w.getnframes()) + b"\0" * 48000


async def converse(ws: WebSocketConnection) -> tuple[list[dict[str, Any]], int, str]:
    """Say hello, stream the utterance in real time, then ``end``; every message until the close."""
    await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000}))
    got: list[dict[str, Any]] = []
    audio = utterance()
    try:
        async with trio.open_nursery() as nursery:
            async def send() -> None:
                for i in range(0, len(audio), CHUNK):
                    await ws.send_message(audio[i:i + CHUNK])
                    await trio.sleep(0.02)
                await ws.send_message(json.dumps({"type": "end"}))
            nursery.start_soon(send)
            while True:
                message = await ws.get_message()
                if isinstance(message, str):
                    got.append(json.loads(message))
    except* ConnectionClosed:
        pass
    assert ws.closed is not None
    return got, int(ws.closed.code), str(ws.closed.reason)


def warnings(got: list[dict[str, Any]]) -> list[str]:
    return [m["event"]["message"] for m in got if m.get("type") == "event" and m["event"]["event"] == "warning"]


@pytest.mark.slow
async def test_a_lagging_silero_conversation_drops_to_webrtc_and_carries_on() -> None:
    with structlog.testing.capture_logs() as logs, trio.fail_after(60):
        async with serving(recipe(FakeASR(["go forward ten meters"]), slow_silero), vad_fallback_backlog=0.3,
                           max_backlog=3.0) as server:
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as ws:
                got, code, reason = await converse(ws)
            assert server.port is not None
            metrics = (await get(server.port, "/metrics"))[2]
    (told,) = warnings(got)
    assert re.fullmatch(r"this conversation fell 0\.\d s behind real time \(over the server's --vad-fallback-backlog "
                        r"of 0\.3 s\): voice activity detection switched from silero to the cheaper webrtc", told)
    assert (code, reason) == (1000, "session ended")  # not shed: the cheaper VAD caught up
    finals = [m["event"]["text"] for m in got if m.get("type") == "event" and m["event"]["event"] == "transcript"
              and m["event"]["is_final"]]
    assert finals == ["go forward ten meters"]  # the speech was still detected, after the switch
    assert server.stats.vad_fallbacks == 1 and server.stats.shed == 0
    assert re.search(rb"^voicekit_serve_vad_fallbacks_total 1\.0$", metrics, re.M)
    assert re.search(rb"^voicekit_serve_sessions_shed_total 0\.0$", metrics, re.M)
    (line,) = [e for e in logs if e["event"] == "vad fallback"]
    assert line["log_level"] == "warning" and line["vad"] == "silero" and line["fallback"] == "webrtc"
    assert line["backlog"] > 0.3


@pytest.mark.slow
async def test_still_lagging_after_the_switch_is_shed() -> None:
    """The ASR is too slow as well: the VAD switch comes first, and the conversation is shed when
    it still falls behind."""
    with trio.fail_after(60):
        async with serving(recipe(SlowASR(0.05), lambda: make_vad("silero", sample_rate=16000)),
                           vad_fallback_backlog=0.2, max_backlog=1.0) as server:
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as ws:
                got, code, reason = await converse(ws)
    told = warnings(got)
    assert len(told) == 2, told
    assert "switched from silero to the cheaper webrtc" in told[0]
    assert "--max-backlog" in told[1] and "the server is overloaded" in told[1]
    assert (code, reason) == (1013, "fell behind real time")
    assert [m["code"] for m in got if m.get("type") == "error"] == ["overloaded"]
    assert server.stats.vad_fallbacks == 1 and server.stats.shed == 1


async def test_the_switch_happens_between_input_frames() -> None:
    primary = make_vad("silero", sample_rate=16000)
    vad = FallbackVAD(primary, lambda: make_vad("webrtc", sample_rate=16000, frame_ms=30),
                      primary_name="silero", fallback_name="webrtc")
    frame = b"\0" * 960
    await vad.prepare(frame)
    assert vad.switch() and not vad.switch()  # asked once
    assert vad.current is primary and vad.name == "silero"  # nothing changes within a frame
    vad.is_speech(frame)
    await vad.prepare(frame)
    assert vad.switched and vad.name == "webrtc" and vad.current is not primary
    assert vad.is_speech(frame) is False


def test_fallback_options_are_checked_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "robot", "--port", "0", "--tts", "none", "--asr", "pocketsphinx", "--vad", "silero"]
    assert main([*base, "--vad-fallback-backlog", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--vad-fallback-backlog (2 s) must be below --max-backlog (1.5 s)" in err
    assert main([*base, "--vad-option", "frame_ms=32", "--vad-fallback", "webrtc"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--vad-fallback webrtc cannot take silero's 16000 Hz, 32 ms frames" in err
