"""A robot that moves when told to: "go forward ten meters", "turn left", "where are you?".

Its intents are closed templates, so it also runs in PocketSphinx command mode
(``voicekit run robot --asr pocketsphinx --grammar``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from voicekit.handlers import Assistant, Turn

assistant = Assistant("robot", description="a robot on a line that moves forward and backward and turns")

_HEADINGS = ("north", "east", "south", "west")


def _state(turn: Turn) -> dict[str, float | int]:
    return turn.context.setdefault("robot", {"position": 0.0, "heading": 0})  # type: ignore[no-any-return]


def _fmt(x: float) -> str:
    return f"{x:g}"


@assistant.intent("go {direction:forward|backward|back} {distance:number} [meter|meters|metre|metres]",
                  "move {direction:forward|backward|back} {distance:number} [meter|meters|metre|metres]")
async def move(turn: Turn) -> str:
    state = _state(turn)
    distance = float(turn.slots["distance"])
    if distance > 100:
        return f"{_fmt(distance)} meters is too far. I can move at most 100 meters at a time."
    sign = 1 if turn.slots["direction"] == "forward" else -1
    state["position"] += sign * distance
    unit = "meter" if distance == 1 else "meters"
    return f"Moving {turn.slots['direction']} {_fmt(distance)} {unit}."


@assistant.intent("turn {direction:left|right|around}")
async def turn_(turn: Turn) -> str:
    state = _state(turn)
    step = {"left": -1, "right": 1, "around": 2}[turn.slots["direction"]]
    state["heading"] = (int(state["heading"]) + step) % 4
    return f"Turning {turn.slots['direction']}. I now face {_HEADINGS[int(state['heading'])]}."


@assistant.intent(phrases=["stop", "halt", "stop moving"])
async def stop(turn: Turn) -> str:
    return "Stopping."


@assistant.intent(phrases=["where are you", "where are you now", "what is your position"])
async def where(turn: Turn) -> str:
    state = _state(turn)
    return (f"I am {_fmt(abs(state['position']))} meters "
            f"{'ahead of' if state['position'] >= 0 else 'behind'} where I started, "
            f"facing {_HEADINGS[int(state['heading'])]}.")


@assistant.intent(phrases=["tell me about yourself", "who are you"])
async def about(turn: Turn) -> AsyncIterator[str]:
    # a streamed reply: each sentence is spoken as soon as it is ready
    yield "I am a small robot."
    yield "I move forward and backward along a line, and I can turn."
    yield "Tell me, for example, go forward ten meters."


@assistant.fallback
async def unknown(turn: Turn) -> str:
    return "Sorry, I did not understand. Say, for example, go forward ten meters."
