"""The PocketSphinx engine on real human speech: grammar, keywords, dictation, errors."""

from __future__ import annotations

import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trio
from voicekit_pocketsphinx import GrammarError, PocketSphinxASR

from voicekit.asr.base import ASRConfig, ASREngine, ASRStream, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ASRError, ConfigError
from voicekit.plugins import load
from voicekit.testing.data import pocketsphinx_data, speech
from voicekit.testing.wer import wer

pytestmark = [pytest.mark.realspeech]

FRAME = 320  # samples: 20 ms at 16 kHz


def read(name: str, timestamp: float = 0.0) -> AudioFrame:
    with wave.open(str(speech(name))) as w:
        return AudioFrame(w.readframes(w.getnframes()), w.getframerate(), timestamp=timestamp)


def silence(seconds: float, timestamp: float = 0.0) -> AudioFrame:
    return AudioFrame(b"\0\0" * round(seconds * 16000), 16000, timestamp=timestamp)


def goforward_grammar() -> str:
    return (pocketsphinx_data() / "goforward.gram").read_text()


@pytest.fixture(scope="module")
def engine() -> Iterator[PocketSphinxASR]:
    # one engine for the module, so its decoders (and the dictation LM) are loaded once
    yield PocketSphinxASR(partial_interval=0.5)


async def decode(engine: PocketSphinxASR, config: ASRConfig, audio: list[AudioFrame],
                 utterances: list[tuple[float, float | None]]) -> list[TranscriptResult]:
    """Stream ``audio`` in 20 ms frames, placing the VAD markers as the endpointer would: a
    start marker a little after the audio it names, an end marker once its audio has been sent.
    A ``None`` end leaves the utterance open for ``finish()`` to flush."""
    results: list[TranscriptResult] = []
    starts = sorted(s for s, _ in utterances)
    ends = sorted(e for _, e in utterances if e is not None)
    async with engine.open_stream(config) as stream:
        assert isinstance(stream, ASRStream)

        async def reader() -> None:
            async for r in stream:
                results.append(r)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            for clip in audio:
                for frame in clip.split(FRAME):
                    await stream.send_audio(frame)
                    while starts and frame.end >= starts[0] + 0.1:  # the endpointer lags 100 ms
                        await stream.speech_started(starts.pop(0))
                    while ends and frame.end >= ends[0]:
                        await stream.speech_ended(ends.pop(0))
                    await trio.sleep(0)
            await stream.finish()
    return results


def finals(results: list[TranscriptResult]) -> list[TranscriptResult]:
    return [r for r in results if r.is_final]


def test_entry_point_and_capabilities() -> None:
    cls = load("asr", "pocketsphinx")
    assert cls is PocketSphinxASR
    assert isinstance(cls(), ASREngine)
    caps = cls.capabilities
    assert caps.grammar and caps.word_timestamps and caps.partials and caps.offline
    assert caps.sample_rates == (16000,)


async def test_grammar_decodes_go_forward_with_partials_and_word_times(engine: PocketSphinxASR) -> None:
    clip = read("goforward")
    results = await decode(engine, ASRConfig(grammar=goforward_grammar()), [clip], [(0.0, clip.duration)])
    (final,) = finals(results)
    assert final.text == "go forward ten meters"
    assert final is results[-1]
    partials = [r for r in results if not r.is_final]
    assert partials, "no partial result before the final"
    assert all(p.utterance_id == final.utterance_id for p in partials)
    assert [w.text for w in final.words] == ["go", "forward", "ten", "meters"]
    for a, b in zip(final.words, final.words[1:], strict=False):
        assert a.start is not None and a.end is not None and b.start is not None
        assert a.start < a.end <= b.start + 1e-6
    assert final.words[0].start is not None and final.words[-1].end is not None
    assert 0.2 < final.words[0].start < 0.7  # "go" follows about half a second of room noise
    assert 1.8 < final.words[-1].end <= clip.duration
    assert final.start == 0.0 and final.end == pytest.approx(clip.duration)
    assert final.confidence is not None and 0.0 < final.confidence <= 1.0


