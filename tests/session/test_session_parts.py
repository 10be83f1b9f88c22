"""Session's keyword arguments (``SessionParts``): the constructor and ``open_session`` take the
same keywords as before, and a misspelled or missing one is a TypeError naming it, as Python
says it for any function."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from voicekit import events as ev
from voicekit.audio.sinks import MemorySink
from voicekit.session import Session, SessionConfig, open_session
from voicekit.testing import EnergyVAD, FakeASR, FakeTTS, ScriptedSource, Silence, Speech


def test_an_unknown_keyword_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'interuption'"):
        Session(ScriptedSource([Silence(0.1)]), asr=FakeASR([]), vad=EnergyVAD(),  # type: ignore[call-arg]
                interuption=None)


@pytest.mark.parametrize("missing", ["asr", "vad"])
def test_a_missing_required_keyword_is_a_type_error_naming_it(missing: str) -> None:
    parts = {"asr": FakeASR([]), "vad": EnergyVAD()}
    del parts[missing]
    with pytest.raises(TypeError, match=f"missing 1 required keyword-only argument: '{missing}'"):
        Session(ScriptedSource([Silence(0.1)]), **parts)  # type: ignore[arg-type]


async def test_open_session_takes_every_keyword(autojump_clock: trio.testing.MockClock) -> None:
    from voicekit.handlers import Assistant, Turn

    a = Assistant("parts")

    @a.intent("hello")
    async def hello(turn: Turn) -> str:
        return "Hi."

    sink = MemorySink(16000)
    source = ScriptedSource([Silence(0.5), Speech(1.0), Silence(1.5)])
    async with open_session(source, asr=FakeASR(["hello"]), vad=EnergyVAD(), assistant=a,
                            tts=FakeTTS(), sink=sink, interruption=None,
                            config=SessionConfig(realtime=True), names={"asr": "fake"},
                            close_sink=False) as session:
        kinds = [e async for e in session.events()]
    started = kinds[0]
    assert isinstance(started, ev.SessionStarted) and started.asr == "fake"
    assert [type(e).__name__ for e in kinds if isinstance(e, ev.ReplyFinished | ev.IntentMatched)] == [
        "IntentMatched", "ReplyFinished"]
    assert sink.frames and not session.close_sink
