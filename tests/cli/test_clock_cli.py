"""The clock example through the command line (espeak-ng speech, moonshine recognition): its timer
on a file read without ``--realtime`` fires on the file's own time (issue 9.12), and a name keeps
its capital (issue 9.13)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _spoken(tmp_path: Path, text: str, silence_after: float) -> Path:
    raw = tmp_path / "raw.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(raw), text], check=True)
    with wave.open(str(raw)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    out = tmp_path / f"timer_{silence_after:g}.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.concatenate([np.zeros(rate // 2, np.int16), audio,
                                      np.zeros(round(rate * silence_after), np.int16)]).tobytes())
    return out


def _replies(path: Path) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "voicekit.cli.main", "run", "clock", "--input", str(path),
                        "--tts", "none", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return [e["text"] for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "reply_text"]


def test_timer_fires_on_file_time(tmp_path: Path) -> None:
    path = _spoken(tmp_path, "Set a timer for three seconds.", silence_after=8.0)
    assert _replies(path) == ["Timer set for 3 seconds.", "Time is up: the timer for 3 seconds is done."]


def test_timer_past_the_end_of_the_file_is_dropped(tmp_path: Path) -> None:
    path = _spoken(tmp_path, "Set a timer for three seconds.", silence_after=1.0)
    assert _replies(path) == ["Timer set for 3 seconds."]


def test_name_keeps_its_capital(tmp_path: Path) -> None:
    path = _spoken(tmp_path, "Hello, my name is Peter.", silence_after=1.0)
    assert _replies(path) == ["Nice to meet you, Peter."]
