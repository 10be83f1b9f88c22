"""The emulator's own pieces: fault specs, timers, audio formats, the HTTP server."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import trio
from testkit.common import FAKE_KEY, ToneScript, fixture_emulator
from voicekit_dashscope.auth import ApiKey
from voicekit_dashscope.client.task import TaskConnection, Timeouts
from voicekit_dashscope.errors import ConnectionLostError
from voicekit_dashscope.protocol.task import (
    RecognitionParameters,
    ResultGenerated,
    RunTask,
    TaskFailed,
    TaskFinished,
    new_task_id,
)
from voicekit_dashscope_emulator import DashScopeEmulator, FixtureEngine, tone_audio
from voicekit_dashscope_emulator.engines import dominant_frequency
from voicekit_dashscope_emulator.faults import Fault, FaultPlan

from voicekit.errors import ConfigError


def test_fault_spec_parsing_and_schedule() -> None:
    plan = FaultPlan.parse("drop@5, close1011/4,task-failed=Throttling@2.5,slow=0.2/100")
    assert plan.advance(2.0) == []
    assert plan.advance(1.0) == [Fault("task-failed", "Throttling")]
    assert plan.advance(1.0) == [Fault("close1011")]
    assert plan.advance(1.0) == [Fault("drop")]
    assert plan.advance(3.5) == [Fault("close1011")]
    assert plan.advance(10.0) == [Fault("close1011"), Fault("close1011")]
    for bad in ("explode@3", "drop", "drop@0", "slow=fast@1", "close=abc@2"):
        with pytest.raises(ConfigError, match="fault rule"):
            FaultPlan.parse(bad)


def test_tone_identification_is_robust_to_cuts() -> None:
    audio = np.frombuffer(tone_audio([(0, 0.5), (345, 1.0), (0, 0.7)]), "<i2")
    for a, b in ((0, len(audio)), (9000, 20000), (12345, 27000)):
        assert abs(dominant_frequency(audio[a:b], 16000) - 345.0) < 5


async def test_idle_connections_are_closed_after_60_seconds(autojump_clock: trio.abc.Clock,
                                                           emulator: DashScopeEmulator) -> None:
    async with TaskConnection.open(emulator.ws_base_url, ApiKey(FAKE_KEY),
                                   timeouts=Timeouts(connect=1000, close=1000)) as conn:
        t0 = trio.current_time()
        with pytest.raises(ConnectionLostError):
            await conn.receive()
        assert trio.current_time() - t0 == pytest.approx(60.0, abs=0.5)


def _wav(pcm: bytes, rate: int) -> bytes:
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"LIST" + struct.pack("<I", 4) + b"INFO"  # an extra chunk before the data
    return header + b"data" + struct.pack("<I", len(pcm)) + pcm


async def _recognize(emu: DashScopeEmulator, model: str, params: RecognitionParameters, audio: bytes,
                     chunk: int = 1000) -> list[str] | TaskFailed:
    async with TaskConnection.open(emu.ws_base_url, ApiKey(FAKE_KEY)) as conn:
        await conn.start(RunTask(new_task_id(), model, params), 5)
        for i in range(0, len(audio), chunk):
            await conn.send(audio[i:i + chunk])
        await conn.send(conn.protocol.finish_task())
        texts = []
        while True:
            ev = await conn.receive()
            if isinstance(ev, TaskFailed):
                return ev
            if isinstance(ev, ResultGenerated) and ev.sentence.is_final:
                texts.append(ev.sentence.text)
            if isinstance(ev, TaskFinished):
                return texts


async def test_wav_format_and_other_sample_rates(emulator: DashScopeEmulator, script: ToneScript) -> None:
    # a WAV file streamed in odd-sized pieces, header included
    got = await _recognize(emulator, "fun-asr-realtime", RecognitionParameters(format="wav"),
                           _wav(script.audio, 16000), chunk=777)
    assert got == script.order
    # 48 kHz PCM for Paraformer v2, resampled by the emulator
    pcm48 = np.repeat(np.frombuffer(script.audio, "<i2"), 3).astype("<i2").tobytes()
    got = await _recognize(emulator, "paraformer-realtime-v2",
                           RecognitionParameters(sample_rate=48000), pcm48)
    assert got == script.order


async def test_unsupported_audio_is_a_task_failure(emulator: DashScopeEmulator) -> None:
    got = await _recognize(emulator, "fun-asr-realtime", RecognitionParameters(format="wav"), b"not a wav file")
    assert isinstance(got, TaskFailed) and got.error_code == "NO_VALID_AUDIO_ERROR"
    async with TaskConnection.open(emulator.ws_base_url, ApiKey(FAKE_KEY)) as conn:
        from voicekit_dashscope.errors import TaskFailedError

        with pytest.raises(TaskFailedError, match="only supports sample_rate 8000"):
            await conn.start(RunTask(new_task_id(), "paraformer-realtime-8k-v2", RecognitionParameters()), 5)


async def test_emulator_reports_its_port_through_nursery_start() -> None:
    import httpx

    emu = DashScopeEmulator(FixtureEngine(["x"]))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(emu.serve)
        assert port == emu.port and port > 0
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/health")
            missing = await http.get(f"http://127.0.0.1:{port}/nowhere")
        nursery.cancel_scope.cancel()
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert missing.status_code == 404


async def test_unauthenticated_websocket_is_refused_with_401(script: ToneScript) -> None:
    import trio_websocket

    async with fixture_emulator(script) as emu:
        with pytest.raises(trio_websocket.ConnectionRejected) as info:
            async with trio_websocket.open_websocket_url(emu.ws_base_url):
                pass
    assert info.value.status_code == 401
