"""voicekit's Fun-ASR / Paraformer plugins against the emulator (real sockets on loopback)."""

from __future__ import annotations

import pytest
import trio
from testkit.common import FAKE_KEY, ToneScript, fixture_emulator, stream_through, tone_script
from voicekit_dashscope.asr.task import FunASRRealtime, ParaformerRealtime
from voicekit_dashscope.client.task import RetryPolicy, TaskConnection, Timeouts
from voicekit_dashscope.errors import (
    AuthenticationError,
    RetriesExhaustedError,
    ServerTimeoutError,
    ServiceUnavailableError,
    TaskFailedError,
)
from voicekit_dashscope.protocol.task import RecognitionParameters, RunTask, TaskFailed, new_task_id
from voicekit_dashscope_emulator import DashScopeEmulator, FixtureEngine, TaskSettings, running_emulator
from voicekit_dashscope_emulator.faults import FaultPlan

from voicekit.asr.base import ASRConfig
from voicekit.errors import ConfigError
from voicekit.plugins import load

FAST = dict(retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.05, max_retries=6),
            timeouts=Timeouts(ping_interval=0.1, ping_timeout=0.3, start=3, finish=5))


def finals(results: list) -> list[str]:
    return [r.text for r in results if r.is_final]


def test_entry_points_and_capabilities() -> None:
    fun = load("asr", "fun-asr-realtime")
    para = load("asr", "paraformer-realtime")
    assert fun is FunASRRealtime and para is ParaformerRealtime
    assert fun.capabilities.api == "websocket" and fun.capabilities.hotwords
    assert fun.capabilities.server_endpointing and not fun.capabilities.offline
    names = {c.name for c in fun.models()}
    assert {"fun-asr-realtime", "fun-asr-realtime-2025-11-07", "fun-asr-realtime-2026-02-28"} <= names
    eight = {c.name: c for c in para.models()}["paraformer-realtime-8k-v2"]
    assert eight.emotion and eight.sample_rates == (8000,)


async def test_partials_and_finals_with_word_timings(emulator: DashScopeEmulator, script: ToneScript) -> None:
    asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url)
    results = await stream_through(asr, script.audio)
    assert finals(results) == script.order
    partials = [r for r in results if not r.is_final]
    assert partials, "the emulator sends interim results"
    assert all(r.end is None for r in partials)
    for r in results:
        if r.is_final:
            assert r.start is not None and r.end is not None and r.start < r.end <= script.seconds
            assert [w.text for w in r.words] == r.text.split()
            assert r.words[0].start >= r.start and r.words[-1].end <= r.end + 1e-6
    ids = [r.utterance_id for r in results if r.is_final]
    assert ids == list(range(1, len(script.order) + 1))


async def test_paraformer_8k_gives_emotion(script: ToneScript) -> None:
    eight = tone_script(2, seed=3)
    # resample the 16 kHz script to 8 kHz by taking every other sample of a low-frequency script
    import numpy as np

    pcm = np.frombuffer(eight.audio, "<i2")[::2].tobytes()
    engine = FixtureEngine({f: {"text": t, "emotion": "positive", "emotion_confidence": 0.9}
                            for f, t in eight.sentences.items()}, key="tone")
    async with running_emulator(engine, settings=TaskSettings(vad="energy")) as emu:
        asr = ParaformerRealtime("paraformer-realtime-8k-v2", api_key=FAKE_KEY, base_url=emu.base_url)
        results = await stream_through(asr, pcm, rate=8000)
    got = [r for r in results if r.is_final]
    assert [r.text for r in got] == eight.order
    assert all(r.emotion == "positive" for r in got)


