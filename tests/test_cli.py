"""The `voicekit` command end to end, in a child process, on real speech."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from voicekit.testing.data import librivox_clips, speech
from voicekit.testing.wer import wer

VOICEKIT = [sys.executable, "-m", "voicekit.cli.main"]
TESTS = Path(__file__).parent


def run(*args: str, timeout: float = 180, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([*VOICEKIT, *args], capture_output=True, text=stdin is None, timeout=timeout,
                          env=env, input=stdin)


def test_help_everywhere() -> None:
    for args in ([], ["run"], ["transcribe"], ["plugins"]):
        r = run(*args, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_plugins_lists_groups_and_capabilities() -> None:
    r = run("plugins")
    assert r.returncode == 0, r.stderr
    for needle in ("asr:", "moonshine", "vad:", "webrtc", "tts:", "espeak", "assistants:", "robot", "clock"):
        assert needle in r.stdout
    data = json.loads(run("plugins", "--json").stdout)
    moon = next(p for p in data if p["name"] == "moonshine")
    assert moon["capabilities"]["offline"] is True and moon["error"] is None


@pytest.mark.slow
@pytest.mark.realspeech
def test_transcribe_librivox_word_error_rate(tmp_path: Path) -> None:
    clips = librivox_clips()
    r = run("transcribe", *[str(p) for p, _ in clips], "--format", "json", "--output", str(tmp_path))
    assert r.returncode == 0, r.stderr
    hyps = []
    for path, _ in clips:
        doc = json.loads((tmp_path / (path.stem + ".json")).read_text())
        hyps.append(" ".join(s["text"] for s in doc["segments"]))
    score = wer([ref for _, ref in clips], hyps)
    print(f"moonshine WER on {len(clips)} LibriVox clips: {score:.3f}")
    assert score <= 0.12


@pytest.mark.slow
@pytest.mark.realspeech
def test_transcribe_formats() -> None:
    path = speech("goforward")
    r = run("transcribe", str(path), "--format", "srt")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1\n00:00:00,000 --> 00:00:02,")
    assert "forward" in r.stdout.lower()
    vtt = run("transcribe", str(path), "--format", "vtt").stdout
    assert vtt.startswith("WEBVTT") and "-->" in vtt


@pytest.mark.slow
@pytest.mark.realspeech
def test_run_robot_on_a_recording(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    r = run("run", "robot", "--input", str(speech("goforward")), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "you: Go forward ten meters." in r.stdout
    assert "robot: Moving forward 10 meters." in r.stdout
    with wave.open(str(out)) as w:
        assert w.getnframes() / w.getframerate() > 0.8  # the spoken reply


@pytest.mark.slow
@pytest.mark.realspeech
def test_run_json_from_stdin() -> None:
    raw = (speech("goforward").with_suffix(".raw")).read_bytes()
    r = run("run", "robot", "--input", "-", "--output", "none", "--tts", "none", "--json", stdin=raw)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.decode().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "session_started" and kinds[-1] == "session_ended"
    intent = next(e for e in events if e["event"] == "intent_matched")
    assert intent["slots"] == {"direction": "forward", "distance": 10}


@pytest.mark.slow
@pytest.mark.realspeech
def test_raising_handler_apologizes_and_reports() -> None:
    r = run("run", "broken_assistant:assistant", "--input", str(speech("goforward")), "--output", "none")
    assert r.returncode == 0, r.stderr
    assert "error in handler" in r.stdout and "ZeroDivisionError: on purpose" in r.stdout
    assert "broken: Sorry, my handler failed." in r.stdout


def _bad_files(tmp: Path) -> dict[str, Path]:
    empty = tmp / "empty.wav"
    empty.write_bytes(b"")
    text = tmp / "notes.wav"
    text.write_text("this is not audio at all\n" * 20)
    truncated = tmp / "truncated.wav"
    truncated.write_bytes(speech("goforward").read_bytes()[:30])
    png = tmp / "picture.mp3"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return {"empty": empty, "text": text, "truncated": truncated, "png": png,
            "missing": tmp / "no-such-file.wav"}


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "png", "missing"])
def test_bad_audio_gives_one_clear_line(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    for args in (["transcribe", str(path)], ["run", "robot", "--input", str(path), "--output", "none"]):
        r = run(*args, timeout=60)
        assert r.returncode != 0
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("voicekit: error:") and path.name in lines[0], lines[0]
        assert "Traceback" not in r.stderr


def test_unknown_plugins_and_options() -> None:
    r = run("run", "robot", "--asr", "moonshyne", "--input", "x.wav")
    assert r.returncode == 1
    assert "no asr plugin named 'moonshyne'" in r.stderr and "did you mean 'moonshine'" in r.stderr
    r = run("run", "no-such-assistant", "--input", "x.wav")
    assert r.returncode == 1 and "no assistants plugin named" in r.stderr
    r = run("run", "robot", "--vad-option", "mode=9", "--input", "x.wav")
    assert r.returncode == 1 and "option 'mode' expects one of 0|1|2|3, got '9'" in r.stderr
    r = run("run", "robot", "--output", "reply.mp3", "--input", "x.wav")
    assert r.returncode == 1 and ".wav" in r.stderr
    r = run("transcribe", "x.wav", "--format", "doc")
    assert r.returncode == 2  # argparse usage error


@pytest.mark.slow
@pytest.mark.realspeech
def test_command_mode_with_the_assistants_own_grammar() -> None:
    # the robot's intent templates become a JSGF grammar for PocketSphinx
    r = run("run", "robot", "--asr", "pocketsphinx", "--grammar", "--input", str(speech("goforward")),
            "--output", "none", "--tts", "none")
    assert r.returncode == 0, r.stderr
    assert "you: go forward ten meters" in r.stdout
    assert "robot: Moving forward 10 meters." in r.stdout
