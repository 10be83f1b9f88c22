"""Endpointing is exact: markers land on frame boundaries computed from the config."""

from __future__ import annotations

import numpy as np
import pytest

from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError
from voicekit.testing import EnergyVAD, ScriptedSource, Silence, Speech
from voicekit.vad.endpointer import Endpointer, EndpointerConfig, SpeechEnd, SpeechStart
from voicekit.vad.webrtc import WebRTCVAD


def run(endpointer: Endpointer, frames: list[AudioFrame]) -> list[object]:
    out: list[object] = []
    for f in frames:
        out.extend(endpointer.push(f))
    out.extend(endpointer.flush())
    return out


async def scripted_frames(script: list[object], chunk_ms: int = 20) -> list[AudioFrame]:
    src = ScriptedSource(script, chunk_ms=chunk_ms, realtime=False)  # type: ignore[arg-type]
    return [f async for f in src.frames()]


async def test_speech_end_fires_after_configured_silence() -> None:
    frames = await scripted_frames([Silence(1.0), Speech(2.0), Silence(2.0)])
    cfg = EndpointerConfig(pre_roll_ms=200, start_ms=60, start_window_ms=100, end_silence_ms=500)
    items = run(Endpointer(EnergyVAD(frame_ms=20), cfg), frames)
    starts = [i for i in items if isinstance(i, SpeechStart)]
    ends = [i for i in items if isinstance(i, SpeechEnd)]
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].voiced_at == pytest.approx(1.0)
    assert starts[0].t == pytest.approx(0.8)  # pre-roll of 200 ms before the first voiced frame
    assert ends[0].t == pytest.approx(3.0)  # end of the last voiced frame
    assert ends[0].detected_at == pytest.approx(3.5)  # exactly end_silence_ms later
    assert ends[0].duration == pytest.approx(2.0)


async def test_audio_is_passed_through_whole_and_in_order() -> None:
    frames = await scripted_frames([Silence(0.5), Speech(0.7), Silence(1.0), Speech(0.3), Silence(0.9)])
    items = run(Endpointer(EnergyVAD(frame_ms=30), EndpointerConfig(end_silence_ms=300)), frames)
    audio = [i for i in items if isinstance(i, AudioFrame)]
    assert b"".join(a.pcm for a in audio) == b"".join(f.pcm for f in frames)
    times = [a.timestamp for a in audio]
    assert times == sorted(times)
    # the start marker comes before the pre-roll audio it covers
    kinds = ["S" if isinstance(i, SpeechStart) else "E" if isinstance(i, SpeechEnd) else "a" for i in items]
    first_s = kinds.index("S")
    start = items[first_s]
    assert isinstance(start, SpeechStart)
    following = items[first_s + 1]
    assert isinstance(following, AudioFrame) and following.timestamp == pytest.approx(start.t)
    assert kinds.count("S") == kinds.count("E") == 2


async def test_short_click_does_not_start_speech() -> None:
    frames = await scripted_frames([Silence(1.0), Speech(0.04), Silence(1.0)])
    cfg = EndpointerConfig(start_ms=100, start_window_ms=200)
    items = run(Endpointer(EnergyVAD(frame_ms=20), cfg), frames)
    assert not any(isinstance(i, SpeechStart) for i in items)


async def test_max_speech_forces_an_end() -> None:
    frames = await scripted_frames([Speech(5.0), Silence(1.0)])
    cfg = EndpointerConfig(max_speech_ms=2000, end_silence_ms=300, pre_roll_ms=0)
    items = run(Endpointer(EnergyVAD(frame_ms=20), cfg), frames)
    ends = [i for i in items if isinstance(i, SpeechEnd)]
    assert len(ends) >= 2 and ends[0].detected_at == pytest.approx(2.0, abs=0.1)


async def test_open_utterance_closed_at_end_of_input() -> None:
    frames = await scripted_frames([Silence(0.3), Speech(1.0)])
    items = run(Endpointer(EnergyVAD(frame_ms=20), EndpointerConfig()), frames)
    assert isinstance(items[-1], (SpeechEnd, AudioFrame))
    assert sum(isinstance(i, SpeechEnd) for i in items) == 1


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        EndpointerConfig(start_ms=300, start_window_ms=100)
    with pytest.raises(ConfigError):
        WebRTCVAD(sample_rate=44100)
    with pytest.raises(ConfigError):
        WebRTCVAD(frame_ms=25)


def test_webrtc_vad_on_silence_and_noise() -> None:
    vad = WebRTCVAD(16000, 30, mode=3)
    silence = bytes(960)
    assert vad.is_speech(silence) is False
    with pytest.raises(ValueError):
        vad.is_speech(bytes(100))
    rng = np.random.default_rng(1)
    assert isinstance(vad.is_speech((rng.normal(0, 3000, 480)).astype("<i2").tobytes()), bool)
