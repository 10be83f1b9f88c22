"""End to end in a real browser: ``voicekit serve robot`` in a subprocess, headless Chromium with
a fake microphone that plays real speech ("go forward ten meters"), driven over the Chrome
DevTools protocol. The page must show the transcript and the reply, and receive reply audio."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import h11
import numpy as np
import pytest
import soxr
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from voicekit.testing.data import speech

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realspeech,
    pytest.mark.skipif(CHROMIUM is None, reason="needs the chromium binary (apt-get install chromium; "
                                                "'make test' installs it)"),
]


def fake_microphone_wav(path: Path) -> None:
    """The speech as Chromium's fake capture device likes it: 16-bit PCM at 48 kHz, with 1 s of
    silence before and 3 s after (so the endpointer hears the utterance end)."""
    with wave.open(str(speech("goforward"))) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        rate = w.getframerate()
    x = np.concatenate([np.zeros(rate, np.float32), x, np.zeros(3 * rate, np.float32)])
    y = soxr.resample(x, rate, 48000)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())


async def http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    body = b""
    async with stream:
        await stream.send_all(conn.send(h11.Request(method="GET", target=path, headers=[("host", f"127.0.0.1:{port}")]))
                              + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return body


class DevTools:
    """Just enough of the Chrome DevTools protocol: evaluate JavaScript in the page."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def evaluate(self, expression: str) -> Any:
        call_id = next(self.ids)
        await self.ws.send_message(json.dumps({"id": call_id, "method": "Runtime.evaluate", "params": {
            "expression": expression, "returnByValue": True, "awaitPromise": True}}))
        while True:
            reply = json.loads(await self.ws.get_message())
            if reply.get("id") == call_id:
                result = reply["result"]
                if "exceptionDetails" in result:
                    raise AssertionError(f"page error: {result['exceptionDetails']}")
                return result["result"].get("value")


async def start_server(nursery: trio.Nursery) -> tuple[trio.Process, str]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "voicekit.cli.main", "serve", "robot", "--port", "0"],
        stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    with trio.fail_after(30):
        while (match := re.search(rb"at (http://127\.0\.0\.1:\d+/)", seen)) is None:
            chunk = await proc.stderr.receive_some(4096)
            if not chunk:
                raise AssertionError(f"voicekit serve exited early: {seen.decode(errors='replace')}")
            seen += chunk
    nursery.start_soon(_drain, proc.stderr)
    return proc, match.group(1).decode()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async with stream:
        while await stream.receive_some(65536):
            pass


