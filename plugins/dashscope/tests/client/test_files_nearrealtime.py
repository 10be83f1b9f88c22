"""Near-real-time ASR (``qwen3-asr-flash`` over the synchronous API) and the emulator's compat endpoint."""

from __future__ import annotations

import base64
import io
import itertools
import json
import wave
from typing import Any

import numpy as np
import pytest
import trio
from testkit.common import FAKE_KEY, stream_with_endpointer, tone_script
from voicekit_dashscope.asr.nearrealtime import Qwen3ASRFlash
from voicekit_dashscope.client.compat import CompatClient, wav_data_url
from voicekit_dashscope.errors import AuthenticationError, DashScopeError
from voicekit_dashscope_emulator import FixtureEngine, running_emulator, tone_audio

from voicekit.asr.base import ASRConfig
from voicekit.errors import ConfigError

FILES = {"vad": "energy"}


@pytest.mark.parametrize("api", ["compat", "native"])
async def test_utterances_in_order_with_emotion(api: str) -> None:
    script = tone_script(4, seed=8)
    sentences = {f: {"text": t, "emotion": "happy"} for f, t in script.sentences.items()}
    engine = FixtureEngine(sentences, key="tone", partial_every=0)
    async with running_emulator(engine, files=FILES) as emu:
        asr = Qwen3ASRFlash(FAKE_KEY, base_url=emu.http_base_url, api=api, concurrency=4, language="en")
        results = await stream_with_endpointer(asr, script.audio)
    assert [r.text for r in results] == script.order
    assert [r.utterance_id for r in results] == [1, 2, 3, 4]
    assert all(r.is_final and r.emotion == "happy" and r.language == "en" for r in results)
    assert all(a.end <= b.start for a, b in itertools.pairwise(results))


async def test_long_turn_is_cut_at_five_seconds() -> None:
    pcm = tone_audio([(0, 0.3), (500, 7.0), (0, 1.0)])
    engine = FixtureEngine({500: "a long turn"}, key="tone", partial_every=0)
    async with running_emulator(engine, files=FILES) as emu:
        results = await stream_with_endpointer(Qwen3ASRFlash(FAKE_KEY, base_url=emu.http_base_url), pcm)
    assert [r.text for r in results] == ["a long turn", "a long turn"]
    assert results[0].end - results[0].start == pytest.approx(5.0)
    assert results[1].start == pytest.approx(results[0].end)


async def test_errors_are_typed() -> None:
    with pytest.raises(ConfigError, match="no OpenAI-compatible endpoint in the US region"):
        Qwen3ASRFlash(FAKE_KEY, region="us")
    async with running_emulator(FixtureEngine([]), files=FILES, api_keys={FAKE_KEY}) as emu:
        bad = CompatClient("sk-wrong-000000000000000000000000", base_url=emu.http_base_url)
        audio = {"type": "input_audio", "input_audio": {"data": wav_data_url(b"\0\0" * 1600, 16000)}}
        with pytest.raises(AuthenticationError, match="invalid_api_key"):
            await bad.chat({"model": "qwen3-asr-flash", "messages": [{"role": "user", "content": [audio]}]})
        good = CompatClient(FAKE_KEY, base_url=emu.http_base_url)
        with pytest.raises(DashScopeError, match="does not exist"):
            await good.chat({"model": "gpt-4", "messages": [{"role": "user", "content": [audio]}]})
        long_wav = wav_data_url(b"\0\0" * 8000 * 301, 8000)  # 8 kHz keeps the body under the emulator's 8 MB
        with pytest.raises(DashScopeError, match="AUDIO_DURATION_TOO_LONG"):
            await good.chat({"model": "qwen3-asr-flash", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": long_wav}}]}]})


@pytest.mark.slow  # SDK conformance: the official OpenAI SDK, in a thread
async def test_official_openai_sdk_streams_input_audio() -> None:
    openai = pytest.importorskip("openai", reason="the OpenAI SDK is in the plugin's [test] extra")
    script = tone_script(2, seed=1)
    engine = FixtureEngine({f: {"text": t, "emotion": "sad"} for f, t in script.sentences.items()}, key="tone",
                           partial_every=0)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(script.audio)
    data_url = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()
    async with running_emulator(engine, files=FILES) as emu:
        base = emu.http_base_url.removesuffix("/api/v1") + "/compatible-mode/v1"

        def run() -> tuple[str, list[Any], Any]:
            client = openai.OpenAI(api_key=FAKE_KEY, base_url=base)
            stream = client.chat.completions.create(
                model="qwen3-asr-flash",
                messages=[{"role": "system", "content": [{"type": "text", "text": "hertz"}]},
                          {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data_url}}]}],
                stream=True, stream_options={"include_usage": True}, extra_body={"asr_options": {"language": "en"}})
            text, annotations, usage = "", [], None
            for chunk in stream:
                if chunk.usage:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    annotations += (choice.delta.model_extra or {}).get("annotations") or []
            whole = client.chat.completions.create(
                model="qwen3-asr-flash",
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data_url}}]}])
            assert whole.choices[0].message.content == text
            return text, annotations, usage

        text, annotations, usage = await trio.to_thread.run_sync(run)
    assert text == " ".join(script.order)
    assert annotations == [{"type": "audio_info", "language": "en", "emotion": "sad"}]
    assert usage.prompt_tokens >= 25 * int(len(script.audio) / 32000)
    assert np.isfinite(usage.total_tokens)


