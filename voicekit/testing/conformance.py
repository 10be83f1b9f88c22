"""A conformance check for ASR plugins, in the spirit of ``trio.testing.check_two_way_stream``.

::

    from voicekit.testing.conformance import check_asr_plugin

    async def test_my_plugin_conforms():
        await check_asr_plugin(lambda: MyASR(), speech=my_clip, expect_words=["forward"])

It drives a stream the way a session does and checks the contract of ``voicekit/asr/base.py``:
a capabilities record that makes sense, audio frames and VAD markers accepted in order, every
partial of an utterance before its final, a final per utterance, iteration that stops after
``finish()``, a stream that can be abandoned (cancelled) mid-utterance without hanging, and
utterance ids that grow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, ASREngine, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.testing.wer import words as normalize_words


class ConformanceError(AssertionError):
    """The plugin broke the ASR contract; the message says how."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConformanceError(message)


def check_capabilities(caps: object) -> None:
    _check(isinstance(caps, ASRCapabilities), f"capabilities must be an ASRCapabilities, not {type(caps).__name__}")
    assert isinstance(caps, ASRCapabilities)
    _check(bool(caps.name) and bool(caps.family), "capabilities need a name and a family")
    _check(bool(caps.sample_rates) and all(r > 0 for r in caps.sample_rates), "sample_rates must be positive rates")
    _check(bool(caps.languages), "languages must not be empty")
    _check(caps.mode in ("streaming", "file", "near-realtime"), f"unknown mode {caps.mode!r}")
    _check(caps.api in ("local", "websocket", "http"), f"unknown api {caps.api!r}")
    _check(caps.offline == (caps.api == "local") or caps.api != "local",
           "a local engine must declare offline=True")


async def _drive(engine: ASREngine, clip: AudioFrame, utterances: Iterable[tuple[float, float]],
                 chunk_ms: int) -> list[TranscriptResult]:
    rate = engine.capabilities.preferred_rate
    results: list[TranscriptResult] = []
    spans = sorted(utterances)
    async with engine.open_stream(ASRConfig(sample_rate=rate)) as stream:

        async def read() -> None:
            async for r in stream:
                _check(isinstance(r, TranscriptResult), f"stream yielded a {type(r).__name__}")
                results.append(r)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            open_: tuple[float, float] | None = None
            for frame in clip.split(rate * chunk_ms // 1000):
                for span in spans:
                    if open_ is None and span[0] <= frame.timestamp < span[1]:
                        open_ = span
                        await stream.speech_started(span[0])
                await stream.send_audio(frame)
                if open_ is not None and frame.end >= open_[1]:
                    await stream.speech_ended(open_[1])
                    spans.remove(open_)
                    open_ = None
                await trio.sleep(0)
            await stream.finish()
    return results


async def check_asr_plugin(factory: Callable[[], ASREngine], *, speech: AudioFrame,
                           expect_words: Iterable[str] = (), chunk_ms: int = 20,
                           timeout: float = 120.0) -> list[TranscriptResult]:
    """Run the checks; returns the results of the main run for further assertions.

    ``speech`` must be mono at one of the engine's rates and hold one utterance; it is sent
    twice, as two utterances separated by a second of silence.
    """
    engine = factory()
    caps = engine.capabilities
    check_capabilities(caps)
    _check(speech.sample_rate in caps.sample_rates and speech.channels == 1,
           f"give speech as mono audio at one of {caps.sample_rates} Hz")
    gap = bytes(2 * speech.sample_rate)
    clip = AudioFrame(speech.pcm + gap + speech.pcm + gap, speech.sample_rate)
    second = speech.duration + 1.0
    spans = [(0.0, speech.duration), (second, second + speech.duration)]
    with trio.fail_after(timeout):
        results = await _drive(engine, clip, spans, chunk_ms)
    finals = [r for r in results if r.is_final]
    _check(len(finals) == 2 or (caps.server_endpointing and len(finals) >= 2),
           f"expected a final per utterance (2), got {len(finals)}: {[f.text for f in finals]}")
    ids = [r.utterance_id for r in finals]
    _check(ids == sorted(ids) and len(set(ids)) == len(ids), f"utterance ids must grow: {ids}")
    for final in finals:
        later = results[results.index(final) + 1 :]
        _check(not any(r.utterance_id == final.utterance_id and not r.is_final for r in later),
               f"a partial of utterance {final.utterance_id} came after its final")
        if final.start is not None and final.end is not None:
            _check(final.start <= final.end, f"final has start {final.start} after end {final.end}")
        for w in final.words:
            if w.start is not None and w.end is not None:
                _check(0 <= w.start <= w.end <= clip.duration + 0.5, f"word {w.text!r} has times outside the audio")
    wanted = [w for phrase in expect_words for w in normalize_words(phrase)]
    for final in finals[:2]:
        heard = normalize_words(final.text)
        missing = [w for w in wanted if w not in heard]
        _check(not missing, f"final {final.text!r} misses {missing}")

    # abandoning a stream mid-utterance must not hang or leak tasks
    with trio.fail_after(timeout):
        async with engine.open_stream(ASRConfig(sample_rate=speech.sample_rate)) as stream:
            await stream.speech_started(0.0)
            for frame in speech.split(speech.sample_rate // 10)[:5]:
                await stream.send_audio(frame)
    return results
