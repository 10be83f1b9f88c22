"""Typed plugin options: ``--asr-option KEY=VALUE`` on the command line, ``make_asr(name, **options)`` in Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voicekit.errors import ConfigError
from voicekit.plugins.build import make_asr, make_tts, make_vad, parse_options

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VOICEKIT, *args], capture_output=True, text=True, timeout=120)


def test_text_values_are_typed_by_the_plugins_schema() -> None:
    vad = make_vad("webrtc", **parse_options(["mode=3", "frame_ms=20", "sample_rate=8000"]))
    assert (vad.mode, vad.frame_ms, vad.sample_rate) == (3, 20, 8000)
    tts = make_tts("espeak", **parse_options(["rate_wpm=200", "voice=de"]))
    assert (tts.rate_wpm, tts.voice) == (200, "de")  # type: ignore[attr-defined]
    asr = make_asr("moonshine", **parse_options(["partial_interval=0", "model=tiny-en"]))
    assert asr.partial_interval == 0.0  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expect"), [
    (["--vad-option", "mood=2"], "vad plugin 'webrtc' has no option 'mood' (did you mean 'mode'?); "
                                 "its options are: frame_ms, mode, sample_rate"),
    (["--vad-option", "mode=9"], "vad plugin 'webrtc': option 'mode' expects one of 0|1|2|3, got '9'"),
    (["--vad-option", "mode"], "option 'mode' must look like KEY=VALUE"),
    (["--tts-option", "pitch=high"], "tts plugin 'espeak': option 'pitch' expects an integer, got 'high'"),
    (["--tts-option", "pitch=120"], "tts plugin 'espeak': option 'pitch' expects an integer <= 99, got '120'"),
    (["--asr-option", "max_utterance_s=" + "abc" * 16000],
     "asr plugin 'moonshine': option 'max_utterance_s' expects a number, got '" + "abc" * 13 + "a…'"),
])
def test_cli_refuses_a_bad_option_in_one_line(args: list[str], expect: str) -> None:
    r = run("run", "robot", "--input", "none.wav", "--output", "none", *args)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == f"voicekit: error: {expect}\n"


def test_python_api_validates_too() -> None:
    with pytest.raises(ConfigError, match=r"option 'mode' expects one of 0\|1\|2\|3, got True"):
        make_vad("webrtc", mode=True)
    with pytest.raises(ConfigError, match=r"has no option 'treshold' \(did you mean 'threshold'\?\)"):
        make_vad("silero", treshold=0.4)
    with pytest.raises(ConfigError, match=r"option 'model' expects one of tiny-en\|base-en, got 'large'"):
        make_asr("moonshine", model="large")
    # a Python value of the right type goes through unchanged
    assert make_vad("silero", threshold=0.25).threshold == 0.25  # type: ignore[attr-defined]


@pytest.mark.slow
def test_plugins_name_shows_the_options() -> None:
    r = run("plugins", "webrtc")
    assert r.returncode == 0, r.stderr
    assert "vad plugin webrtc" in r.stdout
    assert "mode         one of 0|1|2|3; default 2" in r.stdout
    r = run("plugins", "espeak")
    assert "rate_wpm     an integer in [80, 450]; default 175" in r.stdout
    r = run("plugins", "moonshyne")
    assert r.returncode == 1 and "did you mean 'moonshine'" in r.stderr and r.stdout == ""
