"""The session pipeline on trio's virtual clock: exact timings, barge-in, failing handlers."""

from __future__ import annotations

import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from voicekit import events as ev
from voicekit.audio.sinks import MemorySink, WavFileSink
from voicekit.errors import ASRError
from voicekit.handlers import Assistant, Turn
from voicekit.session import NeverInterrupt, Session, SessionConfig, VADInterruption
from voicekit.testing import EnergyVAD, FakeASR, FakeTTS, ScriptedSource, Silence, Speech, Timeline, collect
from voicekit.vad.endpointer import EndpointerConfig

EP = EndpointerConfig(pre_roll_ms=200, start_ms=60, start_window_ms=100, end_silence_ms=600)


def make_assistant() -> Assistant:
    a = Assistant("test", handler_timeout=2.0, apology="Sorry, that went wrong.")

    @a.intent("go {direction:forward|backward} {distance:number} [meters]")
    async def move(turn: Turn) -> str:
        return f"Moving {turn.slots['direction']} {turn.slots['distance']} meters."

    @a.intent("tell me a story")
    async def story(turn: Turn) -> str:
        return " ".join(["once upon a time there was a robot"] * 3)  # 24 words

    @a.intent("stream please")
    async def streamed(turn: Turn) -> AsyncIterator[str]:
        yield "First part."
        await trio.sleep(0.5)
        yield "Second part."

    @a.intent("break")
    async def broken(turn: Turn) -> str:
        raise RuntimeError("handler bug")

    @a.intent("hang")
    async def slow(turn: Turn) -> str:
        await trio.sleep(60)
        return "too late"

    return a


def session(script: list[object], texts: list[str], *, sink: MemorySink | None = None,
            policy: object | None = None, tts: FakeTTS | None = None, realtime: bool = True,
            chunk_ms: int = 20, vad_ms: int = 20) -> Session:
    return Session(
        ScriptedSource(script, chunk_ms=chunk_ms),  # type: ignore[arg-type]
        asr=FakeASR(texts), vad=EnergyVAD(frame_ms=vad_ms), assistant=make_assistant(),
        tts=tts or FakeTTS(seconds_per_word=0.3), sink=sink or MemorySink(16000),
        interruption=policy or VADInterruption(min_speech_ms=300),  # type: ignore[arg-type]
        config=SessionConfig(endpointer=EP, realtime=realtime),
    )


def received(log: trio.MemoryReceiveChannel[ev.Event]) -> Timeline:
    """What a subscription holds once its session has ended."""
    events: list[ev.Event] = []
    while True:
        try:
            events.append(log.receive_nowait())
        except trio.EndOfChannel:
            return Timeline(events)


async def test_one_turn_exact_timeline(autojump_clock: trio.testing.MockClock) -> None:
    sink = MemorySink(16000)
    tl = await collect(session([Silence(1.0), Speech(1.5), Silence(3.0)], ["go forward ten meters"],
                               sink=sink))
    tl.assert_order(ev.SessionStarted, ev.SpeechStarted, ev.SpeechEnded, ev.Transcript, ev.TurnEnded,
                    ev.IntentMatched, ev.ReplyStarted, ev.ReplyFinished, ev.SessionEnded)
    start, end = tl.first(ev.SpeechStarted), tl.first(ev.SpeechEnded)
    assert start.audio_t == pytest.approx(0.8)  # 200 ms pre-roll before the first voiced frame at 1.0
    assert start.t == pytest.approx(1.06)  # detected after start_ms of voiced audio
    assert end.audio_t == pytest.approx(2.5)
    assert end.t == pytest.approx(3.1)  # exactly end_silence_ms after the last voiced frame
    assert tl.finals() == ["go forward ten meters"]
    assert any(not e.is_final for e in tl.of(ev.Transcript))  # partials came first
    assert tl.first(ev.IntentMatched).slots == {"direction": "forward", "distance": 10}
    done = tl.first(ev.ReplyFinished)
    assert done.text == "Moving forward 10 meters."
    assert done.samples_played == round(4 * 0.3 * 16000) == sink.samples
    assert tl.first(ev.ReplyFinished).t == pytest.approx(3.1 + 4 * 0.3, abs=0.03)  # paced playback