async def test_word_times_are_stream_seconds(engine: PocketSphinxASR) -> None:
    """Two utterances in one stream; the second one's words sit 4 s later on the timeline."""
    clip = read("goforward")
    gap = silence(4.0 - clip.duration, clip.duration)
    again = read("goforward", timestamp=4.0)
    results = await decode(engine, ASRConfig(grammar=goforward_grammar()), [clip, gap, again],
                           [(0.3, clip.duration), (4.3, 4.0 + clip.duration)])
    first, second = finals(results)
    assert (first.utterance_id, second.utterance_id) == (0, 1)
    assert first.text == second.text == "go forward ten meters"
    for a, b in zip(first.words, second.words, strict=True):
        assert a.start is not None and b.start is not None
        assert b.start - a.start == pytest.approx(4.0, abs=0.05)
    assert all(w.end is not None and w.end <= 4.0 + clip.duration for w in second.words)
    # partials belong to the utterance they came from and precede its final
    for r in results:
        if not r.is_final:
            final = first if r.utterance_id == 0 else second
            assert results.index(r) < results.index(final)


async def test_preroll_recovers_speech_before_a_late_start_marker(engine: PocketSphinxASR) -> None:
    clip = read("goforward")
    # "go" begins near 0.46 s; a marker at 0.6 s would cut it off without the pre-roll
    results = await decode(engine, ASRConfig(grammar=goforward_grammar()), [clip], [(0.6, clip.duration)])
    (final,) = finals(results)
    assert final.text == "go forward ten meters"
    go = final.words[0]
    # "go" was decoded from the pre-roll audio, before the marker (without it, it would be
    # squeezed into the audio after 0.6 s)
    assert go.start is not None and 0.6 - engine.preroll - 1e-6 <= go.start < 0.55


async def test_keywords_spot_forward(engine: PocketSphinxASR) -> None:
    clip = read("goforward")
    results = await decode(engine, ASRConfig(keywords=("forward",)), [clip], [(0.0, clip.duration)])
    (final,) = finals(results)
    assert final.text == "forward"
    (word,) = final.words
    assert word.text == "forward"
    assert word.start is not None and word.end is not None
    assert 0.4 < word.start < word.end < 1.5
    assert word.confidence is not None and 0.0 < word.confidence <= 1.0


async def test_keyword_not_said_is_not_spotted(engine: PocketSphinxASR) -> None:
    clip = read("goforward")
    results = await decode(engine, ASRConfig(keywords=("hello /1e-10/",)), [clip], [(0.0, clip.duration)])
    (final,) = finals(results)
    assert final.text == "" and final.words == ()


@pytest.mark.slow
async def test_dictation_on_real_speech(engine: PocketSphinxASR) -> None:
    clip = read("something")
    results = await decode(engine, ASRConfig(), [clip], [(0.0, clip.duration)])
    (final,) = finals(results)
    assert wer(["go somewhere and do something"], [final.text]) <= 0.2
    assert all(w.start is not None and w.end is not None and 0.0 <= w.start < w.end <= clip.duration
               for w in final.words)
    assert final.confidence is not None and 0.0 <= final.confidence <= 1.0


async def test_finish_flushes_an_open_utterance(engine: PocketSphinxASR) -> None:
    clip = read("goforward")
    results = await decode(engine, ASRConfig(grammar=goforward_grammar()), [clip], [(0.0, None)])
    (final,) = finals(results)
    assert final.text == "go forward ten meters"
    assert final.end == pytest.approx(clip.duration)


async def test_markers_ahead_of_the_audio(engine: PocketSphinxASR) -> None:
    """An end marker for audio not sent yet closes the utterance when that audio arrives."""
    clip = read("goforward")
    results: list[TranscriptResult] = []
    async with engine.open_stream(ASRConfig(grammar=goforward_grammar())) as stream:
        await stream.speech_started(0.0)
        await stream.speech_ended(2.5)
        for frame in clip.split(FRAME):
            await stream.send_audio(frame)
        await stream.finish()
        results = [r async for r in stream]
    (final,) = finals(results)
    assert final.text == "go forward ten meters"
    assert final.end == 2.5


