"""Realtime recognition (Qwen3-ASR-Flash-Realtime, Omni) survives lost connections.

The same guarantee as the Fun-ASR task client: after a drop, a close, a reset, a silent server, a
malformed frame or a retryable server error, the stream reconnects with back-off, re-sends the
audio no final covers yet, and the caller gets every final once, numbered and timed as without
the fault. Permanent errors end the stream at once with the server's code and what to do.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from testkit.common import assert_same_words, librivox_audio, stream_through, tone_script
from voicekit_dashscope.asr.realtime import OmniRealtimeASR, Qwen3ASRRealtime
from voicekit_dashscope.client.task import RetryPolicy, Timeouts
from voicekit_dashscope.errors import RetriesExhaustedError
from voicekit_dashscope_emulator import FixtureEngine, running_emulator
from voicekit_dashscope_emulator.omni import OmniScript, RealtimeSettings

from voicekit.asr.base import TranscriptResult

KEY = "sk-test-realtime-resume-not-a-real-key"  # a made-up key: the emulator accepts any
FAST = dict(retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.05),
            timeouts=Timeouts(ping_interval=0.3, ping_timeout=2.0, start=10))


def _emulator(script: Any, faults: str | None) -> Any:
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0.25)
    realtime = {"settings": RealtimeSettings(vad="energy", pace=0.0), "script": OmniScript(replies=("ok",))}
    return running_emulator(engine, realtime=realtime, faults=faults)


@pytest.mark.parametrize("faults", [
    "reset@4",  # one fault stays in the quick run; several faults per stream take seconds each
    pytest.param("close1011@3,reset@9,close=1001@15", marks=pytest.mark.slow),
    pytest.param("task-failed@5,malformed@10,drop@15", marks=pytest.mark.slow),
    # a reset every 4 s of *fresh* audio: the realtime endpoint's fault clock does not count what a
    # resume re-sends (its 1 s lead-in and the unfinished utterance), or no connection would live
    # long enough to reach its next final
    pytest.param("reset/4", marks=pytest.mark.slow),
    pytest.param("reset/6", marks=pytest.mark.slow),
])
async def test_qwen3_asr_realtime_resumes_without_losing_or_repeating_finals(faults: str) -> None:
    script = tone_script(10, seed=3)

    async def run(spec: str | None) -> tuple[list[TranscriptResult], Any]:
        async with _emulator(script, spec) as emu:
            asr = Qwen3ASRRealtime(api_key=KEY, base_url=emu.base_url, **FAST)
            with trio.fail_after(60):
                results = await stream_through(asr, script.audio, pace=0.002)
            return [r for r in results if r.is_final], emu

    clean, _ = await run(None)
    assert [r.text for r in clean] == script.order
    faulty, emu = await run(faults)
    assert emu.faults.injected, "no fault was injected"
    assert emu.faults.replayed_seconds > 0, "the realtime endpoint's fault clock counted re-sent audio"
    assert [r.text for r in faulty] == [r.text for r in clean]
    assert [r.utterance_id for r in faulty] == [r.utterance_id for r in clean]
    for a, b in zip(clean, faulty, strict=True):
        assert b.end == pytest.approx(a.end, abs=0.15)


async def test_omni_manual_mode_resumes_its_commits() -> None:
    script = tone_script(4, seed=5)
    # the session's own endpointing: one marker per tone, from the script's layout
    markers: list[tuple[float, float]] = []
    pcm = script.audio
    import numpy as np

    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)  # 10 ms frames
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 500
    edges = np.flatnonzero(np.diff(loud.astype(np.int8))) + 1
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        markers.append((a / 100, b / 100 + 0.3))
    assert len(markers) == len(script.order)

    async def run(spec: str | None) -> list[str]:
        async with _emulator(script, spec) as emu:
            asr = OmniRealtimeASR("qwen3-omni-flash-realtime", api_key=KEY, base_url=emu.base_url,
                                  transcript_source="input", **FAST)
            with trio.fail_after(60):
                results = await stream_through(asr, pcm, pace=0.002, markers=markers)
            assert spec is None or emu.faults.injected
            return [r.text for r in results if r.is_final]

    assert await run(None) == script.order
    assert await run("reset@3,close1011@6") == script.order


async def test_retries_are_bounded() -> None:
    script = tone_script(3)
    async with _emulator(script, "reset/1") as emu:
        asr = Qwen3ASRRealtime(api_key=KEY, base_url=emu.base_url,
                               retry=RetryPolicy(max_retries=2, backoff_initial=0.01, backoff_max=0.02))
        with trio.fail_after(30), pytest.raises(RetriesExhaustedError, match="3 times in a row"):
            await stream_through(asr, script.audio + bytes(32000 * 3), pace=0.001)


async def test_a_permanent_server_error_is_not_retried() -> None:
    script = tone_script(3)
    async with _emulator(script, "task-failed=InvalidParameter@2") as emu:
        asr = Qwen3ASRRealtime(api_key=KEY, base_url=emu.base_url, **FAST)
        with trio.fail_after(30), pytest.raises(Exception) as info:
            await stream_through(asr, script.audio, pace=0.001)
        assert emu.stats.get("realtime_sessions", 0) <= 1 or len(emu.realtime.sessions) == 1
    assert getattr(info.value, "code", None) == "InvalidParameter"
    assert "InvalidParameter" in str(info.value) and "check" in str(info.value)


@pytest.mark.slow
@pytest.mark.realspeech
async def test_one_reset_loses_no_sentence_of_real_speech() -> None:
    """The report: ``reset@10`` on qwen3-asr-flash-realtime gave 0 of 5 sentences."""
    pytest.importorskip("voicekit_moonshine", reason="needs the moonshine plugin (embedded engine)")
    from voicekit.plugins import load

    audio = librivox_audio()
    engine = load("asr", "moonshine")()

    async def run(spec: str | None) -> list[str]:
        realtime = {"settings": RealtimeSettings(vad="webrtc", pace=0.0)}
        async with running_emulator(engine, realtime=realtime, faults=spec) as emu:
            asr = Qwen3ASRRealtime(api_key=KEY, base_url=emu.base_url, **FAST)
            with trio.fail_after(240):
                results = await stream_through(asr, audio, pace=0.05)
            assert spec is None or emu.faults.injected
            return [r.text for r in results if r.is_final and r.text]

    clean = await run(None)
    assert len(clean) == 5, clean
    faulty = await run("reset@10")
    # real speech heard again from a new start may be cut into sentences a little differently;
    # the words are what must survive (before: ConnectionLostError, 0 of 5 sentences)
    assert_same_words(clean, faulty)
