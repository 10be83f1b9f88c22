"""The official SDK's MultiModalConversation (qwen3-asr-flash, synchronous) against the emulator."""

from __future__ import annotations

import json
import os
import sys
import wave

import pytest
import trio
from testkit import FILES_SDK_DRIVER
from testkit.common import FAKE_KEY
from testkit.files import serve_files
from voicekit_dashscope_emulator import running_emulator

from voicekit.testing.data import speech
from voicekit.testing.wer import wer

pytestmark = [pytest.mark.slow, pytest.mark.realspeech]
DRIVER = FILES_SDK_DRIVER


async def test_multimodal_conversation_transcribes_a_url() -> None:
    path = speech("goforward")
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000
    async with running_emulator() as emu, serve_files({"/go.wav": path.read_bytes()}) as web:
        env = dict(os.environ, DASHSCOPE_HTTP_BASE_URL=emu.http_base_url, DASHSCOPE_API_KEY=FAKE_KEY)
        with trio.fail_after(60):
            proc = await trio.run_process([sys.executable, str(DRIVER), "mmc", web + "/go.wav"], env=env,
                                          capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert out["status_code"] == 200
    message = out["output"]["choices"][0]["message"]
    text = " ".join(part["text"] for part in message["content"])
    assert wer(["go forward ten meters"], [text]) == 0
    assert message["annotations"][0]["language"] == "en"
