"""Shared pieces of the DashScope plugin tests: scripted tone audio, streaming helper, fixtures."""

from __future__ import annotations

import random
from typing import Any

import attrs
import trio
from voicekit_dashscope_emulator import FixtureEngine, TaskSettings, running_emulator, tone_audio

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame

FAKE_KEY = "sk-test-0123456789abcdef0123456789ab"


@attrs.frozen
class ToneScript:
    """Speech stand-ins: one tone per sentence, separated by silences."""

    audio: bytes
    sentences: dict[float, str]
    order: list[str]

    @property
    def seconds(self) -> float:
        return len(self.audio) / 32000


def tone_script(n: int, *, seed: int = 0, gap: tuple[float, float] = (1.5, 2.0),
                length: tuple[float, float] = (0.6, 1.4)) -> ToneScript:
    rng = random.Random(seed)
    freqs = [300.0 + 45.0 * i for i in range(n)]
    sentences = {f: f"sentence {i} says {int(f)} hertz" for i, f in enumerate(freqs)}
    segments: list[tuple[float, float]] = [(0.0, 0.4)]
    for f in freqs:
        segments += [(f, rng.uniform(*length)), (0.0, rng.uniform(*gap))]
    return ToneScript(tone_audio(segments), sentences, [sentences[f] for f in freqs])


async def stream_through(asr: object, audio: bytes, *, rate: int = 16000, chunk_ms: int = 100,
                         pace: float = 0.0) -> list[TranscriptResult]:
    """Stream PCM through an ASR plugin; return every result. ``pace`` = seconds between chunks."""
    out: list[TranscriptResult] = []
    try:
        async with asr.open_stream(ASRConfig(sample_rate=rate)) as stream:  # type: ignore[attr-defined]
            async def feed() -> None:
                for frame in AudioFrame(audio, rate).split(rate * chunk_ms // 1000):
                    await stream.send_audio(frame)
                    await trio.sleep(pace)
                await stream.finish()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                async for r in stream:
                    out.append(r)
    except BaseExceptionGroup as group:
        leaf = first_leaf(group)
        leaf.__suppress_context__ = True
        raise leaf  # noqa: B904 - keeps the leaf's own __cause__
    return out


def first_leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def fixture_emulator(script: ToneScript, **kwargs: Any) -> Any:
    """An emulator that answers the script's tones with its sentences (use with ``async with``)."""
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0.25)
    settings = kwargs.pop("settings", TaskSettings(vad="energy"))
    return running_emulator(engine, settings=settings, **kwargs)