async def test_barge_in_stops_playback_within_one_chunk(autojump_clock: trio.testing.MockClock) -> None:
    sink = MemorySink(16000)
    # the story reply starts at 3.1 s and would last 24 * 0.3 = 7.2 s; the user speaks at 5.0 s
    script = [Silence(1.0), Speech(1.5), Silence(2.5), Speech(1.0), Silence(3.0)]
    tl = await collect(session(script, ["tell me a story", "stop"], sink=sink))
    cut = tl.first(ev.ReplyInterrupted)
    # interruption decided after 300 ms of voiced speech: audio time 5.3 s
    assert cut.t == pytest.approx(5.3, abs=0.021)
    played_s = cut.samples_played / cut.sample_rate
    assert played_s == pytest.approx(5.3 - 3.1, abs=0.021)  # within one 20 ms chunk
    assert sink.samples == cut.samples_played  # nothing of the cancelled reply reached the sink after
    assert 0 < len(cut.heard_text.split()) < 24
    assert cut.text.startswith(cut.heard_text)
    assert not tl.of(ev.ReplyFinished)


async def test_backchannel_length_noise_does_not_interrupt(autojump_clock: trio.testing.MockClock) -> None:
    sink = MemorySink(16000)
    script = [Silence(1.0), Speech(1.5), Silence(2.5), Speech(0.12), Silence(8.0)]
    tl = await collect(session(script, ["tell me a story", ""], sink=sink))
    assert not tl.of(ev.ReplyInterrupted)
    assert tl.first(ev.ReplyFinished).samples_played == round(24 * 0.3 * 16000)


async def test_never_interrupt_policy(autojump_clock: trio.testing.MockClock) -> None:
    script = [Silence(1.0), Speech(1.5), Silence(2.5), Speech(1.0), Silence(8.0)]
    tl = await collect(session(script, ["tell me a story", "hmm"], policy=NeverInterrupt()))
    assert not tl.of(ev.ReplyInterrupted)
    assert tl.of(ev.ReplyFinished)


async def test_raising_handler_gives_error_event_and_apology(autojump_clock: trio.testing.MockClock) -> None:
    script = [Silence(0.5), Speech(1.0), Silence(3.0), Speech(1.0), Silence(3.0)]
    tts = FakeTTS(seconds_per_word=0.1)
    tl = await collect(session(script, ["break", "go backward 2"], tts=tts))
    err = tl.first(ev.Error)
    assert err.where == "handler" and "RuntimeError: handler bug" in err.message
    assert err.error_type == "RuntimeError"
    texts = [e.text for e in tl.of(ev.ReplyFinished)]
    assert texts == ["Sorry, that went wrong.", "Moving backward 2 meters."]  # the session went on
    assert tts.spoken[0] == "Sorry, that went wrong."


async def test_handler_timeout(autojump_clock: trio.testing.MockClock) -> None:
    script = [Silence(0.5), Speech(1.0), Silence(5.0)]
    tl = await collect(session(script, ["hang"]))
    err = tl.first(ev.Error)
    assert "longer than 2 s" in err.message
    assert err.t == pytest.approx(2.1 + 2.0, abs=0.03)
    assert tl.first(ev.ReplyFinished).text == "Sorry, that went wrong."


async def test_streamed_reply(autojump_clock: trio.testing.MockClock) -> None:
    tl = await collect(session([Silence(0.5), Speech(1.0), Silence(4.0)], ["stream please"]))
    assert [e.text for e in tl.of(ev.ReplyText)] == ["First part.", "Second part."]
    assert tl.first(ev.ReplyFinished).text == "First part. Second part."


async def test_asr_failure_is_a_typed_error(autojump_clock: trio.testing.MockClock) -> None:
    s = Session(ScriptedSource([Silence(0.5), Speech(1.0), Silence(1.0)]), asr=FakeASR([], fail_after_utterances=0),
                vad=EnergyVAD(frame_ms=20), config=SessionConfig(endpointer=EP))
    log = s.subscribe(100)
    with pytest.RaisesGroup(pytest.RaisesExc(ASRError, match="fail after 0")):
        async with trio.open_nursery() as n:
            n.start_soon(s.run)
    tl = received(log)
    assert tl.first(ev.Error).error_type == "ASRError"
    assert tl.kinds()[-1] == "session_ended"


async def test_ten_minute_session_is_fast_on_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    script: list[object] = []
    texts = []
    for i in range(60):  # 60 turns, 10 s each
        script += [Silence(3.0), Speech(2.0), Silence(5.0)]
        texts.append("go forward ten meters" if i % 2 else "go backward 3")
    wall = time.perf_counter()
    # 100 ms capture buffers, as sound cards commonly deliver; the VAD still sees 20 ms frames
    tl = await collect(session(script, texts, tts=FakeTTS(seconds_per_word=0.2, chunk_ms=100), chunk_ms=100,
                               vad_ms=30))
    wall = time.perf_counter() - wall
    assert trio.current_time() == pytest.approx(600.0, abs=0.1)
    assert len(tl.of(ev.ReplyFinished)) == 60
    assert wall < 10.0  # generous: the benchmark prints the real figure (well under a second)


