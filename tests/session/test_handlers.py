from __future__ import annotations

import pytest

from voicekit.errors import ConfigError
from voicekit.handlers import Assistant, Turn, compile_template, normalize
from voicekit.handlers.numbers import parse_number


@pytest.mark.parametrize(("text", "value"), [
    ("ten", 10), ("twenty five", 25), ("one hundred and five", 105), ("two thousand twenty six", 2026),
    ("three point five", 3.5), ("10", 10), ("2.5", 2.5), ("a hundred", 100), ("forty-two", 42),
    ("two and a half", 2.5), ("banana", None), ("", None),
])
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


def test_normalize() -> None:
    assert normalize("Go forward, ten meters!") == "go forward ten meters"
    assert normalize("Set a timer for 2.5 minutes.") == "set a timer for 2.5 minutes"
    assert normalize("What's the time?") == "what's the time"


def test_templates() -> None:
    t = compile_template("go {direction:forward|backward} {distance:number} [meter|meters]")
    assert t.match("go forward ten meters") == {"direction": "forward", "distance": 10}
    assert t.match("go backward 3") == {"direction": "backward", "distance": 3}
    assert t.match("go up ten meters") is None
    assert t.match("go forward meters") is None
    free = compile_template("call {name} [please]")
    assert free.match("call ada lovelace please") == {"name": "ada lovelace"}
    with pytest.raises(ConfigError):
        compile_template("go {x} {x}")
    with pytest.raises(ConfigError):
        compile_template("")


async def test_assistant_match_order_and_fallback() -> None:
    a = Assistant("t")

    @a.intent("hello [there]")
    async def hello(turn: Turn) -> str:
        return "hi"

    @a.intent(regex=r"my name is (?P<name>\w+)")
    async def name(turn: Turn) -> str:
        return turn.slots["name"]

    m = a.match("Hello there!")
    assert m is not None and m.intent == "hello"
    m = a.match("well my name is Ada")
    assert m is not None and m.intent == "name" and m.slots == {"name": "Ada"}  # the recognized casing
    assert a.match("nothing matches") is None

    @a.fallback
    async def fb(turn: Turn) -> str:
        return "?"

    m = a.match("nothing matches")
    assert m is not None and m.intent == "fallback"
    with pytest.raises(ConfigError):
        a.intent("hello")(hello)  # same name twice


def test_jsgf_from_closed_templates() -> None:
    from voicekit_examples.robot import assistant

    grammar = assistant.jsgf()
    assert grammar is not None and grammar.startswith("#JSGF V1.0;")
    assert "( go (forward|backward|back) <number> [meter|meters|metre|metres] )" in grammar
    open_ = Assistant("o")

    @open_.intent("call {name}")
    async def call(turn: Turn) -> str:
        return ""

    assert open_.jsgf() is None


def test_slots_keep_the_recognized_casing() -> None:
    """Issue 9.13: matching ignores case, slot values keep the words as recognized."""
    a = Assistant("t")

    @a.intent("my name is {name}", "call {name} now")
    async def name(turn: Turn) -> str:
        return f"Nice to meet you, {turn.slots['name']}."

    @a.intent("go {direction:forward|backward} {distance:number} [meters]")
    async def go(turn: Turn) -> str:
        return "ok"

    @a.intent(regex=r"remind me to (?P<what>.+)")
    async def remind(turn: Turn) -> str:
        return "ok"

    @a.intent(phrases=["what time is it"])
    async def time_(turn: Turn) -> str:
        return "ok"

    def slots(text: str) -> dict[str, object]:
        m = a.match(text)
        assert m is not None, text
        return m.slots

    assert slots("My name is Alice.") == {"name": "Alice"}
    assert slots("CALL Bob O'Brien now!") == {"name": "Bob O'Brien"}
    # a choice slot gives the alternative as declared, so handlers can compare it; numbers parse
    assert slots("Go FORWARD Ten meters.") == {"direction": "forward", "distance": 10}
    assert slots("Remind me to call Mum") == {"what": "call Mum"}
    assert slots("What time is IT?") == {}


@pytest.mark.parametrize("text", ["nan", "inf", "infinity", "-inf", "1e400", "nan point one", "inf point five",
                                  "nan and a half"])
def test_words_python_reads_as_floats_are_not_numbers(text: str) -> None:
    """A recognizer may well hear "nan" ("naan") or "inf": never NaN, infinity or a crash."""
    from voicekit.handlers.numbers import parse_number

    assert parse_number(text) is None