def test_settings_are_checked_before_connecting() -> None:
    with pytest.raises(ConfigError, match="disfluency_removal"):
        FunASRRealtime(api_key=FAKE_KEY, disfluency_removal=True)
    with pytest.raises(ConfigError, match=r"200\.\.6000"):
        FunASRRealtime(api_key=FAKE_KEY, max_sentence_silence_ms=50)
    with pytest.raises(ConfigError, match="not offered in region singapore"):
        ParaformerRealtime(api_key=FAKE_KEY, region="singapore")
    with pytest.raises(ConfigError, match="unknown fun-asr"):
        FunASRRealtime("fun-asr-realtime-1999-01-01", api_key=FAKE_KEY)
    with pytest.raises(ConfigError, match="plain ws://"):
        FunASRRealtime(api_key=FAKE_KEY, base_url="ws://example.com:8080")
    with pytest.raises(ConfigError, match="language"):
        FunASRRealtime(api_key=FAKE_KEY, language_hints=["xx"])
    asr = FunASRRealtime("fun-asr-realtime-2025-11-07", api_key=FAKE_KEY, region="beijing",
                         semantic_punctuation=True, max_sentence_silence_ms=800, heartbeat=True,
                         speech_noise_threshold=0.2, language_hints=["en"], multi_threshold_mode=True,
                         special_word_filter={"system_reserved_filter": True})
    assert asr.endpoints.inference_url == "wss://dashscope.aliyuncs.com/api-ws/v1/inference"
    params = asr._parameters(16000, "vocab-a-1", None).to_json()
    assert params == {"format": "pcm", "sample_rate": 16000, "vocabulary_id": "vocab-a-1",
                      "semantic_punctuation_enabled": True, "max_sentence_silence": 800,
                      "multi_threshold_mode_enabled": True, "heartbeat": True, "language_hints": ["en"],
                      "speech_noise_threshold": 0.2,
                      "special_word_filter": {"system_reserved_filter": True}}


async def test_wrong_sample_rate_is_a_config_error(emulator: DashScopeEmulator) -> None:
    asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url)
    with pytest.raises(ConfigError, match="8000 Hz"):
        async with asr.open_stream(ASRConfig(sample_rate=8000)):
            pass


async def test_bad_key_is_an_authentication_error(script: ToneScript) -> None:
    async with fixture_emulator(script, api_keys={"sk-the-only-good-key-000"}) as emu:
        asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url, **FAST)
        with pytest.raises(AuthenticationError, match="HTTP 401") as info:
            await stream_through(asr, script.audio[:32000])
    assert FAKE_KEY not in str(info.value)


async def test_permanent_task_failure_is_raised_with_code_and_message(emulator: DashScopeEmulator,
                                                                      script: ToneScript) -> None:
    asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url, vocabulary_id="vocab-nope-0", **FAST)
    with pytest.raises(TaskFailedError) as info:
        await stream_through(asr, script.audio[:32000])
    assert info.value.code == "InvalidParameter"
    assert "vocab-nope-0" in (info.value.server_message or "")
    assert emulator.stats.get("tasks", 0) == 0


async def test_unknown_model_from_a_raw_client(emulator: DashScopeEmulator) -> None:
    from voicekit_dashscope.auth import ApiKey

    async with TaskConnection.open(emulator.ws_base_url, ApiKey(FAKE_KEY)) as conn:
        with pytest.raises(TaskFailedError, match="Model not exist"):
            await conn.start(RunTask(new_task_id(), "no-such-model", RecognitionParameters()), 5)


async def test_connection_reuse_for_a_second_task(emulator: DashScopeEmulator, script: ToneScript) -> None:
    from voicekit_dashscope.auth import ApiKey
    from voicekit_dashscope.protocol.task import ResultGenerated, TaskFinished

    async with TaskConnection.open(emulator.ws_base_url, ApiKey(FAKE_KEY)) as conn:
        for _ in range(2):
            await conn.start(RunTask(new_task_id(), "fun-asr-realtime", RecognitionParameters()), 5)
            await conn.send(script.audio)
            await conn.send(conn.protocol.finish_task())
            texts = []
            while True:
                ev = await conn.receive()
                if isinstance(ev, ResultGenerated) and ev.sentence.is_final:
                    texts.append(ev.sentence.text)
                if isinstance(ev, TaskFinished):
                    break
            assert texts == script.order
    assert emulator.stats["connections"] == 1 and emulator.stats["tasks"] == 2


