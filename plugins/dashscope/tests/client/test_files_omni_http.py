"""Qwen-Omni over HTTP: as an ASR plugin (prompt context) and as a handler backend, against the emulator."""

from __future__ import annotations

import httpx
import pytest
from testkit.common import FAKE_KEY, stream_with_endpointer, tone_script
from voicekit_dashscope.asr.omni_http import OmniChatHandler, OmniHTTPASR, Qwen3OmniFlashHTTP
from voicekit_dashscope.client.compat import wav_data_url
from voicekit_dashscope_emulator import FixtureEngine, running_emulator

from voicekit.errors import ConfigError
from voicekit.handlers.assistant import Turn
from voicekit.plugins import load

FILES = {"vad": "energy"}


async def test_omni_asr_plugin_transcribes_in_order() -> None:
    script = tone_script(3, seed=12)
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    async with running_emulator(engine, files=FILES) as emu:
        asr = load("asr", "qwen3.5-omni-plus")(FAKE_KEY, base_url=emu.http_base_url, context="Hertz")
        results = await stream_with_endpointer(asr, script.audio)
        flash = await stream_with_endpointer(Qwen3OmniFlashHTTP(FAKE_KEY, base_url=emu.http_base_url), script.audio)
    assert isinstance(asr, OmniHTTPASR)
    assert [r.text for r in results] == script.order == [r.text for r in flash]
    assert OmniHTTPASR.capabilities.prompt_context and not OmniHTTPASR.capabilities.hotwords
    with pytest.raises(ConfigError, match=r"not offered in region us .*beijing \(cn-beijing\), singapore"):
        OmniHTTPASR(FAKE_KEY, region="us")


async def test_omni_handler_streams_text_and_speaks() -> None:
    script = tone_script(2, seed=13)
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    async with running_emulator(engine, files=FILES) as emu:
        handler = OmniChatHandler(FAKE_KEY, base_url=emu.http_base_url)
        spoken = await handler.answer_audio(script.audio, 16000)
        # the emulated Omni model answers with what it heard; the reply is tone speech at 24 kHz
        assert spoken.text == " ".join(script.order)
        assert len(spoken.audio) > 0 and len(spoken.audio) % 2 == 0
        assert len(spoken.audio) / 2 / 24000 >= 0.3 * len(spoken.text.split())
        async with httpx.AsyncClient() as http:
            resp = await http.post(emu.http_base_url.removesuffix("/api/v1") + "/compatible-mode/v1/chat/completions",
                                   headers={"Authorization": f"Bearer {FAKE_KEY}"},
                                   json={"model": "qwen3-omni-flash", "stream": False, "messages": [
                                       {"role": "user", "content": [{"type": "input_audio", "input_audio": {
                                           "data": wav_data_url(script.audio, 16000), "format": "wav"}}]}]})
    assert resp.status_code == 400 and "only support stream mode" in resp.json()["error"]["message"]
    assert handler.voice == "Tina"


async def test_omni_handler_as_assistant_fallback_keeps_history() -> None:
    # the emulated Omni model has no language model: it echoes a text turn ("You said: ... Noted.")
    async with running_emulator(FixtureEngine([]), files=FILES) as emu:
        handler = OmniChatHandler(FAKE_KEY, base_url=emu.http_base_url)
        context: dict[str, object] = {}
        first = [s async for s in await handler(Turn("hello there", "fallback", {}, 1, context))]
        second = [s async for s in await handler(Turn("and again", "fallback", {}, 2, context))]
    assert first == ["You said: hello there.", "Noted."]
    assert second == ["You said: and again.", "Noted."]
    assert context["omni_history"] == [
        {"role": "user", "content": "hello there"}, {"role": "assistant", "content": "You said: hello there. Noted."},
        {"role": "user", "content": "and again"}, {"role": "assistant", "content": "You said: and again. Noted."}]
