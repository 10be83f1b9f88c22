"""voicekit.audio._clock.sleep_until: trio.sleep_until's behaviour, without an exception per wake."""

from __future__ import annotations

import math
import sys

import pytest
import trio
import trio.testing

from voicekit.audio._clock import sleep_until
from voicekit.testing.steps import StepCounter


def run(main, **kw):  # type: ignore[no-untyped-def]
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0), **kw)


def test_wakes_exactly_at_each_deadline_on_the_mock_clock() -> None:
    async def main() -> list[float]:
        t0 = trio.current_time()
        woke = []
        for i in range(50):
            await sleep_until(t0 + (i + 1) * 0.02)
            woke.append(trio.current_time() - t0)
        return woke

    woke = run(main)
    assert woke == [pytest.approx((i + 1) * 0.02, abs=1e-12) for i in range(50)]


async def cancel_soon(scope: trio.CancelScope) -> None:
    await trio.lowlevel.checkpoint()
    scope.cancel()


@pytest.mark.parametrize("sleep", [trio.sleep_until, sleep_until])
def test_a_passed_deadline_is_still_a_checkpoint(sleep) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        for late in (-1.0, 0.0, 1.0):  # already cancelled: raised whether the deadline passed or not
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await sleep(trio.current_time() + late)
        # a source catching up after a stall (every deadline passed) still sees a cancel at once
        done = 0
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                nursery.start_soon(cancel_soon, scope)
                for _ in range(1000):
                    await sleep(trio.current_time() - 1.0)
                    done += 1
        assert done < 5
        counter = StepCounter()
        trio.lowlevel.add_instrument(counter)
        await sleep(trio.current_time() - 1.0)  # yields to the scheduler once
        trio.lowlevel.remove_instrument(counter)
        assert counter.steps == 1

    run(main)


def test_a_cancel_from_outside_is_raised_and_the_deadline_does_not_swallow_it() -> None:
    async def main() -> tuple[bool, float]:
        t0 = trio.current_time()
        with trio.move_on_after(0.05) as outer:
            await sleep_until(t0 + 10.0)
        assert trio.current_time() - t0 == pytest.approx(0.05)
        # cancelled at the very moment the deadline falls: the outer cancel still wins at the next
        # checkpoint, and nothing hangs
        with trio.move_on_at(t0 + 1.0) as both:
            await sleep_until(t0 + 1.0)
            await trio.lowlevel.checkpoint()
        return outer.cancelled_caught and both.cancelled_caught, trio.current_time() - t0

    caught, t = run(main)
    assert caught and t == pytest.approx(1.0)


def cancelled_seen_in_sleep(sleep) -> int:  # type: ignore[no-untyped-def]
    """How many times a Cancelled passed through a frame of ``sleep`` during 20 paced wakes."""
    seen = 0

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal seen
        if event == "exception" and isinstance(arg[1], trio.Cancelled) and frame.f_code.co_name == "sleep_until":
            seen += 1
        return tracer

    async def main() -> None:
        t0 = trio.current_time()
        for i in range(20):
            await sleep(t0 + (i + 1) * 0.02)

    sys.settrace(tracer)
    try:
        run(main)
    finally:
        sys.settrace(None)
    return seen


def test_no_cancelled_exception_is_raised_per_wake() -> None:
    assert cancelled_seen_in_sleep(trio.sleep_until) == 20  # what trio's own sleep does
    assert cancelled_seen_in_sleep(sleep_until) == 0


def test_nan_is_refused_like_trio() -> None:
    async def main() -> None:
        await sleep_until(math.nan)

    with pytest.raises(ValueError):
        run(main)