async def test_no_speech_gives_an_empty_final(engine: PocketSphinxASR) -> None:
    quiet = silence(1.0)
    results = await decode(engine, ASRConfig(grammar=goforward_grammar()), [quiet], [(0.2, 0.6)])
    (final,) = finals(results)
    assert final.words == () and final.start == 0.2 and final.end == 0.6


async def test_decoder_runs_off_the_trio_thread() -> None:
    seen: list[str] = []
    engine = PocketSphinxASR(threads=1)
    original = engine.run

    async def spy(fn, *args):  # type: ignore[no-untyped-def]
        def wrapped(*a):  # type: ignore[no-untyped-def]
            seen.append(threading.current_thread().name)
            return fn(*a)

        assert engine.limiter.total_tokens == 1
        return await original(wrapped, *args)

    engine.run = spy  # type: ignore[method-assign]
    clip = read("goforward")
    await decode(engine, ASRConfig(keywords=("forward",)), [clip], [(0.0, clip.duration)])
    assert seen and threading.main_thread().name not in seen


# -- errors -------------------------------------------------------------------------------


async def test_bad_grammar_is_an_asr_error_with_the_line(engine: PocketSphinxASR) -> None:
    bad = "#JSGF V1.0;\ngrammar robot;\npublic <move> = go (forward | back ;\n"
    with pytest.raises(ASRError, match=r"line 3: expected '\)' but found ';'"):
        async with engine.open_stream(ASRConfig(grammar=bad)):
            pass


async def test_word_missing_from_the_dictionary_is_named(engine: PocketSphinxASR) -> None:
    bad = "#JSGF V1.0;\ngrammar robot;\n\npublic <move> = go forward blorfity;\n"
    with pytest.raises(GrammarError, match=r"line 4: word 'blorfity' is not in the pronunciation dictionary"):
        async with engine.open_stream(ASRConfig(grammar=bad)):
            pass
    upper = "#JSGF V1.0;\ngrammar robot;\npublic <move> = Go forward;\n"
    with pytest.raises(GrammarError, match=r"line 3: word 'Go'.*lower case \('go'\)"):
        async with engine.open_stream(ASRConfig(grammar=upper)):
            pass
    with pytest.raises(ASRError, match=r"keyword word 'blorfity'"):
        async with engine.open_stream(ASRConfig(keywords=("go blorfity",))):
            pass


async def test_extra_pronunciations_make_new_words_usable() -> None:
    engine = PocketSphinxASR(words={"forwardly": "F AO R W ER D L IY"})
    grammar = "#JSGF V1.0;\ngrammar robot;\npublic <move> = go (forward | forwardly) ten meters;\n"
    clip = read("goforward")
    results = await decode(engine, ASRConfig(grammar=grammar), [clip], [(0.0, clip.duration)])
    assert finals(results)[0].text == "go forward ten meters"
    with pytest.raises(ConfigError, match="could not add word 'zz'"):
        async with PocketSphinxASR(words={"zz": "NOT A PHONE"}).open_stream(ASRConfig()):
            pass


async def test_sdist_bad_grammars_are_rejected(engine: PocketSphinxASR) -> None:
    for name in ("invalid.gram", "defective.gram", "fuzzed.gram"):
        text = (pocketsphinx_data() / name).read_text(errors="replace")
        with pytest.raises(GrammarError, match=r"JSGF grammar line \d+"):
            async with engine.open_stream(ASRConfig(grammar=text)):
                pass


async def test_rates_other_than_16k_are_rejected(engine: PocketSphinxASR) -> None:
    with pytest.raises(ASRError, match="16000 Hz audio, not 8000 Hz"):
        async with engine.open_stream(ASRConfig(sample_rate=8000)):
            pass
    async with engine.open_stream(ASRConfig(keywords=("forward",))) as stream:
        with pytest.raises(ASRError, match="8000 Hz frame"):
            await stream.send_audio(AudioFrame(b"\0\0" * 160, 8000))


