"""The Omni agent against the emulator, on trio's virtual clock (in-memory transport).

The emulator's realtime logic runs for real (VAD on the audio, scripted transcripts, paced reply
audio, cancellation); only the socket is replaced by memory channels so every timing is exact.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from testkit.realtime import PacedSource, TimingSink, conversation, service
from voicekit_dashscope.agent.omni import AgentConfig, OmniAgent
from voicekit_dashscope.agent.tools import tool, tools_from_assistant
from voicekit_dashscope_emulator.engines import FixtureEngine
from voicekit_dashscope_emulator.omni import OmniScript, RealtimeSettings, ToolRule
from voicekit_dashscope_emulator.realtime import RealtimeService
from voicekit_dashscope_emulator.testing import memory_connector

from voicekit import events as ev
from voicekit.errors import ConfigError
from voicekit.handlers.assistant import Assistant, Turn

REPLY = "It is sunny and warm today in the city."
WORD_S = 0.35  # ToneVoice: 0.3 s tone + 0.05 s gap per word
CHUNK_S = 0.02


async def talk(agent: OmniAgent, audio: bytes, sink: TimingSink) -> list[ev.Event]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.run, PacedSource(audio), sink)
        return [e async for e in agent.events]


def of(events: list[ev.Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_barge_in_stops_playback_within_one_chunk(autojump_clock: trio.abc.Clock) -> None:
    svc = service(["what is the weather in paris", "stop please now"])
    agent = OmniAgent(memory_connector(svc), AgentConfig(turn_detection="server_vad", chunk_ms=20))
    sink = TimingSink(16000)
    # question at 0.5-2.0 s; the reply starts ~2.8 s; the user talks over it from 3.5 s
    events = await talk(agent, conversation((0.5, 440, 1.5), (1.5, 520, 1.6)), sink)
    t0 = agent.started_at
    interrupted = of(events, ev.ReplyInterrupted)
    assert len(interrupted) == 1
    cut = interrupted[0]
    signal = of(events, ev.SpeechStarted)[1]  # the interrupting speech as the server reported it
    signal_at = t0 + signal.t
    next_reply = next(e for e in of(events, ev.ReplyStarted) if e.turn_id != cut.turn_id)
    # the server saw the first voiced frame of the interruption at 3.5 s of audio
    assert 3.5 <= signal_at - t0 <= 3.5 + 0.2
    # playback stopped within one chunk of the signal, and nothing of that reply played after it
    after = sink.samples_between(signal_at, t0 + next_reply.t)
    assert after <= round(CHUNK_S * 16000)
    last_write = max(w.t for w in sink.writes if w.t < t0 + next_reply.t)
    assert last_write - signal_at <= CHUNK_S + 1e-9
    # the played count is exact: every sample written for that reply, no more
    assert cut.samples_played == sink.samples_between(0, t0 + next_reply.t)
    assert cut.sample_rate == 16000
    # truncated to what was heard: "It" "is" "sunny" had started when the user cut in
    played_s = cut.samples_played / 16000
    expected_words = REPLY.split()[: int(played_s / WORD_S) + 1]
    assert cut.heard_text == " ".join(expected_words)
    assert REPLY.startswith(cut.heard_text) and cut.heard_text != REPLY
    assistant = [h for h in agent.history if h.role == "assistant"]
    assert assistant[0].interrupted and assistant[0].text == cut.heard_text
    assert assistant[1].text == "You said: stop please now." and not assistant[1].interrupted
    # the in-flight response was cancelled and the model was told what the user heard
    record = svc.sessions[0]
    assert "response.cancel" in record["client_events"]  # (the server had already cancelled it itself)
    assert record["refused"] == ["response_cancel_not_active"]
    assert any(cut.heard_text in (u.get("instructions") or "") for u in record["updates"][1:])
    # the reply that followed played completely
    finished = of(events, ev.ReplyFinished)
    assert finished[-1].samples_played == round(len("You said: stop please now.".split()) * WORD_S * 16000)


async def test_backchannel_leaves_the_reply_playing(autojump_clock: trio.abc.Clock) -> None:
    svc = service(["what is the weather in paris", "uh huh"])
    agent = OmniAgent(memory_connector(svc), AgentConfig(turn_detection="semantic_vad"))
    sink = TimingSink(16000)
    events = await talk(agent, conversation((0.5, 440, 1.5), (1.5, 520, 0.4)), sink)
    assert not of(events, ev.ReplyInterrupted)
    finished = of(events, ev.ReplyFinished)
    assert [f.text for f in finished] == [REPLY]
    full = round(len(REPLY.split()) * WORD_S * 16000)
    assert finished[0].samples_played == full == sum(w.samples for w in sink.writes)
    assert svc.stats["rt_backchannels_ignored"] == 1
    assert "response.cancel" not in svc.sessions[0]["client_events"]
    assert [h.text for h in agent.history] == ["what is the weather in paris", REPLY]


async def test_backchannel_while_buffered_audio_plays_is_ignored_too(autojump_clock: trio.abc.Clock) -> None:
    """The server sends reply audio up to 1 s ahead; it still counts the reply as playing until
    that audio has been heard, so a late "uh-huh" does not cut the tail of the reply."""
    svc = service(["what is the weather in paris", "uh huh"])
    agent = OmniAgent(memory_connector(svc), AgentConfig(turn_detection="semantic_vad"))
    sink = TimingSink()
    events = await talk(agent, conversation((0.5, 440, 1.5), (3.3, 520, 0.3)), sink)
    reply = of(events, ev.ReplyStarted)[0]
    assert not of(events, ev.ReplyInterrupted) and of(events, ev.ReplyFinished)
    assert agent.started_at + reply.t + 2.2 < agent.started_at + 5.3  # the server had sent everything by then
    assert svc.stats["rt_backchannels_ignored"] == 1


async def test_server_vad_lets_a_backchannel_interrupt(autojump_clock: trio.abc.Clock) -> None:
    """The trade-off: plain server VAD stops the reply for an "uh-huh" too."""
    svc = service(["what is the weather in paris", "uh huh"])
    agent = OmniAgent(memory_connector(svc), AgentConfig(turn_detection="server_vad"))
    events = await talk(agent, conversation((0.5, 440, 1.5), (1.5, 520, 0.4)), TimingSink())
    assert len(of(events, ev.ReplyInterrupted)) == 1


async def test_semantic_mode_interrupts_once_the_words_are_a_request(autojump_clock: trio.abc.Clock) -> None:
    svc = service(["what is the weather in paris", "stop please stop now"])
    agent = OmniAgent(memory_connector(svc), AgentConfig(turn_detection="semantic_vad"))
    sink = TimingSink()
    events = await talk(agent, conversation((0.5, 440, 1.5), (1.5, 520, 1.6)), sink)
    cut = of(events, ev.ReplyInterrupted)
    assert len(cut) == 1
    signal = of(events, ev.SpeechStarted)[1]
    # held back until two partials in a row of two words that are not a backchannel ("stop please",
    # "stop please stop", one word per 0.3 s) were heard: later than plain VAD, before the 1.2 s rule
    assert 3.5 + 0.2 < signal.t < 3.5 + 1.2
    assert sink.samples_between(agent.started_at + signal.t + CHUNK_S, agent.started_at + signal.t + 1.0) == 0
    assert svc.stats["rt_semantic_interruptions"] == 1


async def test_confirm_mode_pauses_for_a_backchannel_then_resumes(autojump_clock: trio.abc.Clock) -> None:
    svc = service(["what is the weather in paris", "uh huh"], semantic_speech_started="emit")
    agent = OmniAgent(memory_connector(svc), AgentConfig(turn_detection="semantic_vad", barge_in="confirm",
                                                         confirm_grace_s=0.3))
    sink = TimingSink()
    events = await talk(agent, conversation((0.5, 440, 1.5), (1.5, 520, 0.4)), sink)
    assert not of(events, ev.ReplyInterrupted)
    assert of(events, ev.ReplyFinished)[0].samples_played == round(len(REPLY.split()) * WORD_S * 16000)
    gaps = [b.t - a.t for a, b in zip(sink.writes, sink.writes[1:], strict=False)]
    assert max(gaps) > 0.5  # paused while the user said "uh huh", then carried on


async def test_item_truncate_variant_trims_the_server_history(autojump_clock: trio.abc.Clock) -> None:
    svc = service(["what is the weather in paris", "stop please now"], accept_truncate=True)
    agent = OmniAgent(memory_connector(svc), AgentConfig(turn_detection="server_vad",
                                                         truncate_notice="item_truncate"))
    events = await talk(agent, conversation((0.5, 440, 1.5), (1.5, 520, 1.6)), TimingSink())
    cut = of(events, ev.ReplyInterrupted)[0]
    assert svc.sessions[0]["truncated"] == [cut.heard_text]
    handler = svc.handlers[0]
    assert next(h.text for h in handler.history if h.role == "assistant") == cut.heard_text


async def test_tools_from_an_assistant_answer_function_calls(autojump_clock: trio.abc.Clock) -> None:
    bot = Assistant("weather")
    calls: list[dict[str, Any]] = []

    @bot.intent("weather in {city}")
    async def weather(turn: Turn) -> str:
        calls.append(dict(turn.slots))
        return f"It is sunny in {turn.slots['city']}"

    tools = tools_from_assistant(bot)
    assert tools[0].spec().to_json()["function"]["parameters"]["properties"]["city"] == {"type": "string"}
    svc = RealtimeService(engine=FixtureEngine(["what is the weather in paris"]),
                          settings=RealtimeSettings(vad="energy"),
                          script=OmniScript(tool_rules=(ToolRule("weather", "weather", {"city": "Paris"}),),
                                            after_tool="Here is the forecast: {output}."))
    agent = OmniAgent(memory_connector(svc), AgentConfig(), assistant=bot)
    events = await talk(agent, conversation((0.5, 440, 1.5)), TimingSink())
    assert calls == [{"city": "Paris"}]
    assert svc.sessions[0]["tool_calls"] == [("weather", {"city": "Paris"})]
    assert svc.sessions[0]["tool_outputs"] == ["It is sunny in Paris"]
    assert [f.text for f in of(events, ev.ReplyFinished)] == ["Here is the forecast: It is sunny in Paris."]
    update = svc.sessions[0]["updates"][0]
    assert update["tools"][0]["function"]["name"] == "weather"


async def test_plain_function_tool_and_a_failing_tool(autojump_clock: trio.abc.Clock) -> None:
    @tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    async def get_weather(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("weather service down")

    svc = RealtimeService(engine=FixtureEngine(["what is the weather"]), settings=RealtimeSettings(vad="energy"),
                          script=OmniScript(tool_rules=(ToolRule("weather", "get_weather", {"city": "Oslo"}),)))
    agent = OmniAgent(memory_connector(svc), AgentConfig(), tools=[get_weather])
    events = await talk(agent, conversation((0.5, 440, 1.5)), TimingSink())
    errors = of(events, ev.Error)
    assert errors and errors[0].where == "tool:get_weather"
    assert svc.sessions[0]["tool_outputs"] == ['{"error": "the tool failed"}']
    assert of(events, ev.ReplyFinished)  # the model still answers


async def test_session_is_renewed_before_the_cap_with_context(autojump_clock: trio.abc.Clock) -> None:
    engine = FixtureEngine({440.0: "what is the weather in paris", 660.0: "and tomorrow"}, key="tone")
    svc = RealtimeService(engine=engine, settings=RealtimeSettings(vad="energy", session_limit_s=20.0),
                          script=OmniScript(replies=(REPLY,)))
    agent = OmniAgent(memory_connector(svc), AgentConfig(session_limit_s=20.0, renew_margin_s=8.0,
                                                         instructions="You are a weather bot."))
    events = await talk(agent, conversation((0.5, 440, 1.5), (12.0, 660, 1.2)), TimingSink())
    assert agent.sessions_opened == 2 and len(svc.sessions) == 2
    carried = svc.sessions[1]["instructions"]
    assert carried.startswith("You are a weather bot.")
    assert "User: what is the weather in paris" in carried and f"Assistant: {REPLY}" in carried
    # the second turn was heard and answered by the renewed session
    assert svc.sessions[1]["user"] == ["and tomorrow"]
    assert [f.text for f in of(events, ev.ReplyFinished)] == [REPLY, REPLY]  # (the script restarts per session)
    assert "rt_session_cap" not in svc.stats  # renewed before the server had to cut it


def test_agent_settings_are_checked() -> None:
    svc = service([])
    with pytest.raises(ConfigError, match="semantic_vad"):
        OmniAgent(memory_connector(svc), AgentConfig(model="qwen3-omni-flash-realtime", turn_detection="semantic_vad"))
    with pytest.raises(ConfigError, match="transcription model"):
        OmniAgent(memory_connector(svc), AgentConfig(model="qwen3-asr-flash-realtime"))
    with pytest.raises(ConfigError, match="barge_in"):
        AgentConfig(barge_in="sometimes")
    with pytest.raises(ConfigError, match="outputs audio"):
        OmniAgent(memory_connector(svc), AgentConfig(model="qwen3-omni-flash-realtime", output_rate=48000))
    agent = OmniAgent(memory_connector(svc), AgentConfig(model="qwen3-omni-flash-realtime"))
    assert agent.turn_detection == "server_vad"
    cfg = agent.session_config("x").to_json()
    assert cfg["input_audio_format"] == "pcm16" and cfg["output_audio_format"] == "pcm24"


async def test_a_session_closed_by_the_server_is_reopened(autojump_clock: trio.abc.Clock) -> None:
    engine = FixtureEngine({440.0: "what is the weather in paris", 660.0: "and tomorrow"}, key="tone")
    svc = RealtimeService(engine=engine, settings=RealtimeSettings(vad="energy", session_limit_s=8.0),
                          script=OmniScript(replies=(REPLY,)))
    agent = OmniAgent(memory_connector(svc), AgentConfig())  # expects 120 minutes: the cut is a surprise
    events = await talk(agent, conversation((0.5, 440, 1.5), (8.0, 660, 1.2)), TimingSink())
    assert svc.stats["rt_session_cap"] >= 1 and agent.sessions_opened == svc.stats["rt_session_cap"] + 1
    assert any(isinstance(e, ev.Warning) and "session lost" in e.message for e in events)
    assert svc.sessions[1]["user"] == ["and tomorrow"]
    assert "User: what is the weather in paris" in svc.sessions[1]["instructions"]