class _SlowFirst:
    """A fixture engine that answers the first script tone late, so later chunks finish first."""

    def __init__(self, inner: FixtureEngine, slow_hz: float, delay: float) -> None:
        self.inner, self.slow_hz, self.delay = inner, slow_hz, delay
        self.capabilities = inner.capabilities

    def open_stream(self, config: ASRConfig) -> Any:
        from contextlib import asynccontextmanager

        from voicekit_dashscope_emulator.engines import dominant_frequency

        engine = self

        @asynccontextmanager
        async def cm() -> Any:
            async with engine.inner.open_stream(config) as stream:
                original = stream.speech_ended

                async def speech_ended(t: float) -> None:
                    audio = stream._audio()
                    if audio.size and abs(dominant_frequency(audio, 16000) - engine.slow_hz) < 20:
                        await trio.sleep(engine.delay)
                    await original(t)

                stream.speech_ended = speech_ended
                yield stream

        return cm()


async def test_results_stay_in_audio_order_when_requests_finish_out_of_order() -> None:
    script = tone_script(3, seed=30)
    first_hz = min(script.sentences)
    engine = _SlowFirst(FixtureEngine(script.sentences, key="tone", partial_every=0), first_hz, 0.6)
    async with running_emulator(engine, files=FILES) as emu:
        asr = Qwen3ASRFlash(FAKE_KEY, base_url=emu.http_base_url, concurrency=3)
        finished: list[int] = []
        original = asr.recognize

        async def recognize(pcm: bytes, rate: int, **kw: Any) -> Any:
            res = await original(pcm, rate, **kw)
            finished.append(len(pcm))
            return res

        asr.recognize = recognize  # type: ignore[method-assign]
        results = await stream_with_endpointer(asr, script.audio)
    assert [r.text for r in results] == script.order
    # the first utterance's request really did finish last
    first_len = round((results[0].end - results[0].start) * 16000) * 2
    assert finished[-1] == first_len


async def test_a_refused_chunk_surfaces_as_a_typed_error() -> None:
    script = tone_script(1, seed=31)
    async with running_emulator(FixtureEngine(script.sentences, key="tone"), files=FILES,
                                api_keys={FAKE_KEY}) as emu:
        asr = Qwen3ASRFlash("sk-not-this-one-00000000000000000000", base_url=emu.http_base_url)
        with pytest.RaisesGroup(AuthenticationError, flatten_subgroups=True):
            await stream_with_endpointer(asr, script.audio)


async def test_native_form_streams_dashscope_sse_events() -> None:
    import httpx

    script = tone_script(2, seed=32)
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    body = {"model": "qwen3-asr-flash", "input": {"messages": [
        {"role": "user", "content": [{"audio": wav_data_url(script.audio, 16000)}]}]},
        "parameters": {"result_format": "message", "incremental_output": True, "asr_options": {"language": "en"}}}
    async with running_emulator(engine, files=FILES) as emu, httpx.AsyncClient() as http:
        resp = await http.post(emu.http_base_url + "/services/aigc/multimodal-generation/generation", json=body,
                               headers={"Authorization": f"Bearer {FAKE_KEY}", "X-DashScope-SSE": "enable"})
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [e for e in resp.text.split("\n\n") if e]
    assert all(e.startswith(f"id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:") for i, e in enumerate(events, 1))
    datas = [json.loads(e.split("\ndata:", 1)[1]) for e in events]
    pieces = [d["output"]["choices"][0]["message"]["content"][0]["text"] for d in datas]
    assert "".join(pieces) == " ".join(script.order)
    assert [d["output"]["choices"][0]["finish_reason"] for d in datas][-2:] == [None, "stop"]
