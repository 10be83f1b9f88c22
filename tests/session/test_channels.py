from __future__ import annotations

import pytest
import trio

from voicekit import events as ev
from voicekit.session import Session, SessionConfig
from voicekit.session.channels import BoundedChannel
from voicekit.testing import EnergyVAD, FakeASR, ScriptedSource, Silence, Speech


async def test_drop_oldest_counts_and_keeps_newest() -> None:
    ch: BoundedChannel[int] = BoundedChannel(3, "drop_oldest")
    for i in range(10):
        await ch.send(i)
    assert ch.dropped == 7
    assert [ch.receive_channel.receive_nowait() for _ in range(3)] == [7, 8, 9]


async def test_block_policy_applies_backpressure() -> None:
    ch: BoundedChannel[int] = BoundedChannel(2, "block")
    await ch.send(1)
    await ch.send(2)
    with trio.move_on_after(0.05) as scope:
        await ch.send(3)
    assert scope.cancelled_caught and ch.dropped == 0
    with pytest.raises(ValueError):
        BoundedChannel(0)


async def test_a_reader_that_leaves_early_does_not_break_the_session(autojump_clock: trio.testing.MockClock) -> None:
    s = Session(ScriptedSource([Silence(0.5), Speech(1.0), Silence(1.0)]), asr=FakeASR(["hello"]),
                vad=EnergyVAD(frame_ms=20), config=SessionConfig())
    late = s.subscribe(2)  # a slow reader: it will lose the oldest events, never block the session
    async with trio.open_nursery() as n:
        n.start_soon(s.run)
        async for event in s.events():
            if isinstance(event, ev.SpeechStarted):
                break  # stop reading the primary stream early
    kinds = []
    while True:
        try:
            kinds.append(late.receive_nowait().kind)
        except trio.EndOfChannel:
            break
    assert kinds[-1] == "session_ended" and len(kinds) == 2
    assert s.dropped_events > 0
