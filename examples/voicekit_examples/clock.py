"""A clock and timer assistant: "what time is it?", "what day is it?",
"set a timer for five minutes", "how long is left?", "cancel the timer", "my name is Ada"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from voicekit.handlers import Assistant, Turn

assistant = Assistant("clock", description="tells the time and the date, and keeps a timer")

# the clock reads the wall time through this, so tests can set it
now: Callable[[], dt.datetime] = dt.datetime.now

_UNITS = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}


def _say_time(t: dt.datetime) -> str:
    hour = t.hour % 12 or 12
    clock = f"{hour} o'clock" if t.minute == 0 else f"{hour}:{t.minute:02d}"
    return f"{clock} in the {'morning' if t.hour < 12 else 'afternoon' if t.hour < 18 else 'evening'}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    parts = []
    for name, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {name}{'s' if n != 1 else ''}")
    return " and ".join(parts) or "no time"


@assistant.intent("what time is it [now]", "what's the time", "what is the time [now]",
                  "tell me the time")
async def time_now(turn: Turn) -> str:
    name = turn.context.get("name")
    return f"It is {_say_time(now())}{f', {name}' if name else ''}."


@assistant.intent("what day is it [today]", "what's the date [today]", "what is the date [today]",
                  "what's today's date", "what is today's date")
async def date_today(turn: Turn) -> str:
    t = now()
    return f"Today is {t:%A}, {t:%B} {t.day}, {t.year}."


@assistant.intent("set a timer for {amount:number} {unit:second|seconds|minute|minutes|hour|hours}",
                  "set timer for {amount:number} {unit:second|seconds|minute|minutes|hour|hours}",
                  "timer {amount:number} {unit:second|seconds|minute|minutes|hour|hours}")
async def set_timer(turn: Turn) -> str:
    seconds = float(turn.slots["amount"]) * _UNITS[turn.slots["unit"]]
    if seconds <= 0 or seconds > 24 * 3600:
        return "I can set a timer from one second up to twenty four hours."
    previous = turn.context.pop("timer", None)
    if previous is not None:
        previous.cancel()
    turn.context["timer_ends"] = now() + dt.timedelta(seconds=seconds)
    if turn.scheduler is not None:  # in a running session: say so when the time is up
        turn.context["timer"] = turn.announce(f"Time is up: the timer for {_duration(seconds)} is done.",
                                              after=seconds)
    return f"Timer set for {_duration(seconds)}."


@assistant.intent("how much time is left", "how long is left", "how much time left",
                  "how long until the timer [ends]")
async def time_left(turn: Turn) -> str:
    ends = turn.context.get("timer_ends")
    if ends is None:
        return "There is no timer running."
    left = (ends - now()).total_seconds()
    if left <= 0:
        turn.context.pop("timer_ends")
        return "The timer has finished."
    return f"{_duration(left)} left."


@assistant.intent("cancel the timer", "stop the timer", "cancel timer")
async def cancel_timer(turn: Turn) -> str:
    timer = turn.context.pop("timer", None)
    if timer is not None:
        timer.cancel()
    if turn.context.pop("timer_ends", None) is None:
        return "There is no timer to cancel."
    return "Timer cancelled."


@assistant.intent("[hello|hi] my name is {name}", "[hello|hi] call me {name}")
async def introduce(turn: Turn) -> str:
    name = turn.slots["name"]  # as recognized: "Alice", not "alice"
    turn.context["name"] = name
    return f"Nice to meet you, {name}."


@assistant.fallback
async def unknown(turn: Turn) -> str:
    return "I can tell the time and the date, or set a timer."