async def test_semantic_policy_backchannel_resumes(autojump_clock: trio.testing.MockClock) -> None:
    from voicekit.session.interruption import SemanticInterruption

    sink = MemorySink(16000)
    script = [Silence(1.0), Speech(1.5), Silence(2.5), Speech(0.5), Silence(9.0)]
    tl = await collect(session(script, ["tell me a story", "uh-huh"], sink=sink, policy=SemanticInterruption()))
    assert not tl.of(ev.ReplyInterrupted)
    assert len(tl.of(ev.TurnEnded)) == 1  # the backchannel did not become a turn
    done = tl.first(ev.ReplyFinished)
    assert done.samples_played == round(24 * 0.3 * 16000) == sink.samples  # every word, after a pause
    # playback paused while the user spoke: the reply ends later than its 7.2 s of audio
    assert done.t - tl.first(ev.ReplyStarted).t > 7.2 + 0.4


async def test_semantic_policy_real_request_interrupts(autojump_clock: trio.testing.MockClock) -> None:
    from voicekit.session.interruption import SemanticInterruption

    sink = MemorySink(16000)
    script = [Silence(1.0), Speech(1.5), Silence(2.5), Speech(1.5), Silence(4.0)]
    tl = await collect(session(script, ["tell me a story", "go forward 5 meters"], sink=sink,
                               policy=SemanticInterruption(min_words=2)))
    cut = tl.first(ev.ReplyInterrupted)
    # paused at speech start (5.06 s); two words of partials at 0.2 s per word after the start
    assert cut.t < 5.7
    assert sink.samples == cut.samples_played + tl.first(ev.ReplyFinished).samples_played
    assert cut.samples_played / 16000 == pytest.approx(tl.of(ev.SpeechStarted)[1].t - 3.1, abs=0.021)
    assert [e.text for e in tl.of(ev.ReplyFinished)] == ["Moving forward 5 meters."]


def test_backchannel_lexicons() -> None:
    from voicekit.session.backchannel import is_backchannel, word_count

    for text in ("uh-huh", "Yeah, right.", "mm hmm okay", "嗯", "对对对", "嗯，好的", "はい", "うんうん、なるほど"):
        assert is_backchannel(text), text
    for text in ("stop", "wait a second", "不对，我要去北京", "いいえ違います", "", "yeah but no"):
        assert not is_backchannel(text), text
    assert word_count("我要去北京") == 5 and word_count("go to Beijing") == 3 and word_count("去 Beijing") == 2


async def test_cancelling_a_session_is_not_an_error(autojump_clock: trio.testing.MockClock) -> None:
    s = session([Silence(1.0), Speech(1.5), Silence(30.0)], ["tell me a story"])
    log = s.subscribe(10000)
    with trio.move_on_after(4.0):  # mid-reply
        await s.run()
    tl = received(log)
    assert not tl.of(ev.Error)
    assert tl.kinds()[-1] == "session_ended" and tl.first(ev.SessionEnded).reason == "cancelled"


async def test_timer_announcement_on_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    from voicekit_examples import clock

    s = Session(ScriptedSource([Silence(1.0), Speech(1.5), Silence(20.0)]),
                asr=FakeASR(["set a timer for ten seconds"]), vad=EnergyVAD(frame_ms=20),
                assistant=clock.assistant, tts=FakeTTS(seconds_per_word=0.3), sink=MemorySink(16000),
                config=SessionConfig(endpointer=EP, realtime=True))
    tl = await collect(s)
    texts = [(round(e.t, 2), e.text) for e in tl.of(ev.ReplyText)]
    assert texts == [(3.1, "Timer set for 10 seconds."), (13.1, "Time is up: the timer for 10 seconds is done.")]
    assert [e.turn_id for e in tl.of(ev.ReplyFinished)] == [1, 2]


async def test_pending_announcements_are_dropped_when_the_input_ends(
        autojump_clock: trio.testing.MockClock) -> None:
    from voicekit_examples import clock

    s = Session(ScriptedSource([Silence(1.0), Speech(1.5), Silence(3.0)]),
                asr=FakeASR(["set a timer for five minutes"]), vad=EnergyVAD(frame_ms=20),
                assistant=clock.assistant, tts=FakeTTS(), sink=MemorySink(16000),
                config=SessionConfig(endpointer=EP, realtime=True))
    tl = await collect(s)
    assert [e.text for e in tl.of(ev.ReplyText)] == ["Timer set for 5 minutes."]
    assert trio.current_time() < 10  # the session did not wait five minutes


async def _timer_session(script: list[object], texts: list[str], latency: float = 0.0) -> Timeline:
    """The clock's timer on an input read as fast as it decodes (``realtime=False``)."""
    from voicekit_examples import clock

    s = Session(ScriptedSource(script, realtime=False),  # type: ignore[arg-type]
                asr=FakeASR(texts, latency=latency), vad=EnergyVAD(frame_ms=20), assistant=clock.assistant,
                tts=FakeTTS(seconds_per_word=0.3), sink=MemorySink(16000), interruption=NeverInterrupt(),
                config=SessionConfig(endpointer=EP, realtime=False))
    return await collect(s)


