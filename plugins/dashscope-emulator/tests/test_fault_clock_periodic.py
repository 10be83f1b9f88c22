"""The fault clock recognises re-sent audio in linear time, periodic audio included.

A resuming client re-sends audio an earlier connection received; the emulator finds where the
new connection's opening audio sits in what the earlier ones heard (``faults._Source.find``),
including where that history ends part-way into it. On digital silence and pure tones the
opening's first bytes occur once per period (every two bytes of silence), and checking each of
those places took time quadratic in the overlap: seconds to minutes per reconnect, while the
emulator's single trio loop stood still (a client's pings timed out, a 7.7 s test ran past 40 s).
"""

from __future__ import annotations

import math
import random
import time

import pytest

from voicekit_dashscope_emulator.faults import FaultPlan, _Source

RATE = 16000
BPS = RATE * 2  # bytes per second of 16-bit mono PCM


def tone(seconds: float, hz: float = 400.0) -> bytes:
    """A pure tone whose period is a whole number of samples (400 Hz: 40), starting at a peak."""
    n = int(seconds * RATE)
    return b"".join(int(8000 * math.cos(2 * math.pi * hz * i / RATE)).to_bytes(2, "little", signed=True)
                    for i in range(n))


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * BPS))


def brute_find(history: bytes, needle: bytes) -> int | None:
    at = history.find(needle)
    if at >= 0:
        return at
    for k in range(min(len(history), len(needle) - 1), 0, -1):
        if history[len(history) - k:] == needle[:k]:
            return len(history) - k
    return None


def test_a_replay_that_runs_past_a_silent_history_is_placed_at_once() -> None:
    # the earlier connection heard a tone and 12 s of silence; the resumed one re-sends the last
    # 4 s of that silence, then goes on with 8 s of new tone
    history = tone(0.5) + silence(12)
    needle = silence(4) + tone(8, 523.0)
    src = _Source(BPS)
    src.remember(history)
    started = time.perf_counter()
    at = src.find(needle)
    took = time.perf_counter() - started
    assert at == len(history) - 4 * BPS  # the longest overlap: all of the re-sent silence
    assert took < 3.0, f"find took {took:.1f} s"  # milliseconds; about a minute when quadratic


@pytest.mark.parametrize("seed", range(40))
def test_find_agrees_with_a_plain_search(seed: int) -> None:
    """Random periodic pieces (silence, two tones), cut at random places: the same answer as
    trying every overlap, longest first."""
    rng = random.Random(seed)
    pieces = [silence(0.01), tone(0.01), tone(0.01, 800.0), bytes([rng.randrange(256) for _ in range(40)])]
    audio = b"".join(rng.choice(pieces) * rng.randint(1, 4) for _ in range(30))
    cut = rng.randrange(2, len(audio) // 2) // 2 * 2
    back = rng.randrange(0, cut) // 2 * 2
    history = audio[:cut]
    needle = audio[back: back + rng.randrange(2, len(audio) - back + 1)]
    if rng.random() < 0.2:
        needle = bytes([rng.randrange(256)]) + needle  # found nowhere, or by chance
    src = _Source(BPS)
    src.remember(history)
    assert src.find(needle) == brute_find(history, needle)


def test_a_resume_into_silence_moves_the_clock_by_its_new_audio_only() -> None:
    """Through the fault plan: the second connection resumes in a long silence and sends its
    backlog at once, past where the first one was dropped; only the new audio counts, at once."""
    recording = tone(1) + silence(8) + tone(1, 523.0) + silence(4)
    plan = FaultPlan.parse("drop@5,close1011@10")
    first, second = object(), object()
    chunk = BPS // 10
    kinds: list[str] = []
    for i in range(0, 9 * BPS, chunk):  # the first connection hears 9 s and is dropped at 5 s
        kinds += [f.kind for f in plan.advance(0.1, recording[i:i + chunk], first)]
    assert kinds == ["drop"] and plan.audio_seconds == pytest.approx(9.0)
    started = time.perf_counter()
    # the next one resumes at 3 s, inside the silence, and catches up with 8 s in one piece
    kinds += [f.kind for f in plan.advance(8.0, recording[3 * BPS: 11 * BPS], second)]
    took = time.perf_counter() - started
    assert kinds == ["drop", "close1011"]
    assert plan.audio_seconds == pytest.approx(11.0) and plan.replayed_seconds == pytest.approx(6.0)
    assert took < 3.0, f"the fault clock took {took:.1f} s"  # milliseconds; seconds when quadratic
    for i in range(11 * BPS, 14 * BPS, chunk):
        kinds += [f.kind for f in plan.advance(0.1, recording[i:i + chunk], second)]
    assert plan.audio_seconds == pytest.approx(14.0) and plan.replayed_seconds == pytest.approx(6.0)


def test_a_resume_whose_first_piece_is_a_few_samples_is_recognised() -> None:
    """The connection's rate is taken from its first piece: 9 samples last 9 / 16000 s, and
    18 bytes over that is not exactly 32000 bytes per second in floating point."""
    recording = tone(2) + tone(2, 523.0)
    plan = FaultPlan.parse("drop@3")
    first, second = object(), object()
    assert plan.advance(2.0, recording[: 2 * BPS], first) == []
    resume = BPS  # the next connection re-sends from 1 s, beginning with a piece of 9 samples
    plan.advance(9 / RATE, recording[resume: resume + 18], second)
    plan.advance(1.0 - 9 / RATE, recording[resume + 18: 2 * BPS], second)
    assert plan.replayed_seconds == pytest.approx(1.0) and plan.audio_seconds == pytest.approx(2.0)
    assert [f.kind for f in plan.advance(1.0, recording[2 * BPS: 3 * BPS], second)] == ["drop"]
