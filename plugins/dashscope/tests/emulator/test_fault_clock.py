"""The emulator's fault clock on real speech: the schedule the docs show loses nothing.

The clock counts first-seen audio only (``voicekit_dashscope_emulator.faults``), so audio a
resuming client re-sends after a fault does not bring the next fault closer, and a 7 s sentence
(the first LibriVox clip) is heard whole on some connection. The documented example schedule,
streamed through voicekit's Fun-ASR client, gives the fault-free transcript's words (before, the
stream failed with every retry spent and no transcript at all).
"""

from __future__ import annotations

import os
import wave

import pytest
import trio
from testkit.common import FAKE_KEY, assert_same_words, stream_through
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.client.task import RetryPolicy, Timeouts
from voicekit_dashscope_emulator import TaskSettings, running_emulator
from voicekit_dashscope_emulator.faults import FaultPlan

# the example in docs/dashscope-emulator.md, "Faults on demand"
DOCS_EXAMPLE = "drop@5,close1011@10,task-failed@15,idle@20,malformed@25,reset@30"
FAST = dict(retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.05),  # the default 5 retries in a row
            timeouts=Timeouts(ping_interval=0.5, ping_timeout=4, start=10, finish=30))


def test_resent_audio_does_not_move_the_clock() -> None:
    """A connection that repeats what an earlier one received meets each fault once, at its
    place in the recording; audio given without bytes still counts as before."""
    recording = os.urandom(32000 * 20)  # 20 s of 16 kHz PCM that never repeats by chance
    plan = FaultPlan.parse("drop@5,close1011@10")
    first, second = object(), object()
    fired: list[tuple[str, float]] = []
    for i in range(0, 32000 * 6, 3200):  # the first connection gets 6 s, dropped at 5 s
        fired += [(f.kind, i / 32000 + 0.1) for f in plan.advance(0.1, recording[i:i + 3200], first)]
    for i in range(32000 * 3, 32000 * 14, 3200):  # the next one resumes at 3 s (its last final)
        fired += [(f.kind, i / 32000 + 0.1) for f in plan.advance(0.1, recording[i:i + 3200], second)]
    assert [k for k, _ in fired] == ["drop", "close1011"]
    assert fired[0][1] == pytest.approx(5.0, abs=0.15) and fired[1][1] == pytest.approx(10.0, abs=0.15)
    assert plan.replayed_seconds == pytest.approx(3.0)
    plain = FaultPlan.parse("drop@5")
    assert plain.advance(4.9) == [] and plain.advance(0.2) == [FaultPlan.parse("drop@5").rules[0].fault]


def _pcm(path: object) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


@pytest.mark.slow
@pytest.mark.realspeech
async def test_the_documented_fault_schedule_loses_nothing_on_real_speech() -> None:
    pytest.importorskip("voicekit_moonshine", reason="needs the moonshine plugin (embedded engine)")
    from voicekit.plugins import load
    from voicekit.testing.data import librivox_clips

    silence = bytes(32000 * 3 // 2)
    audio = silence + silence.join(_pcm(p) for p, _ in librivox_clips()) + silence
    assert len(audio) / 32000 > 30  # every fault of the schedule is reached
    engine = load("asr", "moonshine")()

    async def run(faults: str | None) -> tuple[list[str], FaultPlan]:
        async with running_emulator(engine, settings=TaskSettings(vad="webrtc"), faults=faults) as emu:
            asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url, **FAST)
            with trio.fail_after(240):
                # the faulty run streams in real time, as a live session does: a client far ahead
                # of the server would replay past the next fault before the recognizer could
                # finish the sentence in front of it
                results = await stream_through(asr, audio, pace=0.1 if faults else 0.01)
            return [r.text for r in results if r.is_final and r.text], emu.faults

    clean, _ = await run(None)
    assert len(clean) == 5, clean
    faulty, plan = await run(DOCS_EXAMPLE)
    assert [f.kind for _, f in plan.injected] == ["drop", "close1011", "task-failed", "idle", "malformed", "reset"]
    assert_same_words(clean, faulty)
    assert plan.replayed_seconds > 0
