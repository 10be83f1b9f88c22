"""Conformance: the official ``dashscope`` SDK, unchanged, against the emulator.

The SDK reads ``DASHSCOPE_WEBSOCKET_BASE_URL`` / ``DASHSCOPE_HTTP_BASE_URL`` at import time, so it
runs in a subprocess (``testkit/sdk_driver.py``) pointed at an emulator started by the test.
"""

from __future__ import annotations

import json
import os
import sys
import wave
from pathlib import Path

import pytest
import trio
from testkit import SDK_DRIVER
from testkit.common import FAKE_KEY, fixture_emulator, tone_script

pytest.importorskip("dashscope", reason="the official SDK is in the plugin's [test] extra")

# the SDK runs in a subprocess (a fresh interpreter importing the SDK) against an emulator
pytestmark = pytest.mark.slow

DRIVER = SDK_DRIVER


async def test_official_sdk_recognition_and_vocabulary_service(tmp_path: Path) -> None:
    script = tone_script(3, seed=5)
    wav = tmp_path / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(script.audio)
    async with fixture_emulator(script) as emu:
        env = dict(os.environ, DASHSCOPE_WEBSOCKET_BASE_URL=emu.ws_base_url,
                   DASHSCOPE_HTTP_BASE_URL=emu.http_base_url, DASHSCOPE_API_KEY=FAKE_KEY)
        with trio.fail_after(60):
            proc = await trio.run_process([sys.executable, str(DRIVER), "all", str(wav), "paraformer-realtime-v2"],
                                          env=env, capture_stdout=True, capture_stderr=True, check=False)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        stats = dict(emu.stats)

    # Recognition.call(file): the WAV file, header and all, in 12.8 kB chunks
    call = out["call"]
    assert call["status_code"] == 200
    assert [s["text"] for s in call["sentences"]] == script.order
    assert all(s["words"] == len(s["text"].split()) and s["end_time"] > s["begin_time"] for s in call["sentences"])

    # streaming with callbacks: partials then finals, usage on finals only, a clean completion
    stream = out["stream"]
    assert stream["state"] == {"open": 1, "complete": 1, "close": 1, "error": None}
    finals = [e for e in stream["events"] if e["final"]]
    assert [e["text"] for e in finals] == script.order
    assert [e["sentence_id"] for e in finals] == [1, 2, 3]
    assert all(e["usage"]["duration"] >= 1 for e in finals)
    assert any(not e["final"] for e in stream["events"])
    assert all(e["usage"] is None for e in stream["events"] if not e["final"])

    # the same stream with a vocabulary: the hotword shows
    hot = [e["text"] for e in out["stream_hotwords"]["events"] if e["final"]]
    assert hot == [t.replace("sentence", "Sentance") for t in script.order]

    # VocabularyService: create, list, query, update, error, delete
    voc = out["vocabulary"]
    assert voc["created"].startswith("vocab-sdktest-")
    assert voc["listed"] == [voc["created"]]
    assert voc["queried"]["status"] == "OK"
    assert voc["queried"]["target_model"] == "paraformer-realtime-v2"
    assert voc["queried"]["vocabulary"] == [{"text": "Moonshine", "weight": 4, "lang": "en"}]
    assert voc["after_update"] == [{"text": "LibriVox", "weight": 5, "lang": "en"}]
    assert "Status Code: 400" in voc["bad_prefix"] and "InvalidParameter" in voc["bad_prefix"]
    assert voc["after_delete"] == []
    assert stats["connections"] == 3 and stats.get("unauthorized", 0) == 0
