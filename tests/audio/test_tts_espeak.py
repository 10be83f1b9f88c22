"""EspeakTTS against the real espeak-ng program."""

from __future__ import annotations

import itertools
import os
import shutil
from contextlib import aclosing
from pathlib import Path

import numpy as np
import pytest
import trio

from voicekit.audio import AudioFrame
from voicekit.errors import ConfigError, TTSError
from voicekit.tts.base import TTSEngine
from voicekit.tts.espeak import EspeakTTS, _parse_header, _segments

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng)")


def child_pids() -> set[int]:
    """Live (or not yet reaped) child processes of this process (Linux /proc)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return pids


def is_espeak(pid: int) -> bool:
    try:
        return "espeak" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def rms(frames: list[AudioFrame]) -> float:
    a = np.concatenate([f.to_array()[:, 0] for f in frames]).astype(np.float64) / 32768
    return float(np.sqrt(np.mean(a**2)))


async def test_hello_world_is_speech_of_plausible_length() -> None:
    tts = EspeakTTS()
    assert isinstance(tts, TTSEngine)
    frames = [f async for f in tts.synthesize("hello world")]
    rate = EspeakTTS.capabilities.sample_rate
    assert all(f.sample_rate == rate and f.channels == 1 for f in frames)
    assert all(f.samples == rate // 50 for f in frames[:-1])
    for prev, cur in itertools.pairwise(frames):
        assert cur.timestamp == pytest.approx(prev.end, abs=1e-9)
    duration = frames[-1].end
    assert 0.5 < duration < 2.5, duration  # two words at 175 wpm
    assert rms(frames) > 0.02  # not silence


async def test_slower_rate_takes_longer() -> None:
    fast = [f async for f in EspeakTTS(rate_wpm=300).synthesize("one two three four five six")]
    slow = [f async for f in EspeakTTS(rate_wpm=100).synthesize("one two three four five six")]
    assert slow[-1].end > 2 * fast[-1].end


async def test_language_picks_a_voice() -> None:
    tts = EspeakTTS()
    assert tts.voice_for(None) == "en-us" and tts.voice_for("en") == "en-us"
    assert tts.voice_for("de") == "de" and tts.voice_for("zh") == "cmn"
    frames = [f async for f in tts.synthesize("guten Tag", language="de")]
    assert rms(frames) > 0.02


async def test_empty_text_yields_nothing() -> None:
    assert [f async for f in EspeakTTS().synthesize("")] == []
    assert [f async for f in EspeakTTS().synthesize("  \n ")] == []


async def test_text_is_not_parsed_as_options_or_markup() -> None:
    frames = [f async for f in EspeakTTS().synthesize("--version <speak>-v de</speak>")]
    assert frames and rms(frames) > 0.02


async def test_cancelling_mid_utterance_kills_the_process() -> None:
    before = {p for p in child_pids() if is_espeak(p)}
    long_text = "This sentence is long enough to take many seconds to speak. " * 40
    got = 0
    with trio.CancelScope() as scope:
        async with aclosing(EspeakTTS().synthesize(long_text)) as frames:
            async for _ in frames:
                got += 1
                if got == 5:
                    assert {p for p in child_pids() if is_espeak(p)} - before  # it is running
                    scope.cancel()
                    await trio.sleep(0)  # the cancellation lands here, mid-utterance
    assert got == 5
    assert {p for p in child_pids() if is_espeak(p)} - before == set()


async def test_breaking_out_early_kills_the_process() -> None:
    before = child_pids()
    async with aclosing(EspeakTTS().synthesize("Count with me: " + "one two three " * 200)) as frames:
        async for _ in frames:
            break
    assert child_pids() - before == set()


async def test_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EspeakTTS, "binary", "espeak-ng-not-installed")
    with pytest.raises(TTSError, match="apt-get install espeak-ng") as exc:
        [f async for f in EspeakTTS().synthesize("hello")]
    assert "espeak-ng-not-installed" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(TTSError, match="apt-get install espeak-ng"):
        await EspeakTTS.list_voices()


async def test_unknown_voice_fails_clearly() -> None:
    with pytest.raises(TTSError, match=r"voice 'xx-nope'.*does not exist.*espeak-ng --voices") as exc:
        [f async for f in EspeakTTS("xx-nope").synthesize("hello")]
    assert "\n" not in str(exc.value)


async def test_list_voices_matches_declared_languages() -> None:
    voices = await EspeakTTS.list_voices()
    assert "en-us" in voices and "de" in voices
    assert set(voices) <= set(EspeakTTS.capabilities.languages)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="rate_wpm"):
        EspeakTTS(rate_wpm=5)
    with pytest.raises(ConfigError, match="pitch"):
        EspeakTTS(pitch=150)
    with pytest.raises(ConfigError, match="not a voice name"):
        EspeakTTS(voice="en us; rm")
    with pytest.raises(ConfigError, match="does not take speed"):
        EspeakTTS(speed=2)


def test_segments_and_header_parsing() -> None:
    text = "Sentence number %d is here. " * 1000
    parts = list(_segments(text % tuple(range(1000)), limit=500))
    assert all(len(p.encode()) <= 500 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == (text % tuple(range(1000))).strip()
    assert list(_segments("ünïcödé " * 200, limit=64))  # multi-byte text is cut on characters
    with pytest.raises(TTSError, match="not a WAV stream"):
        _parse_header(b"ID3\x04" + b"\x00" * 40)
    assert _parse_header(b"RIFF\x00\x00") is None
