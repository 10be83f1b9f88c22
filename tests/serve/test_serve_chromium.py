"""End to end in a real browser: ``voicekit serve robot`` in a subprocess, headless Chromium with
a fake microphone that plays real speech ("go forward ten meters"), driven over the Chrome
DevTools protocol. The page must show the transcript and the reply, and receive reply audio."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from browserkit import START, DevToolsPage, chromium, devtools_page, needs_chromium, running, speech_microphone  # type: ignore[import-not-found]

pytestmark = [pytest.mark.slow, pytest.mark.realspeech, needs_chromium]


async def test_browser_talks_to_the_robot(tmp_path: Path) -> None:
    with trio.fail_after(55):
        async with running([sys.executable, "-m", "voicekit.cli.main", "serve", "robot", "--port", "0"],
                           rb"at (http://127\.0\.0\.1:\d+/)", timeout=30) as (_, url), \
                chromium(f"{url}?autostart=1", tmp_path, speech_microphone(tmp_path / "mic.wav"), within=40), \
                devtools_page(tmp_path / "profile", url) as page:
            state = await converse(page)
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


async def converse(page: DevToolsPage) -> dict[str, Any]:
    """Wait for the page to show the robot's answer; measure the resampler; press Stop; then
    Start again on the same page (same AudioContext, worklet already loaded) and Stop."""
    found = await page.until(page.shown, lambda shown: (st := shown["state"]) and (
        st["errors"] or ("Moving forward 10 meters." in st["replies"]
                         and any(e == "reply_finished" for e in st["events"]))), every=0.2)
    found["gains"] = await page.evaluate(TONE_CHECK)
    found["stopped"] = await page.stop()
    first_id = found["state"]["ready"]["session_id"]
    await page.evaluate(f"window.voicekit.close = null; {START}")
    again = await page.until(
        lambda: page.read("{ready: window.voicekit.ready, status: window.voicekit.status, "
                          "sent: window.voicekit.chunksSent, errors: window.voicekit.errors}"),
        lambda again: again["errors"] or (again["ready"] and again["ready"]["session_id"] != first_id
                                          and again["sent"] > found["state"]["chunksSent"] + 10))
    found["again"] = {**again, "close": (await page.stop())["close"]}
    return found
