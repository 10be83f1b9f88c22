"""Hearing the user on an emulated realtime connection: audio in (with injected faults), server
VAD and endpointing or manual commits, the engine stream, partial and final transcripts, and
barge-in (``server_vad`` at once; ``semantic_vad`` only once a held sound is judged a real turn).
"""

from __future__ import annotations

from typing import Any

import trio

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.logging import get_logger
from voicekit.session.backchannel import TurnEvidence
from voicekit.vad.endpointer import Endpointer, EndpointerConfig, SpeechEnd, SpeechStart
from voicekit_dashscope.protocol.realtime import (
    UNSET,
    AudioCommitted,
    ItemCreated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionText,
)
from voicekit_dashscope_emulator.realtime_state import ConnectionState, HistoryItem, InjectedFault, Utterance
from voicekit_dashscope_emulator.task import ENGINE_RATE, make_engine_vad

log = get_logger("voicekit.dashscope.emulator")


class TurnTaking(ConnectionState):
    """The listening half of a realtime connection."""

    def _make_endpointer(self) -> Endpointer:
        td = self._turn_detection()
        silence = (td.silence_duration_ms if td is not None and td.silence_duration_ms else
                   self.model.default_silence_ms)
        vad = make_engine_vad(self.settings.vad, self.settings.vad_mode)
        window = max(self.settings.start_ms, 150)
        return Endpointer(vad, EndpointerConfig(pre_roll_ms=self.settings.pre_roll_ms,
                                                start_ms=self.settings.start_ms, start_window_ms=window,
                                                end_silence_ms=silence))

    async def _open_stream(self) -> Any:
        """The engine stream of this connection, opened on first use.

        The stream is a context manager that may hold a nursery of its own (moonshine's does), so
        it is entered *and* exited by one task, :meth:`_hold_stream`, which lives in the
        connection's nursery: the stream closes when the connection does, properly nested.
        (Entering it here and exiting it from ``run``'s ``finally`` misnests the nurseries and
        kills the whole emulator.)
        """
        if self.stream is None:
            assert self.nursery is not None
            self.stream = await self.nursery.start(self._hold_stream)
        return self.stream

    async def _hold_stream(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        tr = self.proto.config.transcription
        language = tr.language if tr is not None and tr is not UNSET else None
        context = tr.corpus_text if tr is not None and tr is not UNSET else None
        config = ASRConfig(sample_rate=ENGINE_RATE, language=language,
                           context=context or self.proto.config.instructions)
        async with self.engine.open_stream(config) as stream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, stream)
            task_status.started(stream)
            await trio.sleep_forever()  # until the connection's nursery is cancelled

    async def _audio(self, data: bytes) -> None:
        frame = self._input_frame(data)
        if frame is None:
            return
        # the bytes and this connection: audio a resuming client re-sends (found again in what an
        # earlier connection received) does not move the fault clock, as on the task endpoint
        for fault in self.faults.advance(frame.duration, frame.pcm, self):
            await self._fault(fault.kind, fault.arg)
        engine_frame = self._to_engine_rate(frame)
        if engine_frame is None:
            return
        if self._turn_detection() is None:
            self.manual_audio.append(engine_frame.pcm)
            return
        await self._endpoint(engine_frame)

    def _input_frame(self, data: bytes) -> AudioFrame | None:
        """The whole 16-bit samples received (an odd byte waits for the next append), timed on the input."""
        data = self.carry + data
        cut = len(data) // 2 * 2
        data, self.carry = data[:cut], data[cut:]
        if not data:
            return None
        frame = AudioFrame(data, self.input_rate, 1, self.samples_in / self.input_rate)
        self.samples_in += frame.samples
        return frame

    def _to_engine_rate(self, frame: AudioFrame) -> AudioFrame | None:
        if self.input_rate == ENGINE_RATE:
            return frame
        self.resampler = self.resampler or StreamResampler(self.input_rate, ENGINE_RATE)
        return self.resampler.process(frame)

    async def _endpoint(self, frame: AudioFrame) -> None:
        """Server VAD: speech starts and ends, and the audio between them to the engine."""
        if self.endpointer is None:
            self.endpointer = self._make_endpointer()
        endpointer = self.endpointer
        stream = await self._open_stream()
        for item in list(endpointer.push(frame)):
            if isinstance(item, SpeechStart):
                await self._speech_start(stream, item)
            elif isinstance(item, SpeechEnd):
                await self._speech_end(stream, item)
            else:
                await self._voiced(stream, item, endpointer.last_voiced_end)

    async def _voiced(self, stream: Any, frame: AudioFrame, last_voiced_end: float) -> None:
        """Audio of an utterance: to the engine, and counted as voiced speech of the current one."""
        await stream.send_audio(frame)
        u = self.current
        if u is not None:
            u.voiced_s = max(u.voiced_s, min(frame.end, last_voiced_end) - u.voiced_at)
        await self._judge_duration()

    async def _fault(self, kind: str, arg: str | None) -> None:
        self.stats[f"rt_fault_{kind}"] = self.stats.get(f"rt_fault_{kind}", 0) + 1
        if kind == "malformed":
            async with self._send_lock:
                await self.ws.send('{"type": "response.audio.delta", "delta": ')
            return
        if kind in ("slow", "stall"):  # the reader stops a while (no pongs), then carries on
            await trio.sleep(float(arg or (1.0 if kind == "slow" else 5.0)))
            return
        if kind in ("idle", "task-failed"):
            await self.error("emulated server failure (injected fault)", code=arg or "InternalError")
            await self.ws.close(1011, "emulated failure")
        elif kind == "drop":
            await self.ws.black_hole()
        elif kind == "reset":
            await self.ws.abort()
        else:
            await self.ws.close(int(arg or 1011) if kind == "close" else 1011, "emulated close")
        raise InjectedFault(kind)

    async def _speech_start(self, stream: Any, item: SpeechStart) -> None:
        u = Utterance(self.ids("item"), round(item.t * 1000), item.voiced_at)
        self.current = u
        self.utterances.append(u)
        await stream.speech_started(item.t)
        if self._semantic() and self._replying():
            u.held = True
            u.evidence = TurnEvidence(self.settings.semantic_min_words, self.settings.semantic_stable_partials)
            if self.settings.semantic_speech_started == "emit":
                await self._announce(u)
            return
        await self._announce(u)
        td = self._turn_detection()
        if self.response is not None and (td is None or td.interrupt_response is not False):
            await self._cancel_response("speech_started")

    async def _announce(self, u: Utterance) -> None:
        if not u.announced:
            u.announced = True
            await self.send(SpeechStarted(audio_start_ms=u.start_ms, item_id=u.item_id))

    async def _interrupt(self, u: Utterance, why: str) -> None:
        """Semantic mode decided a held sound is a real turn: announce it and stop the reply."""
        if not u.held:
            return
        u.held = False
        self.stats["rt_semantic_interruptions"] = self.stats.get("rt_semantic_interruptions", 0) + 1
        log.debug("emulator_semantic_interrupt", why=why, item_id=u.item_id)
        await self._announce(u)
        await self._cancel_response("speech_started")

    async def _judge_duration(self) -> None:
        """Held speech that goes on (voiced, not counting the silence after it) is a real turn."""
        u = self.current
        if u is not None and u.held and u.voiced_s > self.settings.backchannel_max_s:
            await self._interrupt(u, "long")

    async def _speech_end(self, stream: Any, item: SpeechEnd) -> None:
        u = self.current
        self.current = None
        if u is None:
            return
        u.end_ms = round(item.t * 1000)
        if not u.held:
            await self._stop_and_commit(u)
        elif self.settings.semantic_speech_started == "emit":
            await self.send(SpeechStopped(audio_end_ms=u.end_ms, item_id=u.item_id))
        await stream.speech_ended(item.t)

    async def _stop_and_commit(self, u: Utterance, *, stopped: bool = True) -> None:
        first = [SpeechStopped(audio_end_ms=u.end_ms, item_id=u.item_id)] if stopped and u.end_ms is not None else []
        await self._commit_item(u, first)

    async def _commit_item(self, u: Utterance, first: list[Any] | None = None) -> None:
        u.committed = True
        previous, self.last_item_id = self.last_item_id, u.item_id
        await self.send(*(first or []), AudioCommitted(item_id=u.item_id, previous_item_id=previous),
                        ItemCreated(previous_item_id=previous, item={
                            "id": u.item_id, "object": "realtime.item", "type": "message",
                            "status": "completed" if not self.model.is_omni else "in_progress", "role": "user",
                            "content": [{"type": "input_audio", "transcript": None}]}))

    async def _commit(self) -> None:
        """Manual mode: the buffered audio is one utterance."""
        audio = b"".join(self.manual_audio)
        self.manual_audio.clear()
        stream = await self._open_stream()
        start = self._engine_t
        u = Utterance(self.ids("item"), round(start * 1000), start)
        self.utterances.append(u)
        await self._commit_item(u)
        await stream.speech_started(start)
        frame = AudioFrame(audio, ENGINE_RATE, 1, start)
        for piece in frame.split(ENGINE_RATE // 10):
            await stream.send_audio(piece)
        self._engine_t = start + frame.duration
        await stream.speech_ended(self._engine_t)

    async def _pump(self, stream: Any) -> None:
        partial_cls = TranscriptionText if not self.model.is_omni else TranscriptionDelta
        async for r in stream:
            if not self.utterances:
                continue
            u = self.utterances[0]
            if not r.is_final:
                await self._partial(u, r, partial_cls)
                continue
            self.utterances.popleft()
            await self._final(u, r)

    async def _partial(self, u: Utterance, r: TranscriptResult, cls: type[TranscriptionText]) -> None:
        text = r.text.strip()
        if not text or u.ignored:
            return
        u.partial = text
        if u.held and not await self._heard_words(u, text):
            return
        words = text.split()
        confirmed = " ".join(words[:-1])
        stash = (" " if confirmed else "") + words[-1]
        await self.send(cls(item_id=u.item_id, text=confirmed, stash=stash, language=r.language or self._language(),
                            emotion=self._emotion(r)))

    def _emotion(self, r: TranscriptResult) -> str | None:
        return r.emotion or ("neutral" if self.model.emotion else None)

    async def _heard_words(self, u: Utterance, text: str) -> bool:
        """Semantic mode: whether a held sound's partial makes it a real turn (then the reply stops)."""
        # never on one partial: the first partials of a short sound are often garbage
        assert u.evidence is not None
        if not (u.evidence.partial(text) and u.voiced_s >= self.settings.semantic_min_speech_s):
            return False
        await self._interrupt(u, "words")
        return True

    async def _final(self, u: Utterance, r: TranscriptResult) -> None:
        text = r.text.strip()
        if u.held and not await self._heard_turn(u, text):
            return
        if not u.committed:  # ended by session.finish
            await self._commit_item(u)
        self.history.append(HistoryItem(u.item_id, "user", text))
        self.record.setdefault("user", []).append(text)
        await self.send(TranscriptionCompleted(item_id=u.item_id, transcript=text,
                                               language=r.language or self._language(), emotion=self._emotion(r)))
        if text and self._answers_turns():
            await self._start_response(transcript=text)

    async def _heard_turn(self, u: Utterance, text: str) -> bool:
        """Semantic mode: whether a held sound's final is a real turn (then the reply stops and it is
        committed); a backchannel, a noise, or too short a request is recorded as ignored."""
        assert u.evidence is not None
        if not u.evidence.final(text):
            self.stats["rt_backchannels_ignored"] = self.stats.get("rt_backchannels_ignored", 0) + 1
            self.history.append(HistoryItem(u.item_id, "user", text, status="ignored"))
            return False
        await self._interrupt(u, "final")
        await self._stop_and_commit(u, stopped=self.settings.semantic_speech_started == "hold")
        return True

    def _answers_turns(self) -> bool:
        """An Omni model answers each user turn itself unless ``create_response`` is false or turns are manual."""
        td = self._turn_detection()
        return self.model.is_omni and td is not None and td.create_response is not False
