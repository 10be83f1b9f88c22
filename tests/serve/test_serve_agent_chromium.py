"""The unchanged page, in a real browser, talking to a realtime agent: ``voicekit emulate dashscope``
(Omni replies scripted, the robot's ``move`` tool on "forward") and ``voicekit serve robot --agent``
in subprocesses, headless Chromium with a fake microphone saying "go forward ten meters". The page
must show the transcript and the agent's spoken answer, play its audio, and close normally on Stop."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from browserkit import DevToolsPage, chromium, devtools_page, needs_chromium, running, speech_microphone  # type: ignore[import-not-found]

pytestmark = [pytest.mark.slow, pytest.mark.realspeech, needs_chromium]

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
KEY = "sk-serve-agent-chromium-0123456789"


async def test_the_page_talks_to_an_agent(tmp_path: Path) -> None:
    script = tmp_path / "omni.json"
    script.write_text(json.dumps({
        "replies": ["Hello."], "after_tool": "Done. {output}",
        "tool_rules": [{"keyword": "forward", "tool": "move", "arguments": {"direction": "forward", "distance": 10}}],
    }))
    with trio.fail_after(80):
        async with running([VOICEKIT, "emulate", "dashscope", "--port", "0", "--omni-script", str(script)],
                           rb"(ws://127\.0\.0\.1:\d+)") as (_, base), \
                running([VOICEKIT, "serve", "robot", "--agent", "qwen3.5-omni-plus-realtime", "--port", "0",
                         "--agent-option", f"base_url={base}", "--agent-option", f"api_key={KEY}"],
                        rb"at (http://127\.0\.0\.1:\d+/)") as (_, url), \
                chromium(f"{url}?autostart=1", tmp_path, speech_microphone(tmp_path / "mic.wav"), within=50), \
                devtools_page(tmp_path / "profile", url) as page:
            state = await converse(page)
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


async def converse(page: DevToolsPage) -> dict[str, Any]:
    """Wait for the page to show the agent's answer, then press Stop and wait for the close."""
    found = await page.until(page.shown, lambda shown: (st := shown["state"]) and (
        st["errors"] or ("reply_finished" in st["events"] and any("Moving forward" in r for r in st["replies"]))),
        every=0.2)
    found["stopped"] = await page.stop()
    return found
