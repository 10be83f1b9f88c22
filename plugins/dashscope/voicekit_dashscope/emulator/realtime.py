"""The emulated realtime endpoint (``/api-ws/v1/realtime?model=...``): Qwen3-ASR and Qwen-Omni.

Per connection it runs :class:`~voicekit_dashscope.protocol.realtime.ServerRealtimeProtocol`:

* ``session.created`` on connect, ``session.updated`` (full effective config) or an ``error``
  naming the parameter for every ``session.update``;
* server VAD on the incoming audio (voicekit's WebRTC VAD + endpointer; ``silence_duration_ms``
  is the end-of-turn silence), or manual commits when ``turn_detection`` is ``null``;
* user transcripts from the local engine (the ``moonshine`` plugin, or scripted fixtures),
  as ``...transcription.text`` (Qwen3-ASR) / ``...transcription.delta`` (Omni) partials and
  ``...transcription.completed`` finals, in the documented order;
* Omni replies from an :class:`OmniScript` — scripted text spoken by a :class:`ToneVoice`
  (deterministic, for tests) or :class:`EspeakVoice` (espeak-ng resampled to the output rate),
  streamed as ``response.audio.delta`` at real-time pace with the transcript word by word;
* barge-in: with ``server_vad`` a new ``speech_started`` during a reply cancels it at once; with
  ``semantic_vad`` a sound during a reply only interrupts once it is judged a real turn on
  stable evidence (:class:`voicekit.session.backchannel.TurnEvidence`): ``semantic_stable_partials``
  partials in a row of at least ``semantic_min_words`` words that are not a backchannel, after
  ``semantic_min_speech_s`` of voiced speech; or such a final transcript; or more than
  ``backchannel_max_s`` of voiced speech. A backchannel ("uh-huh", "嗯", "はい") leaves the reply
  playing, whatever its first garbled partial was. Whether ``speech_started`` is held back or
  sent for a backchannel is a setting, because the service does not document it;
* tool calls: an :class:`OmniScript` rule makes the model call a named tool when the user's
  transcript contains a keyword; the ``function_call_output`` the client returns is spoken by
  the next response;
* the 120-minute session cap (a setting), ``session.finish`` accepted or refused (a setting,
  since one report says the qwen3.5 models refuse it), cancelled responses reported with status
  ``cancelled`` or ``incomplete`` (a setting).

:func:`connect_in_memory` runs a connection over in-memory channels instead of a socket, so
tests can drive the emulator under trio's virtual clock.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import parse_qs

import attrs
import numpy as np
import trio

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.errors import ConfigError
from voicekit.logging import get_logger
from voicekit.session.backchannel import TurnEvidence
from voicekit.vad.endpointer import Endpointer, EndpointerConfig, SpeechEnd, SpeechStart
from voicekit_dashscope.emulator.faults import FaultPlan
from voicekit_dashscope.emulator.http import WebSocketClosed
from voicekit_dashscope.protocol.realtime import (
    MODELS,
    UNSET,
    AudioAppend,
    AudioClear,
    AudioCleared,
    AudioCommit,
    AudioCommitted,
    AudioDelta,
    AudioDone,
    AudioTranscriptDelta,
    AudioTranscriptDone,
    ContentPartAdded,
    ContentPartDone,
    ErrorEvent,
    ErrorInfo,
    FunctionArgumentsDelta,
    FunctionArgumentsDone,
    IdMaker,
    ItemCreate,
    ItemCreated,
    ItemTruncate,
    OutputItemAdded,
    OutputItemDone,
    RealtimeModel,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ServerRealtimeProtocol,
    SessionCreated,
    SessionFinish,
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TextDone,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionText,
    TurnDetection,
    Violation,
)
from voicekit_dashscope.regions import emulator_refuses

log = get_logger("voicekit.dashscope.emulator")
ENGINE_RATE = 16000


# ============================================================================ settings and scripts


@attrs.frozen
class RealtimeSettings:
    """How the emulated realtime service behaves where the documentation is silent or unsure."""

    session_limit_s: float | None = None  # None: the model's documented limit (120 min for Omni)
    vad: str = "webrtc"  # or "energy" (exact on synthetic audio)
    vad_mode: int = 2
    start_ms: int = 90  # voiced audio that starts speech
    pre_roll_ms: int = 300
    session_finish: str = "finished"  # or "error": answer session.finish with "invalid event type"
    cancelled_status: str = "cancelled"  # status of an interrupted response.done: or "incomplete"
    semantic_speech_started: str = "hold"  # "hold": no speech_started for a backchannel; or "emit"
    semantic_min_words: int = 2
    semantic_stable_partials: int = 2  # decisive partials in a row that make a real turn
    semantic_min_speech_s: float = 0.5  # voiced speech before partials may decide
    backchannel_max_s: float = 1.2  # voiced speech longer than this is a real turn
    accept_truncate: bool = False  # accept OpenAI's conversation.item.truncate (undocumented here)
    ack_item_create: bool = True  # answer conversation.item.create with conversation.item.created
    lock_format_after_audio: bool = True
    audio_chunk_ms: int = 100
    pace: float = 1.0  # 1.0: reply audio at real-time pace; 0: as fast as possible
    audio_lead_s: float = 1.0  # how far ahead of real time reply audio may be sent (generation is faster)
    transcript_timeout_s: float = 15.0

    def __attrs_post_init__(self) -> None:
        if self.vad not in ("webrtc", "energy"):
            raise ConfigError(f"realtime emulator vad must be 'webrtc' or 'energy', not {self.vad!r}")
        if self.session_finish not in ("finished", "error"):
            raise ConfigError("session_finish must be 'finished' or 'error'")
        if self.cancelled_status not in ("cancelled", "incomplete"):
            raise ConfigError("cancelled_status must be 'cancelled' or 'incomplete'")
        if self.semantic_speech_started not in ("hold", "emit"):
            raise ConfigError("semantic_speech_started must be 'hold' or 'emit'")


def _mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _tuple(value: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(value)


@attrs.frozen
class ToolRule:
    """When the user's transcript contains ``keyword`` (case-insensitive) and the session offers
    a tool named ``tool``, the model calls it with ``arguments``."""

    keyword: str
    tool: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)


@attrs.frozen
class OmniScript:
    """What the emulated Omni model answers.

    ``replies`` are used in order (then ``default_reply``); ``{transcript}`` is the user's words.
    After a tool call, the next response speaks ``after_tool`` with ``{output}`` = the tool's
    output. When the session is text-only and its instructions ask for a transcription, the
    model answers with the user's words verbatim (that is how the Omni ASR plugin uses it).
    """

    replies: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    default_reply: str = "You said: {transcript}."
    tool_rules: tuple[ToolRule, ...] = attrs.field(default=(), converter=_tuple)
    after_tool: str = "{output}"

    def reply(self, index: int, transcript: str) -> str:
        template = self.replies[index] if index < len(self.replies) else self.default_reply
        return template.replace("{transcript}", transcript.strip().rstrip(".!?。"))

    def tool_for(self, transcript: str, tools: Sequence[str]) -> ToolRule | None:
        low = transcript.lower()
        for rule in self.tool_rules:
            if rule.keyword.lower() in low and rule.tool in tools:
                return rule
        return None


class ReplyVoice(Protocol):
    async def render(self, text: str, rate: int) -> list[tuple[str, bytes]]:
        """The words of ``text`` with the PCM16 audio of each, at ``rate`` Hz."""
        ...


_WORDS = re.compile(r"\S+")


class ToneVoice:
    """Deterministic speech stand-in: each word is a tone of ``word_s`` seconds plus a short gap."""

    def __init__(self, word_s: float = 0.3, gap_s: float = 0.05, base_hz: float = 300.0,
                 amplitude: float = 0.3) -> None:
        self.word_s = word_s
        self.gap_s = gap_s
        self.base_hz = base_hz
        self.amplitude = amplitude

    async def render(self, text: str, rate: int) -> list[tuple[str, bytes]]:
        out = []
        for i, word in enumerate(_WORDS.findall(text)):
            n = round(self.word_s * rate)
            t = np.arange(n) / rate
            tone = np.sin(2 * np.pi * (self.base_hz + 40 * (i % 5)) * t) * self.amplitude
            gap = np.zeros(round(self.gap_s * rate))
            pcm = (np.concatenate([tone, gap]) * 32767).astype("<i2").tobytes()
            out.append((word, pcm))
        return out


class EspeakVoice:
    """Real synthesized speech: the core's espeak TTS, resampled to the output rate, with the
    audio divided between the words in proportion to their length."""

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175) -> None:
        from voicekit.plugins import load

        self.tts = load("tts", "espeak")(voice=voice, rate_wpm=rate_wpm)

    async def render(self, text: str, rate: int) -> list[tuple[str, bytes]]:
        words = _WORDS.findall(text)
        if not words:
            return []
        resampler: StreamResampler | None = None
        chunks: list[bytes] = []
        async for frame in self.tts.synthesize(text):
            if frame.sample_rate != rate:
                resampler = resampler or StreamResampler(frame.sample_rate, rate)
                out = resampler.process(frame)
                if out is not None:
                    chunks.append(out.pcm)
            else:
                chunks.append(frame.pcm)
        if resampler is not None and (tail := resampler.flush()) is not None:
            chunks.append(tail.pcm)
        audio = b"".join(chunks)
        total = len(audio) // 2
        weights = np.array([len(w) + 1 for w in words], float)
        bounds = np.round(np.concatenate([[0], np.cumsum(weights)]) / weights.sum() * total).astype(int)
        return [(w, audio[bounds[i] * 2: bounds[i + 1] * 2]) for i, w in enumerate(words)]


# ============================================================================ per-connection state


@attrs.define
class _Utterance:
    item_id: str
    start_ms: int
    voiced_at: float
    end_ms: int | None = None
    committed: bool = False
    held: bool = False  # semantic mode: a sound during a reply not yet judged
    announced: bool = False  # speech_started sent
    partial: str = ""
    ignored: bool = False
    voiced_s: float = 0.0  # voiced speech so far (first to latest voiced frame)
    evidence: TurnEvidence | None = None  # semantic mode: what was heard of a held sound


@attrs.define
class _Response:
    id: str
    scope: trio.CancelScope
    done: trio.Event
    item_id: str | None = None
    cancel_reason: str | None = None


@attrs.define
class _HistoryItem:
    id: str
    role: str
    text: str
    kind: str = "message"
    status: str = "completed"
    word_ms: list[tuple[int, str]] = attrs.field(factory=list)  # assistant: (start ms, word)
    answered: bool = False  # user: a response was made to it


class _Fault(Exception):
    pass


def _peek_type(frame: str | bytes) -> str:
    """The ``type`` of a client frame, as far as it can be read (for the session record)."""
    try:
        t = json.loads(frame).get("type") if isinstance(frame, str) else None
    except (ValueError, AttributeError, RecursionError):
        t = None
    return t if isinstance(t, str) else "<malformed>"


class RealtimeConnectionHandler:
    """Serves one realtime WebSocket connection."""

    def __init__(self, ws: Any, *, model: RealtimeModel, engine: Any, settings: RealtimeSettings,
                 script: OmniScript, voice: ReplyVoice, faults: FaultPlan, stats: dict[str, int],
                 record: dict[str, Any]) -> None:
        self.ws = ws
        self.model = model
        self.engine = engine
        self.settings = settings
        self.script = script
        self.voice = voice
        self.faults = faults
        self.stats = stats
        self.record = record
        self.ids = IdMaker()
        self.proto = ServerRealtimeProtocol(model, ids=self.ids, accept_truncate=settings.accept_truncate,
                                            session_finish=settings.session_finish == "finished",
                                            lock_format_after_audio=settings.lock_format_after_audio)
        self._send_lock = trio.Lock()
        self.input_rate = 16000
        self.samples_in = 0  # input samples (at input_rate) received
        self.resampler: StreamResampler | None = None
        self.endpointer: Endpointer | None = None
        self.carry = b""
        self.manual_audio: list[bytes] = []
        self.utterances: deque[_Utterance] = deque()
        self.current: _Utterance | None = None
        self.last_item_id: str | None = None
        self.history: list[_HistoryItem] = []
        self.response: _Response | None = None
        self.reply_index = 0
        self.pending_tool_outputs: list[str] = []
        self.nursery: trio.Nursery | None = None
        self.stream: Any = None
        self.finishing = False
        self.closed = trio.Event()
        self._engine_t = 0.0
        self.speaking_until = 0.0  # when the reply audio sent so far ends, played in real time

    # -- sending

    async def send(self, *events: Any) -> None:
        """Send events back to back (nothing else is interleaved between them)."""
        async with self._send_lock:
            for event in events:
                await self.ws.send(self.proto.send(event))
                name = type(event).__name__
                self.stats[f"rt_{name}"] = self.stats.get(f"rt_{name}", 0) + 1

    async def error(self, message: str, *, code: str, param: str | None = None, event_id: str | None = None) -> None:
        await self.send(ErrorEvent(error=ErrorInfo("invalid_request_error", code, message, param, event_id)))

    # -- lifecycle

    async def run(self) -> None:
        await self.ws.accept()
        self.stats["rt_connections"] = self.stats.get("rt_connections", 0) + 1
        limit = self.settings.session_limit_s or self.model.session_limit_s
        try:
            await self.send(SessionCreated(session=self.proto.session))
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if limit:
                    nursery.start_soon(self._session_cap, limit)
                await self._receive_loop()
                nursery.cancel_scope.cancel()
        except* WebSocketClosed:
            pass
        except* _Fault:
            pass
        finally:
            self.closed.set()

    async def _session_cap(self, limit: float) -> None:
        await trio.sleep(limit)
        self.stats["rt_session_cap"] = self.stats.get("rt_session_cap", 0) + 1
        log.info("emulator_realtime_session_cap", model=self.model.name, seconds=limit)
        await self.ws.close(1000, "session duration limit reached")
        raise WebSocketClosed(1000, "session duration limit reached")

    async def _receive_loop(self) -> None:
        while True:
            frame = await self.ws.receive()
            event = self.proto.receive(frame)
            if isinstance(event, Violation):
                self.stats["rt_errors"] = self.stats.get("rt_errors", 0) + 1
                self.record.setdefault("client_events", []).append(_peek_type(frame))
                self.record.setdefault("refused", []).append(event.reply.error.code)
                await self.send(event.reply)
                continue
            self.record.setdefault("client_events", []).append(event.TYPE)
            match event:
                case SessionUpdate():
                    await self._session_update(event)
                case AudioAppend():
                    await self._audio(event.audio)
                case AudioCommit():
                    await self._commit()
                case AudioClear():
                    self.manual_audio.clear()
                    await self.send(AudioCleared())
                case ResponseCreate():
                    await self._start_response(tool_output=self._take_tool_output())
                case ResponseCancel():
                    await self._cancel_response("client")
                case ItemCreate():
                    await self._item_create(event)
                case ItemTruncate():
                    self._truncate(event)
                case SessionFinish():
                    await self._finish()
                    return

    # -- session

    async def _session_update(self, event: SessionUpdate) -> None:
        cfg = self.proto.config
        self.record["instructions"] = cfg.instructions
        self.record.setdefault("updates", []).append(event.session.to_json())
        self.input_rate = cfg.input_rate(self.model)
        await self.send(SessionUpdated(session=self.proto.session))

    def _turn_detection(self) -> TurnDetection | None:
        td = self.proto.config.turn_detection
        if td is UNSET:
            return TurnDetection("server_vad", self.model.default_threshold, self.model.default_silence_ms)
        return td

    def _make_endpointer(self) -> Endpointer:
        td = self._turn_detection()
        silence = (td.silence_duration_ms if td is not None and td.silence_duration_ms else
                   self.model.default_silence_ms)
        if self.settings.vad == "energy":
            from voicekit.testing.scripted import EnergyVAD

            vad: Any = EnergyVAD(ENGINE_RATE, 20)
        else:
            from voicekit.vad.webrtc import WebRTCVAD

            vad = WebRTCVAD(ENGINE_RATE, 30, self.settings.vad_mode)
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

    # -- audio in

    async def _audio(self, data: bytes) -> None:
        data = self.carry + data
        cut = len(data) // 2 * 2
        data, self.carry = data[:cut], data[cut:]
        if not data:
            return
        frame = AudioFrame(data, self.input_rate, 1, self.samples_in / self.input_rate)
        self.samples_in += frame.samples
        for fault in self.faults.advance(frame.duration):
            await self._fault(fault.kind, fault.arg)
        if self.input_rate != ENGINE_RATE:
            self.resampler = self.resampler or StreamResampler(self.input_rate, ENGINE_RATE)
            out = self.resampler.process(frame)
            if out is None:
                return
            frame = out
        if self._turn_detection() is None:
            self.manual_audio.append(frame.pcm)
            return
        if self.endpointer is None:
            self.endpointer = self._make_endpointer()
        stream = await self._open_stream()
        for item in list(self.endpointer.push(frame)):
            if isinstance(item, SpeechStart):
                await self._speech_start(stream, item)
            elif isinstance(item, SpeechEnd):
                await self._speech_end(stream, item)
            else:
                await stream.send_audio(item)
                u = self.current
                if u is not None:
                    u.voiced_s = max(u.voiced_s, min(item.end, self.endpointer.last_voiced_end) - u.voiced_at)
                await self._judge_duration()

    async def _fault(self, kind: str, arg: str | None) -> None:
        self.stats[f"rt_fault_{kind}"] = self.stats.get(f"rt_fault_{kind}", 0) + 1
        if kind == "malformed":
            async with self._send_lock:
                await self.ws.send('{"type": "response.audio.delta", "delta": ')
            return
        if kind == "slow":
            await trio.sleep(float(arg or 1.0))
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
        raise _Fault(kind)

    def _semantic(self) -> bool:
        td = self._turn_detection()
        return td is not None and td.type == "semantic_vad"

    def _replying(self) -> bool:
        """A response is being generated, or its audio is still playing at the client (real time)."""
        return self.response is not None or trio.current_time() < self.speaking_until

    async def _speech_start(self, stream: Any, item: SpeechStart) -> None:
        u = _Utterance(self.ids("item"), round(item.t * 1000), item.voiced_at)
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

    async def _announce(self, u: _Utterance) -> None:
        if not u.announced:
            u.announced = True
            await self.send(SpeechStarted(audio_start_ms=u.start_ms, item_id=u.item_id))

    async def _interrupt(self, u: _Utterance, why: str) -> None:
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

    async def _stop_and_commit(self, u: _Utterance, *, stopped: bool = True) -> None:
        first = [SpeechStopped(audio_end_ms=u.end_ms, item_id=u.item_id)] if stopped and u.end_ms is not None else []
        await self._commit_item(u, first)

    async def _commit_item(self, u: _Utterance, first: list[Any] | None = None) -> None:
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
        u = _Utterance(self.ids("item"), round(start * 1000), start)
        self.utterances.append(u)
        await self._commit_item(u)
        await stream.speech_started(start)
        frame = AudioFrame(audio, ENGINE_RATE, 1, start)
        for piece in frame.split(ENGINE_RATE // 10):
            await stream.send_audio(piece)
        self._engine_t = start + frame.duration
        await stream.speech_ended(self._engine_t)

    # -- transcripts

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

    async def _partial(self, u: _Utterance, r: TranscriptResult, cls: type[TranscriptionText]) -> None:
        text = r.text.strip()
        if not text or u.ignored:
            return
        u.partial = text
        if u.held:
            # never on one partial: the first partials of a short sound are often garbage
            assert u.evidence is not None
            if u.evidence.partial(text) and u.voiced_s >= self.settings.semantic_min_speech_s:
                await self._interrupt(u, "words")
            else:
                return
        words = text.split()
        confirmed = " ".join(words[:-1])
        stash = (" " if confirmed else "") + words[-1]
        await self.send(cls(item_id=u.item_id, text=confirmed, stash=stash, language=r.language or self._language(),
                            emotion=r.emotion or ("neutral" if self.model.emotion else None)))

    def _language(self) -> str | None:
        tr = self.proto.config.transcription
        if tr is not None and tr is not UNSET and tr.language:
            return tr.language
        return "en"

    async def _final(self, u: _Utterance, r: TranscriptResult) -> None:
        text = r.text.strip()
        if u.held:
            assert u.evidence is not None
            if not u.evidence.final(text):  # a backchannel, a noise, or too short to be a request
                self.stats["rt_backchannels_ignored"] = self.stats.get("rt_backchannels_ignored", 0) + 1
                self.history.append(_HistoryItem(u.item_id, "user", text, status="ignored"))
                return
            await self._interrupt(u, "final")
            await self._stop_and_commit(u, stopped=self.settings.semantic_speech_started == "hold")
        if not u.committed:  # ended by session.finish
            await self._commit_item(u)
        self.history.append(_HistoryItem(u.item_id, "user", text))
        self.record.setdefault("user", []).append(text)
        await self.send(TranscriptionCompleted(item_id=u.item_id, transcript=text,
                                               language=r.language or self._language(),
                                               emotion=r.emotion or ("neutral" if self.model.emotion else None)))
        td = self._turn_detection()
        if self.model.is_omni and td is not None and td.create_response is not False and text:
            await self._start_response(transcript=text)

    # -- responses

    def _take_tool_output(self) -> str | None:
        if not self.pending_tool_outputs:
            return None
        out = " ".join(self.pending_tool_outputs)
        self.pending_tool_outputs.clear()
        return out

    async def _start_response(self, *, transcript: str | None = None, tool_output: str | None = None) -> None:
        if self.response is not None:
            await self._cancel_response("new_turn")
        resp = _Response(self.ids("resp"), trio.CancelScope(), trio.Event())
        self.response = resp
        assert self.nursery is not None
        await self.send(ResponseCreated(response=self._response_obj(resp, "in_progress", [])))
        self.nursery.start_soon(self._run_response, resp, transcript, tool_output)

    def _response_obj(self, resp: _Response, status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
        cfg = self.proto.session
        d: dict[str, Any] = {"id": resp.id, "object": "realtime.response", "conversation_id": "conv_emulated",
                             "status": status, "modalities": cfg.get("modalities") or ["text", "audio"],
                             "voice": cfg.get("voice"), "output_audio_format": "pcm", "output": output}
        if usage is not None:
            d["usage"] = usage
        if status == self.settings.cancelled_status and status != "completed":
            d["status_details"] = {"type": status, "reason": resp.cancel_reason or "client_cancelled"}
        return d

    async def _run_response(self, resp: _Response, transcript: str | None, tool_output: str | None) -> None:
        try:
            if transcript is None and tool_output is None:
                # response.create after a manual commit: answer the latest user turn once transcribed
                with trio.move_on_after(self.settings.transcript_timeout_s):
                    while any(u.committed for u in self.utterances):
                        await trio.sleep(0.01)
                # the oldest user turn not answered yet (one response per turn)
                turn = next((h for h in self.history if h.role == "user" and h.status == "completed"
                             and not h.answered), None)
                transcript = turn.text if turn is not None else ""
            for h in self.history:
                if h.role == "user" and (transcript is None or h.text == transcript) and not h.answered:
                    h.answered = True
                    break
            tools = [t.name for t in (self.proto.config.tools or ())]
            rule = self.script.tool_for(transcript, tools) if transcript else None
            if rule is not None:
                await self._tool_call(resp, rule)
            else:
                await self._speak(resp, transcript, tool_output)
        finally:
            if self.response is resp:
                self.response = None
            resp.done.set()

    async def _tool_call(self, resp: _Response, rule: ToolRule) -> None:
        item_id = self.ids("item")
        call_id = "call_" + self.ids("x")[2:18]
        args = json.dumps(dict(rule.arguments), ensure_ascii=False)
        item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "function_call",
                                "status": "in_progress", "call_id": call_id, "name": rule.tool, "arguments": ""}
        await self.send(OutputItemAdded(response_id=resp.id, item=item))
        for i in range(0, len(args), 16):
            await self.send(FunctionArgumentsDelta(response_id=resp.id, item_id=item_id, call_id=call_id,
                                                   delta=args[i:i + 16]))
        await self.send(FunctionArgumentsDone(response_id=resp.id, item_id=item_id, call_id=call_id,
                                              name=rule.tool, arguments=args))
        done_item = {**item, "status": "completed", "arguments": args}
        await self.send(OutputItemDone(response_id=resp.id, item=done_item))
        self.history.append(_HistoryItem(item_id, "assistant", f"{rule.tool}({args})", kind="function_call"))
        self.record.setdefault("tool_calls", []).append((rule.tool, dict(rule.arguments)))
        await self.send(ResponseDone(response=self._response_obj(resp, "completed", [done_item], self._usage(0))))

    def _usage(self, out_words: int) -> dict[str, Any]:
        return {"total_tokens": 100 + out_words, "input_tokens": 100, "output_tokens": out_words,
                "input_tokens_details": {"text_tokens": 0, "audio_tokens": 100},
                "output_tokens_details": {"text_tokens": out_words, "audio_tokens": 0}}

    def _reply_text(self, transcript: str | None, tool_output: str | None) -> str:
        cfg = self.proto.config
        if tool_output is not None:
            return self.script.after_tool.replace("{output}", tool_output)
        mods = tuple(sorted(cfg.modalities or ("audio", "text")))
        if mods == ("text",) and "transcri" in (cfg.instructions or "").lower():
            return transcript or ""
        text = self.script.reply(self.reply_index, transcript or "")
        self.reply_index += 1
        return text

    async def _speak(self, resp: _Response, transcript: str | None, tool_output: str | None) -> None:
        cfg = self.proto.config
        audio_out = "audio" in (cfg.modalities or ("text", "audio"))
        text = self._reply_text(transcript, tool_output)
        item_id = self.ids("item")
        resp.item_id = item_id
        item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "message",
                                "status": "in_progress", "role": "assistant", "content": []}
        hist = _HistoryItem(item_id, "assistant", "")
        self.history.append(hist)
        await self.send(OutputItemAdded(response_id=resp.id, item=item))
        await self.send(ItemCreated(item=item, previous_item_id=self.last_item_id))
        self.last_item_id = item_id
        part_type = "audio" if audio_out else "text"
        ids: dict[str, Any] = {"response_id": resp.id, "item_id": item_id}
        await self.send(ContentPartAdded(part={"type": part_type, "text": ""}, **ids))
        said: list[str] = []
        rate = cfg.output_rate(self.model)
        chunk = rate * self.settings.audio_chunk_ms // 1000 * 2
        sent_ms = 0.0
        began = trio.current_time()
        with resp.scope:
            if audio_out:
                for word, pcm in await self.voice.render(text, rate):
                    hist.word_ms.append((round(sent_ms), word))
                    said.append(word)
                    await self.send(AudioTranscriptDelta(delta=("" if len(said) == 1 else " ") + word, **ids))
                    for i in range(0, len(pcm), chunk):
                        piece = pcm[i:i + chunk]
                        await self.send(AudioDelta(delta=piece, **ids))
                        sent_ms += len(piece) / 2 / rate * 1000
                        if self.settings.pace:
                            self.speaking_until = began + sent_ms / 1000 * self.settings.pace
                        if self.settings.pace:
                            ahead = sent_ms / 1000 - self.settings.audio_lead_s
                            await trio.sleep_until(began + max(0.0, ahead) * self.settings.pace)
            else:
                for word in _WORDS.findall(text):
                    said.append(word)
                    await self.send(TextDelta(delta=("" if len(said) == 1 else " ") + word, **ids))
                    if self.settings.pace:
                        await trio.sleep(0.02 * self.settings.pace)
        cancelled = resp.scope.cancelled_caught
        if cancelled:
            self.speaking_until = 0.0
        status = self.settings.cancelled_status if cancelled else "completed"
        spoken = " ".join(said)
        hist.text = spoken
        hist.status = "completed" if not cancelled else status
        self.record.setdefault("assistant", []).append(spoken)
        with trio.CancelScope(shield=True):
            if audio_out:
                await self.send(AudioTranscriptDone(transcript=spoken, **ids))
                await self.send(AudioDone(**ids))
                part = {"type": "audio", "transcript": spoken}
            else:
                await self.send(TextDone(text=spoken, **ids))
                part = {"type": "text", "text": spoken}
            await self.send(ContentPartDone(part=part, **ids))
            done_item = {**item, "status": "completed" if not cancelled else "incomplete", "content": [part]}
            await self.send(OutputItemDone(response_id=resp.id, item=done_item))
            await self.send(ResponseDone(response=self._response_obj(resp, status, [done_item],
                                                                     self._usage(len(said)))))

    async def _cancel_response(self, reason: str) -> None:
        resp = self.response
        if resp is None:
            return
        resp.cancel_reason = "turn_detected" if reason == "speech_started" else "client_cancelled"
        self.stats["rt_responses_cancelled"] = self.stats.get("rt_responses_cancelled", 0) + 1
        resp.scope.cancel()
        await resp.done.wait()

    async def _item_create(self, event: ItemCreate) -> None:
        item = dict(event.item)
        raw_id = item.get("id")
        item_id = raw_id if isinstance(raw_id, str) else self.ids("item")
        if item.get("type") == "function_call_output":
            self.pending_tool_outputs.append(str(item.get("output", "")))
            self.history.append(_HistoryItem(item_id, "tool", str(item.get("output", "")), kind="function_call_output"))
            self.record.setdefault("tool_outputs", []).append(item.get("output"))
        else:
            self.history.append(_HistoryItem(item_id, str(item.get("role", "user")), json.dumps(item.get("content"))))
        if self.settings.ack_item_create:
            await self.send(ItemCreated(item={**item, "id": item_id}, previous_item_id=self.last_item_id))
            self.last_item_id = item_id

    def _truncate(self, event: ItemTruncate) -> None:
        for h in self.history:
            if h.id == event.item_id and h.role == "assistant":
                h.text = " ".join(w for ms, w in h.word_ms if ms < event.audio_end_ms)
                h.status = "truncated"
                self.record.setdefault("truncated", []).append(h.text)

    async def _finish(self) -> None:
        """session.finish: close an open utterance, send its transcript, then session.finished."""
        if self.response is not None:
            await self.response.done.wait()
        if self.stream is not None:
            if self.endpointer is not None:
                for item in list(self.endpointer.flush()):
                    if isinstance(item, SpeechEnd):
                        await self._speech_end(self.stream, item)
                    elif isinstance(item, AudioFrame):
                        await self.stream.send_audio(item)
            await self.stream.finish()
            with trio.move_on_after(self.settings.transcript_timeout_s):
                while self.utterances:
                    await trio.sleep(0.01)
        await self.send(SessionFinished())
        with trio.move_on_after(5):  # the client closes; wait a moment for it
            try:
                while True:
                    await self.ws.receive()
            except WebSocketClosed:
                pass


# ============================================================================ the service


class RealtimeService:
    region: str | None = None  # the region emulated (None: all); set by the emulator
    """The realtime endpoint of one emulator: settings, script, voice, and per-session records.

    ``sessions`` keeps, for each connection in order, what the emulator saw (client event types,
    the last instructions, every ``session.update``, user transcripts, what the assistant said,
    tool calls and outputs) — the test oracle for the client side.
    """

    def __init__(self, *, engine: Any, owner: Any = None, faults: FaultPlan | None = None,
                 stats: dict[str, int] | None = None, settings: RealtimeSettings | None = None,
                 script: OmniScript | None = None, voice: ReplyVoice | None = None) -> None:
        self.engine = engine
        self.owner = owner or (lambda header: header)
        self.faults = faults or FaultPlan()
        self.stats = stats if stats is not None else {}
        self.settings = settings or RealtimeSettings()
        self.script = script or OmniScript()
        self.voice: ReplyVoice = voice or ToneVoice()
        self.sessions: list[dict[str, Any]] = []
        self.handlers: list[RealtimeConnectionHandler] = []

    async def handle(self, ws: Any) -> None:
        """The WebSocket route handler (``ws`` is the emulator's :class:`ServerWebSocket`)."""
        query = parse_qs(ws.query)
        model_name = (query.get("model") or [""])[0]
        if self.owner(ws.headers.get("authorization")) is None:
            self.stats["unauthorized"] = self.stats.get("unauthorized", 0) + 1
            await ws.reject(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."})
            return
        model = MODELS.get(model_name)
        if model is None or emulator_refuses(model_name, self.region):
            await ws.reject(404 if model_name else 400, {
                "code": "ModelNotFound" if model_name else "InvalidParameter",
                "message": f"Model not exist: {model_name!r}" if model_name else "missing the model query parameter"})
            return
        record: dict[str, Any] = {"model": model.name}
        self.sessions.append(record)
        handler = RealtimeConnectionHandler(ws, model=model, engine=self.engine, settings=self.settings,
                                            script=self.script, voice=self.voice, faults=self.faults,
                                            stats=self.stats, record=record)
        self.handlers.append(handler)
        await handler.run()


# ============================================================================ in-memory transport


class MemoryServerSocket:
    """The server end of an in-memory WebSocket (the subset of ServerWebSocket the handler uses)."""

    def __init__(self, query: str, headers: Mapping[str, str], inbox: trio.MemoryReceiveChannel[str],
                 outbox: trio.MemorySendChannel[str]) -> None:
        self.query = query
        self.headers = dict(headers)
        self._in = inbox
        self._out = outbox
        self.closed = False
        self.close_code: int | None = None
        self.rejected: int | None = None

    async def accept(self) -> None:
        pass

    async def reject(self, status: int, body: dict[str, Any]) -> None:
        self.rejected = status
        self.closed = True
        await self._out.aclose()

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise WebSocketClosed(None, "already closed")
        try:
            await self._out.send(message if isinstance(message, str) else message.decode("latin-1"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
            raise WebSocketClosed(None, "peer gone") from None

    async def receive(self) -> str:
        try:
            return await self._in.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            self.closed = True
            raise WebSocketClosed(1000, "peer closed") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_code = code
        self.closed = True
        await self._out.aclose()

    async def abort(self) -> None:
        await self.close(1006, "aborted")

    async def black_hole(self) -> None:
        self.closed = True
        try:
            while True:
                await self._in.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            pass


class MemoryTransport:
    """The client end: ``send(text)``, ``receive() -> text``, ``aclose()``."""

    def __init__(self, outbox: trio.MemorySendChannel[str], inbox: trio.MemoryReceiveChannel[str]) -> None:
        self._out = outbox
        self._in = inbox

    async def send(self, text: str) -> None:
        from voicekit_dashscope.errors import ConnectionLostError

        try:
            await self._out.send(text)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionLostError("in-memory realtime connection closed") from None

    async def receive(self) -> str:
        from voicekit_dashscope.errors import ConnectionLostError

        try:
            return await self._in.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionLostError("in-memory realtime connection closed by the server") from None

    async def aclose(self) -> None:
        await self._out.aclose()
        await self._in.aclose()


@asynccontextmanager
async def connect_in_memory(service: RealtimeService, model: str, *, api_key: str = "sk-emulator-test",
                            buffer: int = 4096) -> AsyncIterator[MemoryTransport]:
    """A connection to ``service`` over memory channels, served by a task of this nursery."""
    c2s_send, c2s_recv = trio.open_memory_channel[str](buffer)
    s2c_send, s2c_recv = trio.open_memory_channel[str](buffer)
    server = MemoryServerSocket(f"model={model}", {"authorization": f"Bearer {api_key}"}, c2s_recv, s2c_send)
    transport = MemoryTransport(c2s_send, s2c_recv)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.handle, server)
        try:
            yield transport
        finally:
            await transport.aclose()
            with trio.move_on_after(2):
                await trio.sleep(0)
            nursery.cancel_scope.cancel()


def memory_connector(service: RealtimeService) -> Any:
    """A connector for :class:`~voicekit_dashscope.client.realtime.RealtimeConnection` that
    reaches ``service`` in memory (``connector(model)`` is an async context manager)."""

    def connector(model: str) -> Any:
        return connect_in_memory(service, model)

    return connector


def realtime_options(*, voice: str = "espeak", script_path: str | None = None, vad: str = "webrtc") -> dict[str, Any]:
    """The ``realtime=`` options of the emulator from command-line settings.

    ``voice`` is ``espeak`` (synthesized speech) or ``tone`` (deterministic tones); ``script_path``
    a JSON file ``{"replies": [...], "default_reply": "...", "after_tool": "...",
    "tool_rules": [{"keyword": "...", "tool": "...", "arguments": {...}}]}``.
    """
    script = OmniScript()
    if script_path:
        try:
            with open(script_path, encoding="utf-8") as f:
                data = json.load(f)
            rules = tuple(ToolRule(r["keyword"], r["tool"], r.get("arguments", {})) for r in data.get("tool_rules", ()))
            # keys left out keep OmniScript's defaults (a slotted attrs class has no class-level defaults to read)
            given = {k: data[k] for k in ("default_reply", "after_tool") if k in data}
            for k, v in given.items():
                if not isinstance(v, str):
                    raise TypeError(f"{k} must be a string, not {type(v).__name__}")
            replies = tuple(data.get("replies", ()))
            if not all(isinstance(r, str) for r in replies):
                raise TypeError("replies must be a list of strings")
            script = OmniScript(replies=replies, tool_rules=rules, **given)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot read the Omni script {script_path}: {exc} — expected a JSON object with "
                              "replies, default_reply, after_tool and tool_rules") from None
    if voice not in ("espeak", "tone"):
        raise ConfigError(f"the emulator's Omni voice must be 'espeak' or 'tone', not {voice!r}")
    return {"settings": RealtimeSettings(vad=vad), "script": script,
            "voice": EspeakVoice() if voice == "espeak" else ToneVoice()}
