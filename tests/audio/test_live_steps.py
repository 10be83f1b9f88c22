"""The live path's task steps per 20 ms input frame, counted by a trio Instrument on MockClock.

Every task step costs a pass through trio's scheduler; on the live path they happen 50 times a
second per session, so a step that carries no work is CPU spent for nothing. The counts are exact
(virtual time, no timing), so a change that adds a hop per frame fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from live_steps import build, count_steps  # type: ignore[import-not-found]  # next to this file

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.session import Session, SessionConfig
from voicekit.testing import FakeASR, collect
from voicekit.testing.scripted import EnergyVAD


def events_of(policy: str) -> list[tuple[str, float]]:
    session, _ = build(12.0, policy=policy)
    out: list[tuple[str, float]] = []

    async def main() -> None:
        async def read() -> None:
            async for e in session.events():
                out.append((type(e).__name__, round(e.t, 9)))

        async with trio.open_nursery() as n:
            n.start_soon(session.run)
            n.start_soon(read)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out


def test_paced_input_costs_one_step_per_frame_and_a_reply_one_more() -> None:
    r = count_steps(20.0)
    assert r["turns"] == 6 and r["interrupted"] == 1 and r["finished"] == 5  # the script did its work
    # the source's wait is the only wake-up per frame: VAD, endpointer, ASR and the policy run in
    # the reading task (1 step per frame; a few more at the turns)
    assert r["task:Listener._listen_inline"] <= 1.01
    # while a reply plays (~45 % of the frames here) the player writes the chunk due at each frame
    # (one step), and the TTS producer runs ahead in a burst at the reply's start
    assert r["steps_per_frame"] <= 2.05, r  # 1.993-1.996 (trio orders each batch at random)


def test_live_input_has_no_hop_of_its_own_between_capture_and_listener() -> None:
    r = count_steps(20.0, policy="drop_oldest")
    assert r["turns"] == 6 and r["interrupted"] == 1
    # the capture task wakes once per frame (the source's wait) and hands the frame over without a
    # checkpoint of its own; the listener takes it in one step
    assert r["task:Listener._capture"] <= 1.01, r
    assert r["task:Listener._listen"] <= 1.02, r
    assert r["steps_per_frame"] <= 3.05, r  # 3.001


def test_both_policies_give_the_same_events_at_the_same_virtual_times() -> None:
    block = events_of("block")
    assert len(block) > 30
    assert events_of("drop_oldest") == block


class Burst:
    """A source that hands out all its frames without ever waiting (a checkpoint-free iterator)."""

    sample_rate = 16000
    channels = 1

    def __init__(self, frames: int) -> None:
        self.n = frames

    async def frames(self) -> AsyncIterator[AudioFrame]:
        for i in range(self.n):
            yield AudioFrame.trusted(bytes(640), 16000, 1, i * 0.02)

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("buffer", [1, 4])
def test_a_source_that_never_waits_still_lets_the_listener_keep_up(buffer: int) -> None:
    """Live policy: the capture task yields when the listener is behind, so nothing is dropped."""
    session = Session(Burst(500), asr=FakeASR([]), vad=EnergyVAD(16000, frame_ms=20),
                      config=SessionConfig(audio_policy="drop_oldest", audio_buffer_frames=buffer))
    timeline = trio.run(collect, session, clock=trio.testing.MockClock(autojump_threshold=0))
    assert not timeline.of(ev.Warning), timeline.events
    assert session.audio_position == pytest.approx(10.0)