async def test_emulator_times_out_a_silent_task_after_23_seconds(autojump_clock: trio.abc.Clock,
                                                                 emulator: DashScopeEmulator) -> None:
    from voicekit_dashscope.auth import ApiKey

    # client deadlines far away, so the only timer that can fire is the server's
    async with TaskConnection.open(emulator.ws_base_url, ApiKey(FAKE_KEY),
                                   timeouts=Timeouts(connect=1000, close=1000)) as conn:
        await conn.start(RunTask(new_task_id(), "fun-asr-realtime", RecognitionParameters()), 1000)
        t0 = trio.current_time()
        ev = await conn.receive()
    assert isinstance(ev, TaskFailed)
    assert (ev.error_code, ev.error_message) == ("CLIENT_ERROR", "request timeout after 23 seconds.")
    assert trio.current_time() - t0 == pytest.approx(23.0, abs=0.5)


async def test_heartbeats_are_sent_and_skipped(script: ToneScript) -> None:
    quiet = tone_script(1, gap=(7.0, 7.0))
    async with fixture_emulator(quiet, settings=TaskSettings(vad="energy", heartbeat_every=2.0)) as emu:
        asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url, heartbeat=True)
        results = await stream_through(asr, quiet.audio)
    assert finals(results) == quiet.order
    assert all(r.text or not r.is_final for r in results)


async def test_a_server_that_stops_answering_is_detected(script: ToneScript) -> None:
    async with fixture_emulator(script, faults="drop@1") as emu:
        asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url,
                             retry=RetryPolicy(max_retries=0), timeouts=Timeouts(ping_interval=0.1, ping_timeout=0.3))
        with trio.fail_after(10):
            with pytest.raises(RetriesExhaustedError) as info:
                await stream_through(asr, script.audio)
    assert isinstance(info.value.__cause__, ServerTimeoutError)


async def test_handshake_503_is_retried(script: ToneScript) -> None:
    plan = FaultPlan.parse(None)
    plan.pending_rejects.extend([503, 503])
    async with fixture_emulator(script, faults=plan) as emu:
        asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url, **FAST)
        results = await stream_through(asr, script.audio)
        assert emu.stats["rejected"] == 2
    assert finals(results) == script.order
    assert ServiceUnavailableError.retryable


@pytest.mark.slow
async def test_faults_every_few_seconds_lose_and_repeat_nothing() -> None:
    """A long recording with a fault every 5 s of audio: the same final transcript as without."""
    long = tone_script(24, seed=7)
    kinds = ["drop", "close1011", "task-failed", "idle", "malformed", "reset", "slow=0.01", "task-failed=Throttling"]
    spec = ",".join(f"{kinds[i % len(kinds)]}@{5 * (i + 1)}" for i in range(int(long.seconds // 5)))

    async def run(faults: str | None) -> tuple[list, DashScopeEmulator]:
        async with fixture_emulator(long, faults=faults) as emu:
            asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url, max_sentence_silence_ms=700, **FAST)
            with trio.fail_after(40):
                results = await stream_through(asr, long.audio, pace=0.001)
        return [r for r in results if r.is_final], emu

    clean, _ = await run(None)
    faulty, emu = await run(spec)
    assert [r.text for r in clean] == long.order
    assert len(emu.faults.injected) >= 10, emu.faults.injected
    assert emu.stats["connections"] >= 8
    assert [r.text for r in faulty] == [r.text for r in clean]
    assert [r.utterance_id for r in faulty] == [r.utterance_id for r in clean]
    for a, b in zip(clean, faulty, strict=True):
        assert b.end == pytest.approx(a.end, abs=0.05)
        assert b.start == pytest.approx(a.start, abs=0.35)  # the VAD pre-roll may be cut at a new task


async def test_context_updates_go_out_as_continue_task(emulator: DashScopeEmulator, script: ToneScript) -> None:
    from voicekit.audio.frame import AudioFrame

    ctx = [{"role": "user", "content": [{"type": "input_text", "text": "tones and hertz"}]}]
    asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emulator.base_url, context=ctx)
    texts = []
    async with asr.open_stream(ASRConfig()) as stream:
        frames = AudioFrame(script.audio, 16000).split(1600)
        for i, frame in enumerate(frames):
            if i == len(frames) // 2:
                await stream.update_context([*ctx, {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}])
            await stream.send_audio(frame)
        await stream.finish()
        async for r in stream:
            if r.is_final:
                texts.append(r.text)
    assert texts == script.order
    assert emulator.stats["context_updates"] == 1
    with pytest.raises(ConfigError, match="context"):
        ParaformerRealtime(api_key=FAKE_KEY, context=ctx)
