"""Shared pieces of the DashScope plugin tests: scripted tone audio, streaming helpers, fixtures, and
the word comparison of faulty against fault-free transcripts."""

from __future__ import annotations

import difflib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
from voicekit_dashscope_emulator import FixtureEngine, TaskSettings, running_emulator, tone_audio

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.asr.feed import forward
from voicekit.audio.frame import AudioFrame
from voicekit.testing.scripted import EnergyVAD
from voicekit.testing.wer import words
from voicekit.vad.endpointer import Endpointer, EndpointerConfig

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


def noisy_tone_script(n: int, *, seed: int = 2, noise: float = 0.003) -> ToneScript:
    """:func:`tone_script` over a faint noise floor (after 0.4 s of digital silence), as a real
    recording has: a WebRTC VAD that starts afresh on that floor calls its first frames speech."""
    import numpy as np

    script = tone_script(n, seed=seed)
    pcm = np.frombuffer(script.audio, "<i2").astype(np.float32)
    floor = np.random.default_rng(seed).standard_normal(pcm.size) * noise * 32767
    floor[: 16000 * 4 // 10] = 0.0
    audio = np.clip(pcm + floor, -32768, 32767).astype("<i2").tobytes()
    return ToneScript(audio, script.sentences, script.order)


async def stream_through(asr: object, audio: bytes, *, rate: int = 16000, chunk_ms: int = 100,
                         pace: float = 0.0, markers: list[tuple[float, float]] | None = None,
                         busy: Callable[[TranscriptResult], Awaitable[None]] | None = None,
                         ) -> list[TranscriptResult]:
    """Stream PCM through an ASR plugin; return every result. ``pace`` = seconds between chunks;
    ``markers`` = (start s, end s) of utterances, each passed on (speech_started, speech_ended) once
    the audio up to its end is sent; ``busy(result)`` is awaited for each result as it is read."""
    out: list[TranscriptResult] = []
    pending = list(markers or [])
    try:
        async with asr.open_stream(ASRConfig(sample_rate=rate)) as stream:  # type: ignore[attr-defined]
            async def feed() -> None:
                t = 0.0
                for frame in AudioFrame(audio, rate).split(rate * chunk_ms // 1000):
                    await stream.send_audio(frame)
                    t += frame.duration
                    while pending and t >= pending[0][1]:
                        start, end = pending.pop(0)
                        await stream.speech_started(start)
                        await stream.speech_ended(end)
                    await trio.sleep(pace)
                await stream.finish()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                async for r in stream:
                    out.append(r)
                    if busy is not None:
                        await busy(r)
    except BaseExceptionGroup as group:
        leaf = first_leaf(group)
        leaf.__suppress_context__ = True
        raise leaf  # noqa: B904 - keeps the leaf's own __cause__
    return out


def librivox_audio(silence_s: float = 1.5) -> bytes:
    """The LibriVox clips of the test data (16 kHz PCM16 mono, real speech) one after another,
    with ``silence_s`` of silence before, between and after them."""
    import wave

    from voicekit.testing.data import librivox_clips

    def pcm(path: object) -> bytes:
        with wave.open(str(path), "rb") as w:
            return w.readframes(w.getnframes())

    silence = bytes(round(silence_s * 16000) * 2)
    return silence + silence.join(pcm(p) for p, _ in librivox_clips()) + silence


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


async def stream_with_endpointer(asr: Any, pcm: bytes, rate: int = 16000) -> list[TranscriptResult]:
    """Drive ``asr`` the way the voicekit session does: audio plus the endpointer's markers."""
    ep = Endpointer(EnergyVAD(rate, 20), EndpointerConfig(pre_roll_ms=100, end_silence_ms=400))
    out: list[TranscriptResult] = []
    async with asr.open_stream(ASRConfig(sample_rate=rate)) as stream:
        async def feed() -> None:
            for frame in AudioFrame(pcm, rate).split(rate // 10):
                await forward(stream, ep.push(frame))
            await forward(stream, ep.flush())
            await stream.finish()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            async for r in stream:
                out.append(r)
    return out


def assert_same_words(clean: list[str], faulty: list[str]) -> None:
    """Nothing lost, nothing repeated. Audio the server hears again from a new start may be cut
    a little differently by its endpointer, and a small recognizer may then name a breath in the
    silence (moonshine says "You"), so the words are compared, not the sentence boundaries: at
    most 10 % of the fault-free words missing or changed, and no sentence twice."""
    ref, hyp = words(" ".join(clean)), words(" ".join(faulty))
    matcher = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks())
    assert len(ref) - kept <= 0.1 * len(ref), (faulty, clean)
    assert len(hyp) - kept <= 0.1 * len(ref) + 4, (faulty, clean)  # a few extra words at most
    for sentence in clean:
        assert " ".join(hyp).count(" ".join(words(sentence))) <= 1, (sentence, faulty)