async def test_browser_talks_to_the_robot(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    wav = tmp_path / "mic.wav"
    fake_microphone_wav(wav)
    profile = tmp_path / "profile"
    with trio.fail_after(55), open(tmp_path / "chromium.log", "wb") as log:
        async with trio.open_nursery() as nursery:
            server, url = await start_server(nursery)
            browser = await trio.lowlevel.open_process(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
                 "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
                 f"{url}?autostart=1"],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
            try:
                with trio.move_on_after(40) as scope:
                    state = await drive(profile, url)
                if scope.cancelled_caught:
                    log.flush()
                    tail = (tmp_path / "chromium.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"the page did not finish the conversation in 40 s; chromium said:\n{tail}")
            finally:
                if browser.returncode is None:
                    os.killpg(browser.pid, signal.SIGKILL)  # the browser and its helper processes
                if server.returncode is None:
                    server.send_signal(signal.SIGINT)
                with trio.move_on_after(10):
                    await browser.wait()
                    await server.wait()
                for proc in (browser, server):
                    if proc.returncode is None:
                        proc.kill()
                nursery.cancel_scope.cancel()
    transcripts = [re.sub(r"[^a-z ]", "", t.lower()) for t in state["state"]["transcripts"]]
    assert any(re.fullmatch(r"go forward ten met(er|re)s", t) for t in transcripts), state
    assert "Moving forward 10 meters." in state["state"]["replies"], state
    assert not state["state"]["errors"], state
    # shown on the page, not only recorded
    assert re.search(r"You:\s*Go forward ten met(er|re)s", state["log"], re.I), state["log"]
    assert re.search(r"Assistant:\s*Moving forward 10 meters\.", state["log"]), state["log"]
    # the reply audio reached the page: about 1.8 s of 16-bit mono at 22050 Hz
    assert state["state"]["audioBytesIn"] > 22050 * 2, state
    assert state["state"]["chunksSent"] > 100  # 20 ms microphone chunks (over 2 s of audio)
    gains = state["gains"]
    assert gains["chunk"] == 640  # 20 ms of 16 kHz int16
    assert 0.98 < gains["1000"] < 1.02 and 0.98 < gains["3000"] < 1.02 and gains["12000"] < 0.01, gains
    # Stop: the page sends "end", the server finishes the session and closes normally
    assert state["stopped"]["close"]["code"] == 1000, state["stopped"]
    assert state["stopped"]["status"] == "ended"
    # and a second conversation from the same page works too
    assert not state["again"]["errors"] and state["again"]["close"]["code"] == 1000, state["again"]


# The page's resampler (downsampler.js) on pure tones at 48 kHz: gain of each tone at 16 kHz, and
# the chunk size. 1 kHz must pass, 12 kHz (which would alias to 4 kHz) must be filtered out.
TONE_CHECK = """
(() => {
  const gains = {};
  for (const freq of [1000, 3000, 12000]) {
    const d = new VoicekitDownsampler(48000, 16000, 20);
    const out = [];
    let n = 0;
    for (let b = 0; b < 100; b++) {
      const x = new Float32Array(128);
      for (let i = 0; i < 128; i++, n++) x[i] = 0.5 * Math.sin(2 * Math.PI * freq * n / 48000);
      for (const c of d.push(x)) { gains.chunk = c.byteLength; out.push(...new Int16Array(c)); }
    }
    const tail = out.slice(320);
    gains[freq] = Math.sqrt(tail.reduce((a, v) => a + v * v, 0) / tail.length) / (0.5 * 32767 / Math.SQRT2);
  }
  return gains;
})()
"""


async def drive(profile: Path, url: str) -> dict[str, Any]:
    port_file = profile / "DevToolsActivePort"
    while not port_file.exists() or not port_file.read_text().strip():
        await trio.sleep(0.05)
    port = int(port_file.read_text().split()[0])
    page_ws = ""
    while not page_ws:
        try:
            targets = json.loads(await http_get(port, "/json/list"))
        except (OSError, json.JSONDecodeError):
            targets = []
        page_ws = next((t["webSocketDebuggerUrl"] for t in targets
                        if t.get("type") == "page" and t.get("url", "").startswith(url)), "")
        if not page_ws:
            await trio.sleep(0.1)
    async with open_websocket_url(page_ws, max_message_size=16 * 2**20) as ws:
        tools = DevTools(ws)
        probe = ("JSON.stringify({state: window.voicekit || null, "
                 "log: (document.getElementById('log') || {}).innerText || ''})")
        while True:
            found = json.loads(await tools.evaluate(probe))
            st = found["state"]
            if st and (st["errors"] or ("Moving forward 10 meters." in st["replies"]
                                        and any(e == "reply_finished" for e in st["events"]))):
                break
            await trio.sleep(0.2)
        found["gains"] = await tools.evaluate(TONE_CHECK)
        await tools.evaluate("document.getElementById('start').click()")  # Stop
        while True:
            stopped = json.loads(await tools.evaluate(
                "JSON.stringify({close: window.voicekit.close, status: window.voicekit.status})"))
            if stopped["close"] is not None:
                break
            await trio.sleep(0.1)
        found["stopped"] = stopped
        # Start again on the same page: a new conversation (same AudioContext, worklet already loaded)
        first_id = found["state"]["ready"]["session_id"]
        await tools.evaluate("window.voicekit.close = null; document.getElementById('start').click()")
        probe = ("JSON.stringify({ready: window.voicekit.ready, status: window.voicekit.status, "
                 "sent: window.voicekit.chunksSent, errors: window.voicekit.errors})")
        while True:
            again = json.loads(await tools.evaluate(probe))
            if again["errors"] or (again["ready"] and again["ready"]["session_id"] != first_id
                                   and again["sent"] > found["state"]["chunksSent"] + 10):
                break
            await trio.sleep(0.1)
        await tools.evaluate("document.getElementById('start').click()")
        while (close := await tools.evaluate("JSON.stringify(window.voicekit.close)")) == "null":
            await trio.sleep(0.1)
        found["again"] = {**again, "close": json.loads(close)}
        return found  # type: ignore[no-any-return]