async def test_misuse_is_reported(engine: PocketSphinxASR) -> None:
    with pytest.raises(ASRError, match="both a grammar and keywords"):
        async with engine.open_stream(ASRConfig(grammar=goforward_grammar(), keywords=("go",))):
            pass
    with pytest.raises(ASRError, match="threshold 'abc'"):
        async with engine.open_stream(ASRConfig(keywords=("go /abc/",))):
            pass
    with pytest.raises(ASRError, match="US English"):
        async with engine.open_stream(ASRConfig(language="zh")):
            pass
    async with engine.open_stream(ASRConfig(keywords=("forward",))) as stream:
        await stream.finish()
        with pytest.raises(ASRError, match="after finish"):
            await stream.send_audio(silence(0.02))


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="kws_threshold"):
        PocketSphinxASR(kws_threshold=0)
    with pytest.raises(ConfigError, match="partial_interval"):
        PocketSphinxASR(partial_interval=0)
    with pytest.raises(ConfigError, match=r"dictionary file '/nonexistent\.dict' does not exist"):
        PocketSphinxASR(dictionary="/nonexistent.dict")
    with pytest.raises(ConfigError, match="no decoder option 'nonsense'"):
        PocketSphinxASR(decoder_options={"nonsense": 1})
    with pytest.raises(ConfigError, match="cannot set lm"):
        PocketSphinxASR(decoder_options={"lm": "x"})


async def test_stereo_frames_are_mixed_down(engine: PocketSphinxASR) -> None:
    clip = read("goforward")
    mono = clip.to_array()[:, 0]
    stereo = AudioFrame.from_array(np.stack([mono, mono], axis=1), 16000)
    results = await decode(engine, ASRConfig(grammar=goforward_grammar()), [stereo], [(0.0, clip.duration)])
    assert finals(results)[0].text == "go forward ten meters"


async def test_engine_level_grammar_and_keywords(tmp_path: Path) -> None:
    """What the CLI uses: --asr-option grammar_file=... or keywords=... ."""
    clip = read("goforward")
    engine = PocketSphinxASR(grammar_file=pocketsphinx_data() / "goforward.gram")
    results = await decode(engine, ASRConfig(), [clip], [(0.0, clip.duration)])
    assert finals(results)[0].text == "go forward ten meters"
    spotter = PocketSphinxASR(keywords="meters /1e-20/, forward")
    results = await decode(spotter, ASRConfig(), [clip], [(0.0, clip.duration)])
    assert finals(results)[0].text == "forward meters"
    # a stream's own config wins over the engine's defaults
    results = await decode(spotter, ASRConfig(keywords=("forward",)), [clip], [(0.0, clip.duration)])
    assert finals(results)[0].text == "forward"
    bad = tmp_path / "bad.gram"
    bad.write_text("#JSGF V1.0;\ngrammar g;\npublic <a> = go (on;\n")
    with pytest.raises(ConfigError, match=r"bad\.gram: JSGF grammar line 3"):
        PocketSphinxASR(grammar_file=bad)
    with pytest.raises(ConfigError, match=r"grammar_file file .* does not exist"):
        PocketSphinxASR(grammar_file=tmp_path / "missing.gram")
    with pytest.raises(ConfigError, match="both grammar_file and keywords"):
        PocketSphinxASR(grammar_file=bad, keywords="go")


async def test_cancelled_stream_leaves_the_engine_usable() -> None:
    engine = PocketSphinxASR()
    clip = read("goforward")
    grammar = ASRConfig(grammar=goforward_grammar())
    idle = len(engine._pool)  # idle decoders are shared by the engines of the process
    with trio.CancelScope() as scope:
        async with engine.open_stream(grammar) as stream:
            await stream.speech_started(0.0)
            for i, frame in enumerate(clip.split(FRAME)):
                await stream.send_audio(frame)
                if i == 60:
                    scope.cancel()  # mid-utterance, decoder busy with an open utterance
                    await trio.sleep(0)
    assert scope.cancelled_caught
    assert len(engine._pool) == max(idle, 1)
    # the decoder was cleaned and pooled: the next stream reuses it and decodes from scratch
    results = await decode(engine, ASRConfig(keywords=("forward",)), [clip], [(0.0, clip.duration)])
    assert finals(results)[0].text == "forward"
    results = await decode(engine, grammar, [clip], [(0.0, clip.duration)])
    assert finals(results)[0].text == "go forward ten meters"
