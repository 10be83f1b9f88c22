"""The state of one emulated realtime connection, and what both of its halves need.

A connection (:class:`~voicekit_dashscope_emulator.realtime.RealtimeConnectionHandler`) is
:class:`ConnectionState` plus two halves: hearing the user
(:class:`~voicekit_dashscope_emulator.realtime_turns.TurnTaking`: audio in, VAD, transcripts,
barge-in) and answering (:class:`~voicekit_dashscope_emulator.realtime_replies.Replying`:
responses, tool calls, reply audio). This module holds the records they share, sending, and
the few judgments both make.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import attrs
import trio

from voicekit.audio.resample import StreamResampler
from voicekit.logging import get_logger
from voicekit.session.backchannel import TurnEvidence
from voicekit.vad.endpointer import Endpointer
from voicekit_dashscope.protocol.realtime import (
    UNSET,
    ErrorEvent,
    ErrorInfo,
    IdMaker,
    RealtimeModel,
    ServerRealtimeProtocol,
    TurnDetection,
)
from voicekit_dashscope_emulator.faults import FaultPlan
from voicekit_dashscope_emulator.omni import OmniScript, RealtimeSettings, ReplyVoice

log = get_logger("voicekit.dashscope.emulator")


@attrs.define
class Utterance:
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
class ActiveResponse:
    id: str
    scope: trio.CancelScope
    done: trio.Event
    item_id: str | None = None
    cancel_reason: str | None = None


@attrs.define
class HistoryItem:
    id: str
    role: str
    text: str
    kind: str = "message"
    status: str = "completed"
    word_ms: list[tuple[int, str]] = attrs.field(factory=list)  # assistant: (start ms, word)
    answered: bool = False  # user: a response was made to it


class InjectedFault(Exception):
    pass


class ConnectionState:
    """What one realtime connection knows, and how it sends."""

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
        self.utterances: deque[Utterance] = deque()
        self.current: Utterance | None = None
        self.last_item_id: str | None = None
        self.history: list[HistoryItem] = []
        self.response: ActiveResponse | None = None
        self.reply_index = 0
        self.pending_tool_outputs: list[str] = []
        self.nursery: trio.Nursery | None = None
        self.stream: Any = None
        self.finishing = False
        self.closed = trio.Event()
        self._engine_t = 0.0
        self.speaking_until = 0.0  # when the reply audio sent so far ends, played in real time

    async def send(self, *events: Any) -> None:
        """Send events back to back (nothing else is interleaved between them)."""
        async with self._send_lock:
            for event in events:
                await self.ws.send(self.proto.send(event))
                name = type(event).__name__
                self.stats[f"rt_{name}"] = self.stats.get(f"rt_{name}", 0) + 1

    async def error(self, message: str, *, code: str, param: str | None = None, event_id: str | None = None) -> None:
        await self.send(ErrorEvent(error=ErrorInfo("invalid_request_error", code, message, param, event_id)))

    def _turn_detection(self) -> TurnDetection | None:
        td = self.proto.config.turn_detection
        if td is UNSET:
            return TurnDetection("server_vad", self.model.default_threshold, self.model.default_silence_ms)
        return td

    def _language(self) -> str | None:
        tr = self.proto.config.transcription
        if tr is not None and tr is not UNSET and tr.language:
            language: str = tr.language
            return language
        return "en"

    def _semantic(self) -> bool:
        td = self._turn_detection()
        return td is not None and td.type == "semantic_vad"

    def _replying(self) -> bool:
        """A response is being generated, or its audio is still playing at the client (real time)."""
        return self.response is not None or trio.current_time() < self.speaking_until

    async def _cancel_response(self, reason: str) -> None:
        resp = self.response
        if resp is None:
            return
        resp.cancel_reason = "turn_detected" if reason == "speech_started" else "client_cancelled"
        self.stats["rt_responses_cancelled"] = self.stats.get("rt_responses_cancelled", 0) + 1
        resp.scope.cancel()
        await resp.done.wait()

    if TYPE_CHECKING:  # provided by the halves (Replying, TurnTaking)
        async def _start_response(self, *, transcript: str | None = None,
                                  tool_output: str | None = None) -> None: ...
