"""The example assistants answer what they promise (text level, no audio)."""

from __future__ import annotations

import datetime as dt

import pytest
from voicekit_examples import clock, robot

from voicekit.handlers import Assistant, Turn


async def ask(assistant: Assistant, text: str, context: dict[str, object]) -> str:
    match = assistant.match(text)
    assert match is not None, text
    turn = Turn(text=text, intent=match.intent, slots=match.slots, turn_id=1, context=context)
    result = match.handler(turn)
    if hasattr(result, "__aiter__"):
        return " ".join([piece async for piece in result])
    return str(await result)


async def test_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [dt.datetime(2026, 11, 26, 14, 5)]
    monkeypatch.setattr(clock, "now", lambda: now[0])
    ctx: dict[str, object] = {}
    assert await ask(clock.assistant, "What time is it?", ctx) == "It is 2:05 in the afternoon."
    assert await ask(clock.assistant, "What's the date today?", ctx) == "Today is Thursday, November 26, 2026."
    assert await ask(clock.assistant, "How much time is left?", ctx) == "There is no timer running."
    assert await ask(clock.assistant, "Set a timer for two and a half minutes.", ctx) == \
        "Timer set for 2 minutes and 30 seconds."
    now[0] += dt.timedelta(seconds=40)
    assert await ask(clock.assistant, "how long is left", ctx) == "1 minute and 50 seconds left."
    assert await ask(clock.assistant, "cancel the timer", ctx) == "Timer cancelled."
    assert await ask(clock.assistant, "cancel the timer", ctx) == "There is no timer to cancel."
    assert (await ask(clock.assistant, "sing a song", ctx)).startswith("I can tell the time")
    now[0] = dt.datetime(2026, 11, 26, 0, 0)
    assert await ask(clock.assistant, "what is the time", ctx) == "It is 12 o'clock in the morning."


async def test_clock_keeps_the_name_as_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9.13: slot values keep the recognized casing."""
    monkeypatch.setattr(clock, "now", lambda: dt.datetime(2026, 11, 26, 9, 30))
    ctx: dict[str, object] = {}
    assert await ask(clock.assistant, "My name is Alice.", ctx) == "Nice to meet you, Alice."
    assert await ask(clock.assistant, "What time is it?", ctx) == "It is 9:30 in the morning, Alice."
    assert await ask(clock.assistant, "call me Mary Jane", ctx) == "Nice to meet you, Mary Jane."


async def test_robot_keeps_state() -> None:
    ctx: dict[str, object] = {}
    assert await ask(robot.assistant, "Go forward ten meters.", ctx) == "Moving forward 10 meters."
    assert await ask(robot.assistant, "go back 3 meters", ctx) == "Moving back 3 meters."
    assert await ask(robot.assistant, "turn left", ctx) == "Turning left. I now face west."
    assert await ask(robot.assistant, "Where are you?", ctx) == \
        "I am 7 meters ahead of where I started, facing west."
    assert (await ask(robot.assistant, "go forward five hundred meters", ctx)).endswith("at a time.")
    assert "small robot" in await ask(robot.assistant, "tell me about yourself", ctx)
    assert (await ask(robot.assistant, "make me a sandwich", ctx)).startswith("Sorry")
