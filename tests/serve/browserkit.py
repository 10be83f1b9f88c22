"""What the browser tests of ``voicekit serve`` share: a process started until it prints its
address, headless Chromium with a fake microphone on a page, and the page driven over the Chrome
DevTools protocol (read ``window.voicekit``, press Start/Stop, wait for the page to get somewhere).

A test then reads as its journey::

    async with running([...], rb"at (http://127\\.0\\.0\\.1:\\d+/)") as (server, url), \\
            chromium(f"{url}?autostart=1", tmp_path, speech_microphone(tmp_path / "mic.wav"),
                     within=40), \\
            devtools_page(tmp_path / "profile", url) as page:
        shown = await page.until(page.shown, lambda s: ...)
        stopped = await page.stop()
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import soxr
import trio
from servekit import get  # type: ignore[import-not-found]  # next to this file
from trio_websocket import WebSocketConnection, open_websocket_url

from voicekit.testing.data import speech

__all__ = ["CHROMIUM", "CHROMIUM_MISSING", "START", "DevToolsPage", "chromium", "clean_env", "devtools_page",
           "needs_chromium", "running", "silent_microphone", "speech_microphone", "stop_process"]

T = TypeVar("T")

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMIUM_MISSING = "needs the chromium binary (apt-get install chromium; 'make test' installs it)"
#: ``pytestmark`` entry of a module whose tests all need the browser.
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=CHROMIUM_MISSING)

START = "document.getElementById('start').click()"  # the Start/Stop button


# -- the fake microphone --------------------------------------------------------------------------

def speech_microphone(path: Path) -> Path:
    """"go forward ten meters" as Chromium's fake capture device likes it: 16-bit PCM at 48 kHz,
    with 4 s of silence before and 3 s after (so the endpointer hears the utterance end). The page opens
    the microphone before it connects and drops audio until the server's ``ready``: on a loaded machine
    that took over a second, and the first words were lost with 1 s of lead-in."""
    with wave.open(str(speech("goforward"))) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        rate = w.getframerate()
    x = np.concatenate([np.zeros(4 * rate, np.float32), x, np.zeros(3 * rate, np.float32)])
    y = soxr.resample(x, rate, 48000)
    return _write_wav(path, (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())


def silent_microphone(path: Path, seconds: float = 2) -> Path:
    """Silence at 48 kHz (played in a loop, a microphone that never stops)."""
    return _write_wav(path, b"\0" * 2 * round(48000 * seconds))


def _write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(pcm)
    return path


# -- processes ------------------------------------------------------------------------------------

def clean_env() -> dict[str, str]:
    """This environment without the DashScope and serve settings a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "VOICEKIT_SERVE_"))}


@asynccontextmanager
async def running(command: list[str], pattern: bytes, *, timeout: float = 60,
                  env: dict[str, str] | None = None) -> AsyncIterator[tuple[trio.Process, str]]:
    """``command`` running until the block ends (then SIGINT, and SIGKILL if it has not exited in
    10 s), with the first match of ``pattern`` (group 1) in its output, e.g. the URL it serves at.
    Its output is read all along (a full pipe would stall it)."""
    proc = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=clean_env() if env is None else env)
    try:
        assert proc.stdout is not None
        seen = b""
        with trio.fail_after(timeout):
            while (match := re.search(pattern, seen)) is None:
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"{command[1:3]} exited early: {seen.decode(errors='replace')}")
                seen += chunk
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, proc.stdout)
            yield proc, match.group(1).decode()
            nursery.cancel_scope.cancel()
    finally:
        await stop_process(proc, signal.SIGINT)


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async with stream:
        while await stream.receive_some(65536):
            pass


async def stop_process(proc: trio.Process, how: signal.Signals = signal.SIGINT, *, group: bool = False) -> None:
    """Send ``how`` (to the whole process group with ``group``), wait up to 10 s (even in a
    cancelled scope), then kill."""
    if proc.returncode is None:
        if group:
            os.killpg(proc.pid, how)
        else:
            proc.send_signal(how)
    with trio.move_on_after(10) as scope:
        scope.shield = True
        await proc.wait()
    if proc.returncode is None:
        proc.kill()


@asynccontextmanager
async def chromium(url: str, tmp: Path, microphone: Path, *, within: float, loop: bool = False
                   ) -> AsyncIterator[trio.Process]:
    """Headless Chromium on ``url`` with ``microphone`` (a WAV file, played once unless ``loop``)
    as the capture device, its profile in ``tmp/profile`` and its output in ``tmp/chromium.log``.
    The block has ``within`` seconds, or fails with what Chromium logged; at the end the browser
    and its helper processes are killed."""
    assert CHROMIUM is not None, CHROMIUM_MISSING
    capture = f"{microphone}" if loop else f"{microphone}%noloop"
    log_path = tmp / "chromium.log"
    with open(log_path, "wb") as log:
        browser = await trio.lowlevel.open_process(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", "--use-fake-ui-for-media-stream",
             "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={capture}",
             "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            with trio.move_on_after(within) as scope:
                yield browser
            if scope.cancelled_caught:
                log.flush()
                tail = log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"the page did not get there in {within:g} s; chromium said:\n{tail}")
        finally:
            await stop_process(browser, signal.SIGKILL, group=True)


# -- the page, over the DevTools protocol ---------------------------------------------------------

class DevToolsPage:
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

    async def read(self, expression: str) -> Any:
        """The value of ``expression``, through JSON."""
        return json.loads(await self.evaluate(f"JSON.stringify({expression})"))

    async def state(self) -> dict[str, Any]:
        """What the page's client recorded (``window.voicekit``), {} before it starts."""
        return dict(await self.read("window.voicekit || null") or {})

    async def shown(self) -> dict[str, Any]:
        """``state``: ``window.voicekit`` (or None), ``log``: the conversation as the page shows it."""
        return dict(await self.read("{state: window.voicekit || null, "
                                    "log: (document.getElementById('log') || {}).innerText || ''}"))

    async def until(self, probe: Callable[[], Awaitable[T]], done: Callable[[T], Any], every: float = 0.1) -> T:
        """Ask ``probe`` every ``every`` seconds until ``done`` says yes; its last answer."""
        while not done(answer := await probe()):
            await trio.sleep(every)
        return answer

    async def stop(self) -> dict[str, Any]:
        """Press Stop and wait for the conversation's WebSocket to close: {close, status}."""
        await self.evaluate(START)
        return await self.until(lambda: self.read("{close: window.voicekit.close, status: window.voicekit.status}"),
                                lambda stopped: stopped["close"] is not None)


@asynccontextmanager
async def devtools_page(profile: Path, url: str) -> AsyncIterator[DevToolsPage]:
    """The page at ``url`` (a prefix) in the Chromium whose profile is ``profile``."""
    port_file = profile / "DevToolsActivePort"
    while not port_file.exists() or not port_file.read_text().strip():
        await trio.sleep(0.05)
    port = int(port_file.read_text().split()[0])
    page_ws = ""
    while not page_ws:
        try:
            targets = json.loads((await get(port, "/json/list"))[2])
        except (OSError, json.JSONDecodeError):
            targets = []
        page_ws = next((t["webSocketDebuggerUrl"] for t in targets
                        if t.get("type") == "page" and t.get("url", "").startswith(url)), "")
        if not page_ws:
            await trio.sleep(0.1)
    async with open_websocket_url(page_ws, max_message_size=16 * 2**20) as ws:
        yield DevToolsPage(ws)