@pytest.mark.parametrize("latency", [0.0, 0.5])
async def test_announcement_on_unpaced_input_runs_on_audio_time(autojump_clock: trio.testing.MockClock,
                                                                latency: float) -> None:
    """Issue 9.12: a file read faster than real time still gets its timer, counted in audio seconds
    (also when the recognizer answers after the whole file has been read)."""
    tl = await _timer_session([Silence(1.0), Speech(1.5), Silence(8.0)], ["set a timer for three seconds"],
                              latency)
    assert [e.text for e in tl.of(ev.ReplyText)] == ["Timer set for 3 seconds.",
                                                     "Time is up: the timer for 3 seconds is done."]
    assert trio.current_time() < 3  # it did not wait three seconds of trio time: the audio clock ran


async def test_announcement_on_unpaced_input_is_ordered_by_audio_time(
        autojump_clock: trio.testing.MockClock) -> None:
    # the timer ends at 2.5 + 3 = 5.5 s of audio: after a question asked at 3.5 s ...
    before = await _timer_session([Silence(1.0), Speech(1.5), Silence(1.0), Speech(1.0), Silence(8.0)],
                                  ["set a timer for three seconds", "cancel the timer"])
    assert [e.text for e in before.of(ev.ReplyText)] == ["Timer set for 3 seconds.", "Timer cancelled."]
    # ... and before a question asked at 7 s
    after = await _timer_session([Silence(1.0), Speech(1.5), Silence(4.5), Speech(1.0), Silence(3.0)],
                                 ["set a timer for three seconds", "cancel the timer"])
    assert [e.text for e in after.of(ev.ReplyText)] == [
        "Timer set for 3 seconds.", "Time is up: the timer for 3 seconds is done.", "Timer cancelled."]


async def test_announcement_past_the_end_of_unpaced_input_is_dropped(
        autojump_clock: trio.testing.MockClock) -> None:
    tl = await _timer_session([Silence(1.0), Speech(1.5), Silence(2.0)], ["set a timer for three seconds"])
    assert [e.text for e in tl.of(ev.ReplyText)] == ["Timer set for 3 seconds."]


async def test_session_closes_its_wav_sink_before_session_ended(autojump_clock: trio.testing.MockClock,
                                                                tmp_path: Path) -> None:
    """Issue 9.9: the documented snippet never closed its sink and left a 44-byte WAV."""
    out = tmp_path / "answer.wav"
    s = session([Silence(0.5), Speech(1.0), Silence(3.0)], ["go forward ten meters"],
                sink=WavFileSink(out, 16000))  # type: ignore[arg-type]
    sizes: list[int] = []
    async with trio.open_nursery() as n:
        n.start_soon(s.run)
        async for event in s.events():
            if isinstance(event, ev.SessionEnded):
                sizes.append(out.stat().st_size)  # already complete when the end is announced
    with wave.open(str(out)) as w:
        assert w.getnframes() == round(4 * 0.3 * 16000)  # "Moving forward 10 meters."
    assert sizes == [44 + 2 * round(4 * 0.3 * 16000)]


async def test_a_failed_session_leaves_no_reply_file(autojump_clock: trio.testing.MockClock,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "answer.wav"
    s = Session(ScriptedSource([Silence(0.5), Speech(1.0), Silence(1.0)]), asr=FakeASR([], fail_after_utterances=0),
                vad=EnergyVAD(frame_ms=20), sink=WavFileSink(out, 16000), config=SessionConfig(endpointer=EP))
    with pytest.RaisesGroup(pytest.RaisesExc(ASRError)):
        async with trio.open_nursery() as n:
            n.start_soon(s.run)
    assert not out.exists() and not list(tmp_path.iterdir())  # nor a temporary file


async def test_close_sink_false_keeps_one_sink_for_several_sessions(autojump_clock: trio.testing.MockClock,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "both.wav"
    sink = WavFileSink(out, 16000)
    for text in ("go forward ten meters", "go backward 2"):
        s = Session(ScriptedSource([Silence(0.5), Speech(1.0), Silence(3.0)]), asr=FakeASR([text]),
                    vad=EnergyVAD(frame_ms=20), assistant=make_assistant(), tts=FakeTTS(seconds_per_word=0.3),
                    sink=sink, config=SessionConfig(endpointer=EP), close_sink=False)
        await collect(s)
    await sink.aclose()
    with wave.open(str(out)) as w:
        assert w.getnframes() == round(8 * 0.3 * 16000)
