"""Permanent errors end a stream at once, with the server's code and what to do about it.

Issue 10 item 12: ``task-failed InvalidParameter`` from the emulator (real speech, the embedded
engine) was retried 6 times and reported as a 1006 close: the fault, raised inside the engine's
own nursery, crashed the emulator's connection instead of being sent. Now the task-failed
arrives, is classified permanent (``voicekit_dashscope.errors.is_retryable``) and is not retried.
"""

from __future__ import annotations

import wave

import pytest
import trio
from testkit.common import FAKE_KEY, stream_through
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.client.task import RetryPolicy
from voicekit_dashscope.errors import PERMANENT_CODES, TaskFailedError, is_retryable
from voicekit_dashscope_emulator import TaskSettings, running_emulator


def test_one_table_decides_what_is_retried() -> None:
    for code, fix in PERMANENT_CODES.items():
        err = TaskFailedError(code, "the server's words")
        assert not is_retryable(err) and not err.retryable
        assert str(err).count("\n") == 0 and code in str(err) and fix in str(err)
    for code in ("InternalError", "CLIENT_ERROR", "Throttling"):
        assert is_retryable(TaskFailedError(code, "busy"))
    assert not is_retryable(ValueError("not ours"))


@pytest.mark.slow
@pytest.mark.realspeech
async def test_task_failed_invalid_parameter_is_not_retried_on_real_speech() -> None:
    pytest.importorskip("voicekit_moonshine", reason="needs the moonshine plugin (embedded engine)")
    from voicekit.plugins import load
    from voicekit.testing.data import librivox_clips

    path, _ = librivox_clips()[0]
    with wave.open(str(path), "rb") as w:
        pcm = w.readframes(w.getnframes())
    engine = load("asr", "moonshine")()
    async with running_emulator(engine, settings=TaskSettings(vad="webrtc"),
                                faults="task-failed=InvalidParameter@3") as emu:
        asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url,
                             retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.05))
        with trio.fail_after(60), pytest.raises(TaskFailedError) as info:
            await stream_through(asr, pcm, pace=0.01)
        assert emu.stats["connections"] == 1
        assert emu.stats.get("fault_task-failed") == 1
    assert info.value.code == "InvalidParameter"
    assert "InvalidParameter" in str(info.value) and "check the model name" in str(info.value)
    assert "1006" not in str(info.value)
