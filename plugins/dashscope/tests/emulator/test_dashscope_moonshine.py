"""Real speech through the emulator's embedded engine (the ``moonshine`` plugin).

voicekit's own Fun-ASR client streams the pocketsphinx LibriVox clips through the emulator, and
must get the same text the local engine gives when driven directly with the same endpointing.
Tied to the moonshine plugin: skipped when it is not installed.
"""

from __future__ import annotations

import wave

import pytest
import trio
from testkit.common import FAKE_KEY, stream_through
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope_emulator import TaskSettings, running_emulator

from voicekit.asr.base import ASRConfig
from voicekit.asr.feed import forward
from voicekit.audio.frame import AudioFrame
from voicekit.vad.endpointer import Endpointer, EndpointerConfig
from voicekit.vad.webrtc import WebRTCVAD

pytest.importorskip("voicekit_moonshine", reason="needs the moonshine plugin (embedded engine)")
pytestmark = [pytest.mark.slow, pytest.mark.realspeech]


def _pcm(path: object) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


async def _direct(engine: object, pcm: bytes, settings: TaskSettings) -> list[str]:
    """The engine driven the way the emulator drives it, without any network in between."""
    ep = Endpointer(WebRTCVAD(16000, 30, settings.vad_mode),
                    EndpointerConfig(pre_roll_ms=settings.pre_roll_ms,
                                     end_silence_ms=settings.default_sentence_silence_ms))
    finals: list[str] = []
    async with engine.open_stream(ASRConfig(sample_rate=16000)) as stream:  # type: ignore[attr-defined]
        async def feed() -> None:
            await forward(stream, [*ep.push(AudioFrame(pcm, 16000)), *ep.flush()])
            await stream.finish()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            async for r in stream:
                if r.is_final and r.text.strip():
                    finals.append(r.text.strip())
    return finals


async def test_librivox_through_the_emulator_matches_the_local_engine() -> None:
    from voicekit.plugins import load
    from voicekit.testing.data import librivox_clips

    engine = load("asr", "moonshine")()
    settings = TaskSettings(vad="webrtc")
    clips = librivox_clips()
    assert len(clips) >= 3
    async with running_emulator(engine, settings=settings) as emu:
        asr = FunASRRealtime(api_key=FAKE_KEY, base_url=emu.base_url)
        for path, reference in clips:
            pcm = _pcm(path)
            via_emulator = [r.text for r in await stream_through(asr, pcm) if r.is_final and r.text]
            direct = await _direct(engine, pcm, settings)
            assert via_emulator == direct, path.name
            words = " ".join(direct).lower()
            # sanity: real recognition, not an empty echo (moonshine tiny is not perfect)
            overlap = set(words.replace(",", "").replace(".", "").split()) & set(reference.split())
            assert len(overlap) >= len(set(reference.split())) // 2, (words, reference)


async def test_live_captions_example_runs_offline_against_the_emulator() -> None:
    import os
    import sys
    from pathlib import Path

    from voicekit.testing.data import speech

    example = Path(__file__).parents[2] / "examples" / "live_captions.py"
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    with trio.fail_after(90):
        proc = await trio.run_process([sys.executable, str(example), str(speech("goforward")), "--speed", "10"],
                                      env=env, capture_stdout=True, capture_stderr=True, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "local emulator" in out
    finals = [line for line in out.splitlines() if line.startswith("[")]
    assert finals and "forward" in " ".join(finals).lower()
