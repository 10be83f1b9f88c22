"""``OmniChatHandler`` as an assistant fallback, run by a real Session (issue 9, item 2).

Before the fix the session awaited the handler, got the async generator it returns, and spoke
its repr: ``<async_generator object OmniChatHandler._stream at 0x…>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from testkit.common import FAKE_KEY
from voicekit_dashscope.asr.omni_http import OmniChatHandler
from voicekit_dashscope_emulator import FixtureEngine, running_emulator

from voicekit import events as ev
from voicekit.audio.sinks import MemorySink
from voicekit.handlers import Assistant, Turn
from voicekit.session import Session, SessionConfig
from voicekit.testing import EnergyVAD, FakeASR, FakeTTS, ScriptedSource, Silence, Speech, collect
from voicekit.vad.endpointer import EndpointerConfig

# each test runs a whole Session through several turns against the emulator (4-7 s each)
pytestmark = pytest.mark.slow

EP = EndpointerConfig(pre_roll_ms=200, start_ms=60, start_window_ms=100, end_silence_ms=500)


def _session(assistant: Assistant, said: list[str], tts: FakeTTS, sink: MemorySink) -> Session:
    script: list[object] = [Silence(0.3)]
    for _ in said:
        script += [Speech(0.8), Silence(2.5)]
    return Session(ScriptedSource(script), asr=FakeASR(said), vad=EnergyVAD(), assistant=assistant,  # type: ignore[arg-type]
                   tts=tts, sink=sink, config=SessionConfig(endpointer=EP))


async def test_omni_chat_fallback_is_spoken_by_a_session() -> None:
    async with running_emulator(FixtureEngine([])) as emu:
        bot = Assistant("omni-fallback", handler_timeout=20.0)

        @bot.intent("stop")
        async def stop(turn: Turn) -> str:
            return "Stopping."

        handler = OmniChatHandler(FAKE_KEY, base_url=emu.http_base_url)
        bot.fallback(handler)
        tts, sink = FakeTTS(seconds_per_word=0.05), MemorySink(16000)
        session = _session(bot, ["what is the weather", "and tomorrow"], tts, sink)
        with trio.fail_after(60):
            tl = await collect(session)
    finished = [e.text for e in tl.of(ev.ReplyFinished)]
    assert finished == ["You said: what is the weather. Noted.", "You said: and tomorrow. Noted."]
    # streamed sentence by sentence to the TTS, never a repr
    assert tts.spoken == ["You said: what is the weather.", "Noted.", "You said: and tomorrow.", "Noted."]
    assert not any("async_generator" in e.text for e in tl.of(ev.ReplyText))
    assert sink.samples > 0
    # the handler kept the conversation in the session context across the two turns
    assert session.context["omni_history"] == [
        {"role": "user", "content": "what is the weather"},
        {"role": "assistant", "content": "You said: what is the weather. Noted."},
        {"role": "user", "content": "and tomorrow"},
        {"role": "assistant", "content": "You said: and tomorrow. Noted."}]


async def test_async_def_handler_returning_an_async_iterator_is_streamed() -> None:
    """The documented handler contract: an ``async def`` handler may return an async iterator."""
    bot = Assistant("returns-iterator")

    async def pieces() -> AsyncIterator[str]:
        yield "One."
        yield "Two."

    @bot.fallback
    async def fallback(turn: Turn) -> AsyncIterator[str]:
        return pieces()

    tts, sink = FakeTTS(seconds_per_word=0.05), MemorySink(16000)
    tl = await collect(_session(bot, ["hello"], tts, sink))
    assert tts.spoken == ["One.", "Two."]
    assert tl.first(ev.ReplyFinished).text == "One. Two."
