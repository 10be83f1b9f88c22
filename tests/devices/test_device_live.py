"""Acceptance: a live conversation through the microphone and the speaker, with no sound card.

A child process runs ``voicekit run robot --input mic --output speaker --json`` against ALSA
devices made of named pipes that this test keeps moving in real time (voicekit.testing.alsa):
the test "says" a real recording of "go forward ten meters" into the microphone, hears the reply
on the speaker, talks over it with a second, louder utterance, and checks that the reply was cut
and that the second request was answered.

The pipes have no acoustic path from the speaker back to the microphone, so there is no echo to
guard against: the child runs with ``--echo none`` and the test checks the device path alone.
"""

from __future__ import annotations

import re
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicekit.testing.alsa import LiveAssistant, VirtualSoundCard, played_segments
from voicekit.testing.data import speech

pytest.importorskip("pyaudio")
pytest.importorskip("voicekit_moonshine")

DEADLINE = 75.0


def _words(text: str) -> str:
    words = " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())
    return words.replace("metres", "meters")  # the recognizer spells it either way


def _pcm(name: str, gain: float = 1.0) -> bytes:
    with wave.open(str(speech(name))) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) * gain
    return np.clip(a, -32768, 32767).astype("<i2").tobytes()


def _wait(pred: Any, until: float) -> bool:
    while time.monotonic() < until:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
@pytest.mark.realspeech
def test_live_turn_reply_and_barge_in(tmp_path: Path) -> None:
    utterance = _pcm("goforward")
    interruption = _pcm("goforward", gain=2.0)
    until = time.monotonic() + DEADLINE
    with VirtualSoundCard(tmp_path / "card", paced=True) as card:
        with (tmp_path / "child.err").open("w") as errors, \
                LiveAssistant(card, extra=("--echo", "none"), stderr=errors) as live:
            assert card.mic_reading.wait(max(1.0, until - time.monotonic())), \
                f"the child never opened the mic: {(tmp_path / 'child.err').read_text()[-2000:]}"
            time.sleep(0.3)
            card.say(utterance)
            assert _wait(lambda: played_segments(card.played), until), f"no reply was played: {live.events}"
            time.sleep(0.2)
            card.say(interruption)  # talk over the reply
            assert _wait(lambda: "reply_finished" in live.kinds(), until), \
                f"the second request was not answered: {live.kinds()}"
            time.sleep(0.3)
        segments = played_segments(card.played)

    events = live.events
    turns = [e for e in events if e["event"] == "turn_ended"]
    stderr = (tmp_path / "child.err").read_text()[-2000:]
    assert len(turns) >= 2, ([(e["event"], e.get("text")) for e in events], stderr)
    assert live.returncode == 130, stderr  # Ctrl-C ends a live session cleanly
    assert _words(turns[0]["text"]) == "go forward ten meters"
    assert _words(turns[1]["text"]) == "go forward ten meters"
    cut = next(e for e in events if e["event"] == "reply_interrupted")
    done = next(e for e in events if e["event"] == "reply_finished")
    assert cut["turn_id"] == turns[0]["turn_id"] and done["turn_id"] == turns[1]["turn_id"]
    assert cut["text"] == done["text"] == "Moving forward 10 meters."
    assert 0 < cut["samples_played"] < 0.8 * done["samples_played"]
    # the barge-in came from the second utterance: speech started after the reply did, before the cut
    started = next(e for e in events if e["event"] == "reply_started")
    assert any(e["event"] == "speech_started" and started["wall"] <= e["wall"] <= cut["wall"] for e in events)
    # what reached the speaker: the first reply, cut short, then the whole second reply
    assert len(segments) == 2, segments
    first, second = segments
    assert card.clip_times[0] < first[0] < card.clip_times[1] < first[1]
    full = done["samples_played"] / done["sample_rate"]
    assert (first[1] - first[0]) < 0.8 * full
    assert abs((second[1] - second[0]) - full) < 0.35
    # nothing of the first reply played after the cut (the device's 0.128 s buffer at most)
    assert first[1] - cut["wall"] < 0.35
