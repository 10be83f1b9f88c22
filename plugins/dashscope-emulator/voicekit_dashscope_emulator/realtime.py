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

:func:`voicekit_dashscope_emulator.testing.connect_in_memory` runs a connection over in-memory
channels instead of a socket, so tests can drive the emulator under trio's virtual clock.

The connection is split by concern: :mod:`.realtime_state` (records, sending),
:mod:`.realtime_turns` (hearing the user), :mod:`.realtime_replies` (answering), :mod:`.omni`
(settings, script, voices); this module runs the connection and routes the client's events.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import trio

from voicekit.audio.frame import AudioFrame
from voicekit.logging import get_logger
from voicekit.vad.endpointer import SpeechEnd
from voicekit_dashscope.protocol.realtime import (
    MODELS,
    AudioAppend,
    AudioClear,
    AudioCleared,
    AudioCommit,
    ItemCreate,
    ItemTruncate,
    ResponseCancel,
    ResponseCreate,
    SessionCreated,
    SessionFinish,
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
    Violation,
)
from voicekit_dashscope.regions import emulator_refuses
from voicekit_dashscope_emulator.faults import FaultPlan
from voicekit_dashscope_emulator.http import WebSocketClosed
from voicekit_dashscope_emulator.omni import OmniScript, RealtimeSettings, ReplyVoice, ToneVoice
from voicekit_dashscope_emulator.realtime_replies import Replying
from voicekit_dashscope_emulator.realtime_state import InjectedFault
from voicekit_dashscope_emulator.realtime_turns import TurnTaking

log = get_logger("voicekit.dashscope.emulator")


def _peek_type(frame: str | bytes) -> str:
    """The ``type`` of a client frame, as far as it can be read (for the session record)."""
    try:
        t = json.loads(frame).get("type") if isinstance(frame, str) else None
    except (ValueError, AttributeError, RecursionError):
        t = None
    return t if isinstance(t, str) else "<malformed>"


class RealtimeConnectionHandler(TurnTaking, Replying):
    """Serves one realtime WebSocket connection."""

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
        except* InjectedFault:
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
        routes = self._routes()
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
            if isinstance(event, SessionFinish):
                await self._finish()
                return
            route = routes.get(type(event))
            if route is not None:
                await route(event)

    def _routes(self) -> dict[type, Callable[[Any], Awaitable[None]]]:
        """What each client event does (``session.finish`` ends the loop; other events are only recorded)."""
        return {SessionUpdate: self._session_update, AudioAppend: self._on_append, AudioCommit: self._on_commit,
                AudioClear: self._on_clear, ResponseCreate: self._on_response_create,
                ResponseCancel: self._on_response_cancel, ItemCreate: self._item_create,
                ItemTruncate: self._on_truncate}

    async def _on_append(self, event: AudioAppend) -> None:
        await self._audio(event.audio)

    async def _on_commit(self, event: AudioCommit) -> None:
        await self._commit()

    async def _on_clear(self, event: AudioClear) -> None:
        self.manual_audio.clear()
        await self.send(AudioCleared())

    async def _on_response_create(self, event: ResponseCreate) -> None:
        await self._start_response(tool_output=self._take_tool_output())

    async def _on_response_cancel(self, event: ResponseCancel) -> None:
        await self._cancel_response("client")

    async def _on_truncate(self, event: ItemTruncate) -> None:
        self._truncate(event)

    async def _session_update(self, event: SessionUpdate) -> None:
        cfg = self.proto.config
        self.record["instructions"] = cfg.instructions
        self.record.setdefault("updates", []).append(event.session.to_json())
        self.input_rate = cfg.input_rate(self.model)
        await self.send(SessionUpdated(session=self.proto.session))

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
