"""The unchanged page, in a real browser, talking to a realtime agent: ``voicekit emulate dashscope``
(Omni replies scripted, the robot's ``move`` tool on "forward") and ``voicekit serve robot --agent``
in subprocesses, headless Chromium with a fake microphone saying "go forward ten meters". The page
must show the transcript and the agent's spoken answer, play its audio, and close normally on Stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from test_serve_chromium import CHROMIUM, DevTools, fake_microphone_wav, http_get
from trio_websocket import open_websocket_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realspeech,
    pytest.mark.skipif(CHROMIUM is None, reason="needs the chromium binary (apt-get install chromium; "
                                                "'make test' installs it)"),
]

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
KEY = "sk-serve-agent-chromium-0123456789"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "VOICEKIT_SERVE_"))}


async def _started(command: list[str], pattern: bytes, nursery: trio.Nursery) -> tuple[trio.Process, str]:
    """Start ``command``; the first match of ``pattern`` (group 1) in its output."""
    proc = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=_env())
    assert proc.stdout is not None
    seen = b""
    with trio.fail_after(60):
        while (match := re.search(pattern, seen)) is None:
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                raise AssertionError(f"{command[1:3]} exited early: {seen.decode(errors='replace')}")
            seen += chunk
    nursery.start_soon(_drain, proc.stdout)
    return proc, match.group(1).decode()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async with stream:
        while await stream.receive_some(65536):
            pass


async def test_the_page_talks_to_an_agent(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    script = tmp_path / "omni.json"
    script.write_text(json.dumps({
        "replies": ["Hello."], "after_tool": "Done. {output}",
        "tool_rules": [{"keyword": "forward", "tool": "move", "arguments": {"direction": "forward", "distance": 10}}],
    }))
    wav = tmp_path / "mic.wav"
    fake_microphone_wav(wav)
    profile = tmp_path / "profile"
    procs: list[trio.Process] = []
    with trio.fail_after(80), open(tmp_path / "chromium.log", "wb") as log:
        async with trio.open_nursery() as nursery:
            try:
                emulator, base = await _started(
                    [VOICEKIT, "emulate", "dashscope", "--port", "0", "--omni-script", str(script)],
                    rb"(ws://127\.0\.0\.1:\d+)", nursery)
                procs.append(emulator)
                server, url = await _started(
                    [VOICEKIT, "serve", "robot", "--agent", "qwen3.5-omni-plus-realtime", "--port", "0",
                     "--agent-option", f"base_url={base}", "--agent-option", f"api_key={KEY}"],
                    rb"at (http://127\.0\.0\.1:\d+/)", nursery)
                procs.append(server)
                browser = await trio.lowlevel.open_process(
                    [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream",
                     "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
                     "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
                     f"{url}?autostart=1"],
                    stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
                procs.append(browser)
                with trio.move_on_after(50) as scope:
                    state = await drive(profile, url)
                if scope.cancelled_caught:
                    log.flush()
                    tail = (tmp_path / "chromium.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"the page did not finish the conversation in 50 s; chromium said:\n{tail}")
            finally:
                for proc in reversed(procs):
                    if proc.returncode is None:
                        if proc is procs[-1] and len(procs) == 3:
                            os.killpg(proc.pid, signal.SIGKILL)  # the browser and its helper processes
                        else:
                            proc.send_signal(signal.SIGINT)
                with trio.move_on_after(10):
                    for proc in procs:
                        await proc.wait()
                for proc in procs:
                    if proc.returncode is None:
                        proc.kill()
                nursery.cancel_scope.cancel()
    st = state["state"]
    transcripts = [re.sub(r"[^a-z ]", "", t.lower()) for t in st["transcripts"]]
    assert any(re.fullmatch(r"go forward ten met(er|re)s", t) for t in transcripts), st
    assert "Done. Moving forward 10 meters." in st["replies"], st
    assert not st["errors"], st
    assert re.search(r"Assistant:\s*Done\. Moving forward 10 meters\.", state["log"]), state["log"]
    assert st["ready"]["assistant"] == "robot"
    assert st["audioBytesIn"] > 24000 * 2, st  # over a second of the agent's 24 kHz voice
    assert "intent_matched" in st["events"]
    assert state["stopped"]["close"]["code"] == 1000 and state["stopped"]["status"] == "ended", state["stopped"]


async def drive(profile: Path, url: str) -> dict[str, Any]:
    """Wait for the page to show the agent's answer, then press Stop and wait for the close."""
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
            if st and (st["errors"] or ("reply_finished" in st["events"]
                                        and any("Moving forward" in r for r in st["replies"]))):
                break
            await trio.sleep(0.2)
        await tools.evaluate("document.getElementById('start').click()")  # Stop
        while True:
            stopped = json.loads(await tools.evaluate(
                "JSON.stringify({close: window.voicekit.close, status: window.voicekit.status})"))
            if stopped["close"] is not None:
                break
            await trio.sleep(0.1)
        found["stopped"] = stopped
        return found  # type: ignore[no-any-return]
