"""A resumed realtime stream (Qwen3-ASR-Flash-Realtime, Omni) repeats no utterance and loses none.

The same class of bug as the Fun-ASR task client's (test_resume_no_duplicates.py), on the
realtime protocol, which has no word times:

* the new session started exactly at the last final's ``speech_stopped`` time, and a server VAD
  starting afresh there heard the tail as an utterance of its own (an extra copy of a sentence);
* a final was counted as delivered before it was handed to the caller: a connection that failed
  during the hand-over lost it, its audio already forgotten;
* a final that comes before an earlier utterance's final (the protocol does not promise their
  order) counted all the audio before it as covered: the earlier one was lost on a reconnect;
* a final with no ``speech_stopped`` time (the utterance the server closes at ``session.finish``)
  never covered its audio: a reconnect then sent it again, and it came twice.

The emulator cases use its ``stall`` fault; the others a small scripted server (:class:`_ToyServer`)
whose "speech" is PCM of constant sample values, one value per word, so that what it hears (and
hears again after a reconnect) follows from the audio it is sent, as a real server's does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
from testkit.common import noisy_tone_script, stream_through
from voicekit_dashscope.asr.realtime import OmniRealtimeASR, Qwen3ASRRealtime
from voicekit_dashscope.client.task import RetryPolicy, Timeouts
from voicekit_dashscope.errors import ConnectionLostError
from voicekit_dashscope.protocol.realtime import (
    AudioAppend,
    AudioCommit,
    AudioCommitted,
    ServerRealtimeProtocol,
    SessionCreated,
    SessionFinish,
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionText,
    get_realtime_model,
)
from voicekit_dashscope_emulator import FixtureEngine, running_emulator
from voicekit_dashscope_emulator.omni import OmniScript, RealtimeSettings

from voicekit.asr.base import TranscriptResult

KEY = "sk-test-realtime-no-duplicates-not-a-real-key"  # made up: the emulator accepts any
RETRY = RetryPolicy(backoff_initial=0.01, backoff_max=0.05, max_retries=6)
STALL = dict(retry=RETRY, timeouts=Timeouts(ping_interval=0.1, ping_timeout=0.3, start=10))


def finals(results: list[TranscriptResult]) -> list[TranscriptResult]:
    return [r for r in results if r.is_final]


# -- the emulator: a server that falls behind (stall), server VAD on a noise floor

async def _emulated(script: Any, faults: str | None, asr_cls: Any = Qwen3ASRRealtime, *, busy: Any = None,
                    result_queue: int | None = None, markers: list[tuple[float, float]] | None = None,
                    **kw: Any) -> tuple[list[TranscriptResult], Any]:
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0.25)
    realtime = {"settings": RealtimeSettings(vad="webrtc", pace=0.0), "script": OmniScript(replies=("ok",))}
    async with running_emulator(engine, realtime=realtime, faults=faults) as emu:
        asr = asr_cls(api_key=KEY, base_url=emu.base_url, **STALL, **kw)
        if result_queue is not None:
            asr.result_queue = result_queue
        with trio.fail_after(40):
            results = await stream_through(asr, script.audio, busy=busy, markers=markers)
        assert faults is None or emu.faults.injected, "no fault was injected"
        return results, emu


@pytest.mark.parametrize("stall_at", [3.0, pytest.param(5.0, marks=pytest.mark.slow),
                                      pytest.param(8.0, marks=pytest.mark.slow)])  # after the 1st, 2nd, 3rd final
async def test_a_stalled_qwen3_asr_session_is_resumed_without_an_utterance_twice(stall_at: float) -> None:
    script = noisy_tone_script(4)
    clean, _ = await _emulated(script, None)
    assert [r.text for r in finals(clean)] == script.order
    faulty, emu = await _emulated(script, f"stall=1@{stall_at}")
    assert emu.stats["rt_connections"] >= 2, "no reconnect"
    assert [r.text for r in finals(faulty)] == script.order  # before: a copy of a sentence at the resume point
    assert [r.utterance_id for r in finals(faulty)] == [r.utterance_id for r in finals(clean)]
    for a, b in zip(finals(clean), finals(faulty), strict=True):
        assert b.end == pytest.approx(a.end, abs=0.1)
    # partials too carry the clean run's numbers, and none belongs to a dropped repeat
    assert {r.utterance_id for r in faulty} == {r.utterance_id for r in clean}


@pytest.mark.slow  # over a second
async def test_a_stalled_omni_session_answering_with_responses_is_resumed_without_an_utterance_twice() -> None:
    """transcript_source="response" (the default) in manual mode (the default): a final is the
    model's response to a committed utterance, and covers the audio up to that commit. The
    resumed session re-sends the audio after it, no lead-in: the commits delimit utterances."""
    script = noisy_tone_script(4)
    markers = tone_markers(script.audio)
    assert len(markers) == len(script.order)
    kw = dict(asr_cls=OmniRealtimeASR, markers=markers)
    clean, _ = await _emulated(script, None, **kw)
    assert [r.text for r in finals(clean)] == script.order
    faulty, emu = await _emulated(script, "stall=1@3", **kw)
    assert emu.stats["rt_connections"] >= 2, "no reconnect"
    assert [r.text for r in finals(faulty)] == script.order
    assert [r.utterance_id for r in finals(faulty)] == [r.utterance_id for r in finals(clean)]


def tone_markers(pcm: bytes) -> list[tuple[float, float]]:
    """The session's own endpointing for manual mode: (start, end + 0.3 s) of each loud stretch."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)  # 10 ms frames
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 500
    edges = np.flatnonzero(np.diff(loud.astype(np.int8))) + 1
    return [(a / 100, b / 100 + 0.3) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@pytest.mark.slow  # over a second
async def test_a_final_handed_over_when_the_connection_fails_is_not_lost() -> None:
    """The caller is busy with the first utterance's last partial when its final comes (a result
    queue of 0: every hand-over waits for the reader), and the server stalls meanwhile: the
    connection fails with the final still in hand. It must come on the next session (before: it
    counted as delivered, its audio was forgotten, and the sentence was lost)."""
    script = noisy_tone_script(4)

    async def busy(r: TranscriptResult) -> None:
        if not r.is_final and r.utterance_id == 1 and len(r.text.split()) == 4:  # its last partial
            await trio.sleep(1.0)

    got, emu = await _emulated(script, "stall=1@3", busy=busy, result_queue=0)
    assert emu.stats["rt_connections"] >= 2, "no reconnect"
    assert [r.text for r in finals(got)] == script.order
    assert [r.utterance_id for r in finals(got)] == [1, 2, 3, 4]


# -- a scripted server, to say exactly when what is answered

WORDS = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RATE = 16000


def toy_audio(layout: list[tuple[float, float, int]], total_s: float) -> bytes:
    """Silence with "words": (start s, end s, word number) — PCM of that constant value."""
    pcm = np.zeros(int(total_s * RATE), np.int16)
    for a, b, w in layout:
        pcm[int(a * RATE):int(b * RATE)] = 1000 * w
    return pcm.tobytes()


class _ToyServer:
    """One realtime session with a VAD over 10 ms frames: a frame is speech when not silent, its
    word the sample value; an utterance ends after ``silence_ms`` of silence (speech_stopped at the
    end of its last speech frame, then committed and completed with its words). ``session.finish``
    closes an utterance under way without speech_stopped, as the service does. Faults: ``lose_at``
    (ms heard: the connection is lost), ``hold`` (item numbers whose ``completed`` waits until
    ``session.finish``), ``deaf_after_finish`` (no session.finished, no pongs). In manual mode
    (no turn detection) there is no VAD: a commit makes the words since the last one an item."""

    def __init__(self, *, lose_at: int | None = None, hold: tuple[int, ...] = (), silence_ms: int = 300,
                 deaf_after_finish: bool = False) -> None:
        self.proto = ServerRealtimeProtocol(get_realtime_model("qwen3-asr-flash-realtime"))
        self.send_q, self.recv_q = trio.open_memory_channel[str](1000)
        self.send_q.send_nowait(self.proto.send(SessionCreated(session=self.proto.session)))
        self.lose_at, self.hold, self.silence_ms = lose_at, hold, silence_ms
        self.deaf_after_finish = deaf_after_finish
        self.lost = False
        self.heard = bytearray()
        self.frames = 0  # 10 ms frames judged
        self.items = 0
        self.current: dict[str, Any] | None = None  # the utterance under way
        self.held: list[Any] = []
        self.silent_for = 0

    def _out(self, *events: Any) -> None:
        for e in events:
            self.send_q.send_nowait(self.proto.send(e))

    def _close_utterance(self, *, stopped: bool) -> None:
        u, self.current = self.current, None
        assert u is not None
        words = " ".join(WORDS[w] for w in u["words"])
        item = u["item"]
        if stopped:
            self._out(SpeechStopped(audio_end_ms=u["end"], item_id=item))
        self._out(AudioCommitted(item_id=item))
        done = TranscriptionCompleted(item_id=item, transcript=words, language="en")
        if u["n"] in self.hold:
            self.held.append(done)
        else:
            self._out(done)

    def _frame(self, values: np.ndarray) -> None:
        ms = self.frames * 10
        self.frames += 1
        word = int(np.abs(values).max()) // 1000
        if self.proto.config.manual:
            if word and (self.current is None or self.current["words"][-1:] != [word]):
                if self.current is None:
                    self.items += 1
                    self.current = {"item": f"item_{self.items}", "n": self.items, "words": [], "end": ms}
                self.current["words"].append(word)
            return
        if word:
            self.silent_for = 0
            if self.current is None:
                self.items += 1
                self.current = {"item": f"item_{self.items}", "n": self.items, "words": [], "end": ms}
                self._out(SpeechStarted(audio_start_ms=ms, item_id=self.current["item"]))
            if not self.current["words"] or self.current["words"][-1] != word:
                self.current["words"].append(word)
                self._out(TranscriptionText(item_id=self.current["item"], text=" ".join(
                    WORDS[w] for w in self.current["words"]), language="en"))
            self.current["end"] = ms + 10
        elif self.current is not None:
            self.silent_for += 10
            if self.silent_for >= self.silence_ms:
                self._close_utterance(stopped=True)

    # the transport
    async def send(self, text: str) -> None:
        if self.lost:
            raise ConnectionLostError("toy connection lost")
        event = self.proto.receive(text)
        if isinstance(event, SessionUpdate):
            self._out(SessionUpdated(session=self.proto.session))
        elif isinstance(event, AudioAppend):
            self.heard += event.audio
            pcm = np.frombuffer(bytes(self.heard), np.int16)
            while (self.frames + 1) * 160 <= pcm.size:
                self._frame(pcm[self.frames * 160:(self.frames + 1) * 160])
                if self.lose_at is not None and self.frames * 10 >= self.lose_at:
                    self.lost = True
                    self.send_q.send_nowait("LOST")
                    return
        elif isinstance(event, AudioCommit) and self.current is not None:
            self._close_utterance(stopped=False)
        elif isinstance(event, SessionFinish):
            if self.current is not None:
                self._close_utterance(stopped=False)
            self._out(*self.held)
            if not self.deaf_after_finish:
                self._out(SessionFinished())

    async def receive(self) -> str:
        text = await self.recv_q.receive()
        if text == "LOST":
            raise ConnectionLostError("toy connection lost")
        return text

    async def ping(self) -> None:
        if self.deaf_after_finish and self.proto.phase.value == "finishing":
            await trio.sleep_forever()

    async def aclose(self) -> None:
        pass


def toy_connector(servers: list[_ToyServer]) -> tuple[Any, list[_ToyServer]]:
    opened: list[_ToyServer] = []

    @asynccontextmanager
    async def connect(model: str) -> AsyncIterator[_ToyServer]:
        opened.append(servers[len(opened)] if len(opened) < len(servers) else _ToyServer())
        yield opened[-1]

    return connect, opened


async def _toy_run(audio: bytes, servers: list[_ToyServer], *, markers: list[tuple[float, float]] | None = None,
                   **kw: Any) -> tuple[list[TranscriptResult], list[Any]]:
    connect, opened = toy_connector(servers)
    asr = Qwen3ASRRealtime(connector=connect, retry=RETRY,
                           timeouts=Timeouts(ping_interval=0.05, ping_timeout=0.2, start=5), **kw)
    with trio.fail_after(20):
        results = await stream_through(asr, audio, pace=0.001, markers=markers)
    return results, opened


LAYOUT = [(0.5, 0.9, 1), (0.9, 1.3, 2), (2.2, 2.6, 3), (3.5, 3.8, 4), (3.8, 4.2, 5), (5.0, 5.4, 6)]


async def test_the_toy_server_gives_each_utterance_once_without_faults() -> None:
    results, opened = await _toy_run(toy_audio(LAYOUT, 6.5), [_ToyServer()])
    assert len(opened) == 1
    assert [(r.text, r.utterance_id) for r in finals(results)] == [
        ("one two", 1), ("three", 2), ("four five", 3), ("six", 4)]


async def test_an_earlier_utterance_finished_after_a_later_one_is_not_lost_on_a_reconnect() -> None:
    """The server sends the 2nd utterance's ``completed`` before the 1st one's, then the
    connection is lost before the 1st one's comes. Before: the 2nd final counted all audio before
    its end as covered, and "one two" was never heard again (lost)."""
    results, opened = await _toy_run(toy_audio(LAYOUT, 6.5), [_ToyServer(hold=(1,), lose_at=3000)])
    assert len(opened) == 2
    got = [(r.text, r.utterance_id) for r in finals(results)]
    assert sorted(got) == [("four five", 3), ("one two", 1), ("six", 4), ("three", 2)]
    assert got[0] == ("three", 2)  # as the server sent it
    assert {r.utterance_id for r in results if r.text.startswith("one")} == {1}


async def test_in_manual_mode_an_earlier_commit_finished_after_a_later_one_is_not_lost() -> None:
    """The same with the session's own endpointing: each marker commits an utterance."""
    markers = [(0.5, 1.6), (2.2, 2.9), (3.5, 4.5), (5.0, 5.7)]
    results, opened = await _toy_run(toy_audio(LAYOUT, 6.5), [_ToyServer(hold=(1,), lose_at=3200)],
                                     mode="manual", markers=markers)
    assert len(opened) == 2
    got = [(r.text, r.utterance_id) for r in finals(results)]
    assert got[0] == ("three", 2)
    assert sorted(got) == [("four five", 3), ("one two", 1), ("six", 4), ("three", 2)]
    assert [r.start for r in finals(results)][1:] == [0.5, 3.5, 5.0]


async def test_a_resumed_session_that_runs_the_tail_into_new_speech_keeps_only_the_new_words() -> None:
    """The first session ends "three" after 0.6 s of silence and is lost in the pause after it; the
    resumed one, whose server waits 0.9 s, hears "three" again in the lead-in and runs it on into
    "four five" as one utterance. The caller gets "four five", numbered and timed as new speech."""
    layout = [(0.5, 1.3, 1), (2.2, 2.6, 3), (3.3, 3.8, 4), (3.8, 4.2, 5)]
    servers = [_ToyServer(lose_at=3500, silence_ms=600), _ToyServer(silence_ms=900)]
    results, opened = await _toy_run(toy_audio(layout, 5.5), servers)
    assert len(opened) == 2
    assert [(r.text, r.utterance_id) for r in finals(results)] == [("one", 1), ("three", 2), ("four five", 3)]
    last = finals(results)[-1]
    assert last.start is not None and last.start >= 2.6 - 0.01
    assert not [r for r in results if r.utterance_id == 3 and r.text.startswith("three")]


async def test_a_final_without_speech_stopped_covers_its_audio() -> None:
    """At ``session.finish`` the server closes the utterance under way without ``speech_stopped``;
    then it stops answering (no session.finished, no pongs), and the stream reconnects. Before:
    that final covered nothing, its audio was sent again and "five six" came twice."""
    layout = [(0.5, 1.3, 1), (2.2, 2.6, 3), (4.0, 4.6, 5), (4.6, 5.0, 6)]
    audio = toy_audio(layout, 5.0)  # the stream ends in the middle of speech
    results, opened = await _toy_run(audio, [_ToyServer(deaf_after_finish=True)])
    assert len(opened) == 2, "the silent server was left and the stream resumed"
    assert [(r.text, r.utterance_id) for r in finals(results)] == [("one", 1), ("three", 2), ("five six", 3)]


async def test_an_utterance_never_finished_holds_back_the_replay_at_most_30_seconds() -> None:
    """A server that never sends the first utterance's ``completed`` (while it finalises the later
    ones) must not make the stream keep, and re-send after a reconnect, everything since: past
    LATE_FINAL_S of later finals it is given up on."""
    layout = [(0.5 + 3 * k, 1.0 + 3 * k, 1 + k % 9) for k in range(15)]  # a word every 3 s, 45 s
    servers = [_ToyServer(hold=(1,), lose_at=44_000), _ToyServer()]
    results, opened = await _toy_run(toy_audio(layout, 45.5), servers)
    assert len(opened) == 2
    replayed_s = len(opened[1].heard) / 2 / RATE
    assert replayed_s < 30, replayed_s  # without the limit: 45.5 s, the whole stream again
    texts = [r.text for r in finals(results)]
    assert len(texts) == len(set(r.utterance_id for r in finals(results))) == 14  # each once; "one" gave up


async def test_omni_with_server_vad_falls_back_to_the_input_transcription_when_a_response_is_cut() -> None:
    """transcript_source="response" with server VAD: the service interrupts the response in flight
    when the next utterance starts (interrupt_response), so a final would be cut short ("sentence");
    the built-in transcription of the same audio stands in for it."""
    script = noisy_tone_script(4)
    results, _ = await _emulated(script, None, asr_cls=OmniRealtimeASR, mode="server_vad")
    assert [r.text for r in finals(results)] == script.order
    assert [r.utterance_id for r in finals(results)] == sorted({r.utterance_id for r in finals(results)})
