"""The embedded default engine on real human speech."""

from __future__ import annotations

import wave

import pytest
import trio
from voicekit_moonshine import MoonshineASR

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError
from voicekit.testing.data import speech
from voicekit.testing.wer import wer

pytestmark = [pytest.mark.slow, pytest.mark.realspeech]


def read(path: object) -> AudioFrame:
    with wave.open(str(path)) as w:
        return AudioFrame(w.readframes(w.getnframes()), w.getframerate())


async def decode(engine: MoonshineASR, clip: AudioFrame, utterances: list[tuple[float, float]],
                 pace: float = 0.0) -> list[TranscriptResult]:
    results: list[TranscriptResult] = []
    async with engine.open_stream(ASRConfig()) as stream:
        async def reader() -> None:
            async for r in stream:
                results.append(r)

        async with trio.open_nursery() as n:
            n.start_soon(reader)
            bounds = sorted(utterances)
            for frame in clip.split(320):
                for start, _ in bounds:
                    if start <= frame.timestamp < start + 0.02:
                        await stream.speech_started(start)
                await stream.send_audio(frame)
                for _, end in bounds:
                    if end <= frame.end < end + 0.02:
                        await stream.speech_ended(end)
                await trio.sleep(pace)
            await stream.finish()
    return results


async def test_final_per_utterance_with_partials_before_it() -> None:
    clip = read(speech("goforward"))
    # paced like a microphone (20 ms of audio every 20 ms), so partials have time to decode
    results = await decode(MoonshineASR(partial_interval=0.5), clip, [(0.0, clip.duration - 0.1)], pace=0.02)
    finals = [r for r in results if r.is_final]
    assert len(finals) == 1
    assert wer(["go forward ten meters"], [finals[0].text]) == 0
    assert finals[0].start == 0.0 and finals[0].end == pytest.approx(clip.duration - 0.1, abs=0.03)
    partials = [r for r in results if not r.is_final]
    assert partials, "a growing utterance gets partial transcripts"
    assert all(results.index(p) < results.index(finals[0]) for p in partials)


async def test_two_utterances_in_order() -> None:
    a, b = read(speech("goforward")), read(speech("something"))
    joined = AudioFrame(a.pcm + bytes(16000) + b.pcm, 16000)
    second = a.duration + 0.5
    results = await decode(MoonshineASR(partial_interval=0), joined,
                           [(0.0, a.duration), (second, second + b.duration - 0.05)])
    finals = [r for r in results if r.is_final]
    assert [r.utterance_id for r in finals] == [1, 2]
    assert not [r for r in results if not r.is_final]  # partial_interval=0 turns partials off
    assert wer(["go forward ten meters", "go somewhere and do something"], [f.text for f in finals]) <= 0.1


async def test_audio_outside_utterances_is_ignored_and_finish_flushes() -> None:
    clip = read(speech("goforward"))
    results = await decode(MoonshineASR(), clip, [])
    assert results == []
    # an utterance still open at finish() gets its final
    async with MoonshineASR().open_stream(ASRConfig()) as stream:
        await stream.speech_started(0.0)
        for frame in clip.split(320):
            await stream.send_audio(frame)
        await stream.finish()
        got = [r async for r in stream]
    assert [r.is_final for r in got][-1] is True and "forward" in got[-1].text.lower()


async def test_wrong_rate_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="16000"):
        async with MoonshineASR().open_stream(ASRConfig(sample_rate=8000)):
            pass
    with pytest.raises(ConfigError):
        MoonshineASR(partial_interval=-1)


async def test_conforms_to_the_asr_contract() -> None:
    from voicekit.testing.conformance import check_asr_plugin

    results = await check_asr_plugin(MoonshineASR, speech=read(speech("goforward")),
                                     expect_words=["go forward ten meters"])
    assert len([r for r in results if r.is_final]) == 2
