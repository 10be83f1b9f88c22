"""Hostile handlers: whatever an intent handler does, the session stays responsive, reports it,
and ends (issue 10, items 10 and 11).

Each test gives the session two turns: the first runs the hostile handler, the second a plain
one. The second must be answered, the first must be reported as an ``Error`` (or a ``Warning``
where the reply was only cut), and the session must reach ``SessionEnded``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from voicekit import events as ev
from voicekit.audio.sinks import MemorySink
from voicekit.handlers import Assistant, Turn
from voicekit.session import NeverInterrupt, Session, SessionConfig
from voicekit.testing import EnergyVAD, FakeASR, FakeTTS, ScriptedSource, Silence, Speech, collect
from voicekit.testing.timeline import Timeline
from voicekit.vad.endpointer import EndpointerConfig

EP = EndpointerConfig(pre_roll_ms=200, start_ms=60, start_window_ms=100, end_silence_ms=600)
APOLOGY = "Sorry, that went wrong."
# two utterances: "hostile" at 0.5-1.5 s, "hello" at 6.5-7.5 s; the input ends at 12.5 s
SCRIPT = [Silence(0.5), Speech(1.0), Silence(5.0), Speech(1.0), Silence(5.0)]


# handler timeout for tests of plain ``def`` handlers on virtual time (see their comment)
SYNC_TIMEOUT = 3600.0


@pytest.fixture
def thread_clock() -> trio.testing.MockClock:
    """Virtual time for tests whose handler runs in a real thread: the clock jumps only after the
    loop has been idle 5 ms of real time, so the thread's answer (a wake-up from outside the loop)
    is not outrun by 12 s of virtual audio however slowly the OS schedules the thread."""
    return trio.testing.MockClock(autojump_threshold=0.005)


class Boom(BaseException):
    """Not an Exception: slips past ``except Exception``."""


def assistant_with(hostile: Callable[..., Any], *, timeout: float = 2.0, max_reply_chars: int = 10_000) -> Assistant:
    a = Assistant("hostile", handler_timeout=timeout, apology=APOLOGY, max_reply_chars=max_reply_chars)
    a.intent(phrases=["hostile"], name="hostile")(hostile)

    @a.intent(phrases=["hello"])
    async def hello(turn: Turn) -> str:
        return "Hello there."

    return a


def build(assistant: Assistant, *, realtime: bool = True) -> Session:
    """``realtime=False``: the script is read as fast as it goes (for tests on the real clock);
    the second utterance then arrives during the first reply, which must not cut it."""
    return Session(ScriptedSource(SCRIPT, realtime=realtime), asr=FakeASR(["hostile", "hello"]),
                   vad=EnergyVAD(frame_ms=20), assistant=assistant, tts=FakeTTS(seconds_per_word=0.1),
                   sink=MemorySink(16000), interruption=None if realtime else NeverInterrupt(),
                   config=SessionConfig(endpointer=EP, realtime=realtime))


def replies(tl: Timeline) -> list[str]:
    return [e.text for e in tl.of(ev.ReplyFinished)]


def handler_errors(tl: Timeline) -> list[ev.Error]:
    return [e for e in tl.of(ev.Error) if e.where == "handler"]


async def run_hostile(hostile: Callable[..., Any], **kw: Any) -> Timeline:
    tl = await collect(build(assistant_with(hostile, **{k: v for k, v in kw.items() if k != "realtime"}),
                             realtime=kw.get("realtime", True)))
    assert tl.first(ev.SessionEnded).reason == "input ended"
    assert "Hello there." in replies(tl), "the turn after the hostile one was answered"
    return tl


def assert_reported(tl: Timeline, *needles: str, error_type: str | None = None) -> ev.Error:
    errors = handler_errors(tl)
    assert len(errors) == 1, errors
    err = errors[0]
    assert "'hostile'" in err.message  # names the intent (and the handler)
    for needle in needles:
        assert needle in err.message, err.message
    if error_type is not None:
        assert err.error_type == error_type
    assert replies(tl) == [APOLOGY, "Hello there."]
    return err


# -- exceptions ---------------------------------------------------------------------------------


async def test_raising_handler(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        raise ValueError("bad value")

    assert_reported(await run_hostile(hostile), "raised ValueError: bad value", error_type="ValueError")


async def test_sys_exit_in_a_handler_is_a_handler_error(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        sys.exit(3)

    assert_reported(await run_hostile(hostile), "SystemExit", "exit the program", error_type="SystemExit")


async def test_base_exception_in_a_handler_is_a_handler_error(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        raise Boom("not an Exception")

    assert_reported(await run_hostile(hostile), "raised Boom: not an Exception", error_type="Boom")


async def test_base_exception_group_from_a_handler_nursery(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        async def die() -> None:
            sys.exit(1)

        async with trio.open_nursery() as n:
            n.start_soon(die)
            n.start_soon(trio.sleep_forever)
        return "unreachable"

    assert_reported(await run_hostile(hostile), "SystemExit")


async def test_streamed_reply_that_raises_midway(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> AsyncIterator[str]:
        yield "First part."
        raise RuntimeError("midway")

    tl = await run_hostile(hostile)
    assert "raised RuntimeError: midway" in handler_errors(tl)[0].message
    assert replies(tl) == ["First part. " + APOLOGY, "Hello there."]


def test_keyboard_interrupt_is_not_swallowed() -> None:
    """Ctrl-C is the user's, not the handler's: it still stops the program."""
    async def hostile(turn: Turn) -> str:
        raise KeyboardInterrupt

    async def main() -> None:
        await collect(build(assistant_with(hostile)))

    with pytest.raises(BaseException) as info:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    def leaves(exc: BaseException) -> list[BaseException]:
        if isinstance(exc, BaseExceptionGroup):
            return [leaf for e in exc.exceptions for leaf in leaves(e)]
        return [exc]

    assert [type(e) for e in leaves(info.value)] == [KeyboardInterrupt]


# -- garbage replies -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [(b"bytes reply", "bytes"), (42, "int"), (["a", "list"], "list"),
                                              (object(), "object")])
async def test_reply_of_the_wrong_type(autojump_clock: trio.testing.MockClock, value: object, shown: str) -> None:
    async def hostile(turn: Turn) -> Any:
        return value

    err = assert_reported(await run_hostile(hostile), f"returned {shown}, not a str", error_type="TypeError")
    assert "b'bytes" not in err.message


async def test_returning_an_unawaited_coroutine(autojump_clock: trio.testing.MockClock) -> None:
    async def answer() -> str:
        return "never said"

    async def hostile(turn: Turn) -> Any:
        return answer()  # forgot the await

    assert_reported(await run_hostile(hostile), "coroutine it never awaited")


async def test_returning_an_async_generator_streams_it(autojump_clock: trio.testing.MockClock) -> None:
    """An ``async def`` that returns an async generator is a streamed reply, not a repr."""
    async def stream() -> AsyncIterator[str]:
        yield "One."
        yield "Two."

    async def hostile(turn: Turn) -> Any:
        return stream()

    tl = await run_hostile(hostile)
    assert not handler_errors(tl)
    assert replies(tl) == ["One. Two.", "Hello there."]


async def test_stream_yielding_garbage(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> AsyncIterator[Any]:
        yield "Fine."
        yield b"\x00\x01"

    tl = await run_hostile(hostile)
    assert "yielded bytes, not a str" in handler_errors(tl)[0].message
    assert replies(tl) == ["Fine. " + APOLOGY, "Hello there."]


async def test_none_is_silence_not_an_error(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> None:
        return None

    tl = await run_hostile(hostile)
    assert not tl.of(ev.Error)
    assert replies(tl) == ["Hello there."]


async def test_huge_reply_is_cut_and_reported(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        return "word " * 200_000  # a megabyte of text

    tl = await run_hostile(hostile, max_reply_chars=500)
    warning = next(w for w in tl.of(ev.Warning) if w.where == "handler")
    assert "1000000 characters" in warning.message and "max_reply_chars" in warning.message
    spoken = "".join(e.text for e in tl.of(ev.ReplyText) if e.turn_id == 1)
    assert 400 < len(spoken) <= 500


async def test_endless_stream_is_cut(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> AsyncIterator[str]:
        while True:
            yield "More."

    tl = await run_hostile(hostile, max_reply_chars=100)
    assert any(w.where == "handler" for w in tl.of(ev.Warning))
    spoken = [e.text for e in tl.of(ev.ReplyText) if e.turn_id == 1]
    assert 0 < len("".join(spoken)) <= 100


# -- hangs ---------------------------------------------------------------------------------------


async def test_sleeping_forever(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        await trio.sleep_forever()
        return "never"

    err = assert_reported(await run_hostile(hostile), "longer than 2 s", "handler_timeout")
    assert err.t == pytest.approx(2.1 + 2.0, abs=0.05)


async def test_ignoring_cancellation_in_a_thread_does_not_block_the_next_turn(
        autojump_clock: trio.testing.MockClock) -> None:
    """``await trio.to_thread.run_sync(blocking)`` cannot be cancelled; the session stops waiting
    for it at the timeout, answers the next turn, and says at its end what it waits for."""
    release = threading.Event()

    async def hostile(turn: Turn) -> str:
        await trio.to_thread.run_sync(release.wait)  # no abandon_on_cancel: trio cannot cancel it
        return "too late"

    async def main() -> Timeline:
        async with trio.open_nursery() as n:
            async def unblock_when_the_session_waits() -> None:
                # the session is over when it says it waits for the thread: let the thread go
                while not release.is_set():
                    await trio.sleep(0.5)
            n.start_soon(unblock_when_the_session_waits)
            s = build(assistant_with(hostile))
            events: list[ev.Event] = []
            n2 = n

            async def read() -> None:
                async for e in s.events():
                    events.append(e)
                    if isinstance(e, ev.Warning) and "cannot be cancelled" in e.message:
                        release.set()
            n2.start_soon(s.run)
            await read()
            return Timeline(events)

    tl = await main()
    assert_reported(tl, "longer than 2 s")
    stuck = [w for w in tl.of(ev.Warning) if "cannot be cancelled" in w.message]
    assert len(stuck) == 1 and "'hostile'" in stuck[0].message and "abandon_on_cancel" in stuck[0].message
    assert tl.kinds()[-1] == "session_ended"


@pytest.mark.slow
def test_blocking_the_event_loop_is_reported() -> None:
    """``time.sleep`` in an ``async def`` handler cannot be interrupted: the overrun is reported
    when it returns, its late answer is dropped, and the next turn is answered (real clock)."""
    async def hostile(turn: Turn) -> str:
        time.sleep(1.2)
        return "late answer"

    async def main() -> Timeline:
        return await run_hostile(hostile, timeout=0.5, realtime=False)

    tl = trio.run(main)
    err = assert_reported(tl, "longer than 0.5 s", "blocked the session")
    assert "late answer" not in " ".join(replies(tl))
    assert err.error_type == "HandlerError"


def test_blocking_sync_handler_runs_in_a_thread_and_is_abandoned() -> None:
    """A plain ``def`` handler may block: it runs in a worker thread, is abandoned at the timeout,
    and the session neither waits for it to answer the next turn nor to end."""
    release = threading.Event()

    def hostile(turn: Turn) -> str:
        release.wait(30)
        return "too late"

    async def main() -> Timeline:
        return await run_hostile(hostile, timeout=0.5, realtime=False)

    started = time.monotonic()
    try:
        tl = trio.run(main)
    finally:
        release.set()
    assert time.monotonic() - started < 10
    assert_reported(tl, "longer than 0.5 s")


@pytest.mark.slow
async def test_sync_handler_answers_from_its_thread(thread_clock: trio.testing.MockClock) -> None:
    def hostile(turn: Turn) -> str:
        assert threading.current_thread() is not threading.main_thread()
        return "From a thread."

    # a real thread under a clock that jumps whenever the loop is idle: a timeout far in virtual time,
    # so how fast the OS starts the thread cannot decide the test (timeouts are tested above)
    tl = await run_hostile(hostile, timeout=SYNC_TIMEOUT)
    assert not tl.of(ev.Error)
    assert replies(tl) == ["From a thread.", "Hello there."]


@pytest.mark.slow
async def test_sync_handler_can_announce(thread_clock: trio.testing.MockClock) -> None:
    def hostile(turn: Turn) -> str:
        turn.announce("Later.", after=1)
        return "Now."

    tl = await run_hostile(hostile, timeout=SYNC_TIMEOUT)
    assert not tl.of(ev.Error)
    assert replies(tl) == ["Now.", "Later.", "Hello there."]


# -- announcements -------------------------------------------------------------------------------


async def test_announcement_spam_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        for i in range(10_000):
            turn.announce(f"spam {i}", after=3600)
        return "unreachable"

    tl = await run_hostile(hostile)
    assert_reported(tl, "announcements pending")
    assert not [e for e in tl.of(ev.ReplyText) if e.text.startswith("spam")]  # pending ones were dropped


@pytest.mark.parametrize("after", [float("nan"), float("inf"), -1.0, "3"])
async def test_announcement_with_a_bad_delay(autojump_clock: trio.testing.MockClock, after: object) -> None:
    async def hostile(turn: Turn) -> str:
        turn.announce("hello", after=after)  # type: ignore[arg-type]
        return "unreachable"

    assert_reported(await run_hostile(hostile), "ConfigError")


async def test_announcements_that_fire_do_not_pile_up(autojump_clock: trio.testing.MockClock) -> None:
    async def hostile(turn: Turn) -> str:
        for i in range(10):
            turn.announce(f"Tick {i}.", after=0.01 * i)
        return "Ticking."

    tl = await run_hostile(hostile)
    assert not tl.of(ev.Error)
    ticks = [t for t in replies(tl) if t.startswith("Tick ")]
    assert ticks == [f"Tick {i}." for i in range(10)]  # in order, none lost
    # one reply at a time: every ReplyStarted is followed by its own end before the next starts
    kinds = [e.kind for e in tl if isinstance(e, ev.ReplyStarted | ev.ReplyFinished | ev.ReplyInterrupted)]
    assert kinds == ["reply_started", "reply_finished"] * (len(kinds) // 2)


# -- through the command line --------------------------------------------------------------------

HOSTILE_MODULE = '''
import sys, time
import trio
from voicekit.handlers import Assistant, Turn

assistant = Assistant("hostile", handler_timeout=2, apology="Sorry, that went wrong.")

@assistant.fallback
async def hostile(turn: Turn) -> str:
    n = turn.context["n"] = turn.context.get("n", 0) + 1
    if n == 1:
        await trio.to_thread.run_sync(time.sleep, 8)  # cannot be cancelled
        return "eight seconds late"
    if n == 2:
        sys.exit("bye")
    return "Still here."
'''


def _three_utterances(path: Path) -> None:
    from voicekit.testing.data import speech

    with wave.open(str(speech("goforward"))) as w:
        rate = w.getframerate()
        clip = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    gap = np.zeros(rate * 4, np.int16)
    audio = np.concatenate([clip, gap, clip, gap, clip, gap])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.tobytes())


@pytest.mark.slow
@pytest.mark.realspeech
def test_voicekit_run_survives_a_hostile_assistant(tmp_path: Path) -> None:
    (tmp_path / "hostile_bot.py").write_text(HOSTILE_MODULE)
    audio = tmp_path / "three.wav"
    _three_utterances(audio)
    env = {**os.environ, "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "voicekit.cli.main", "run", "hostile_bot:assistant",
                        "--input", str(audio), "--tts", "none", "--json"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    errors = [e for e in events if e["event"] == "error" and e["where"] == "handler"]
    assert len(errors) == 2, errors
    assert "longer than 2 s" in errors[0]["message"] and "'fallback'" in errors[0]["message"]
    assert errors[1]["error_type"] == "SystemExit"
    texts = [e["text"] for e in events if e["event"] == "reply_text"]
    assert texts == ["Sorry, that went wrong.", "Sorry, that went wrong.", "Still here."]
    assert "eight seconds late" not in r.stdout
    assert events[-1]["event"] == "session_ended"
    # the run ends once the thread that could not be cancelled returns, not never
    assert time.monotonic() - started < 90
