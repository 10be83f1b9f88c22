"""A voice agent on a Qwen-Omni realtime model: it hears the user, answers in speech, calls tools.

The model does recognition, reasoning and synthesis; voicekit keeps the audio, the playback and
the cancellation::

    agent = OmniAgent.connect(instructions="You are a weather bot.", tools=[get_weather])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.run, source, sink)
        async for event in agent.events:
            print(event)

* The source is streamed to the model in ``append_ms`` appends (resampled to 16 kHz mono).
* Reply audio (PCM16, 24 kHz) is played through :class:`voicekit.session.player.ReplyPlayer`,
  which resamples it for the sink and writes ``chunk_ms`` pieces, each reply in its own cancel
  scope — so a barge-in stops playback within one chunk and the played sample count is exact.
* Barge-in: when the server reports the user started speaking during a reply
  (``input_audio_buffer.speech_started``), playback stops, the in-flight response is cancelled
  with ``response.cancel``, and the reply is truncated to what was played: the history keeps
  only the heard words, and the model is told (``truncate_notice``). With ``turn_detection=
  "semantic_vad"`` the server itself ignores backchannels ("uh-huh"), so they never reach us as
  an interruption; with ``"server_vad"`` any speech interrupts (faster, but a cough or an "mm"
  stops the reply). ``barge_in="confirm"`` pauses on ``speech_started`` and only cancels when the
  server commits a new user turn (or cancels the response itself), resuming otherwise.
* Tools: ``response.function_call_arguments.done`` calls are run after the response ends; each
  output goes back as ``conversation.item.create`` (``function_call_output``), then
  ``response.create`` asks for the spoken answer.
* Sessions are capped (120 minutes for Omni); the agent renews the session ``renew_margin_s``
  before the cap, at a quiet moment, carrying the instructions and the recent conversation over
  in the new session's instructions.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.audio.sinks import AudioSink
from voicekit.audio.sources import AudioSource
from voicekit.errors import ConfigError
from voicekit.handlers.assistant import Assistant
from voicekit.logging import get_logger
from voicekit.session.player import ReplyPlayer
from voicekit_dashscope.agent.tools import Tool, resolve_tools
from voicekit_dashscope.auth import ApiKey, resolve_api_key
from voicekit_dashscope.client.realtime import (
    Connector,
    RealtimeConnection,
    realtime_base_url,
    websocket_connector,
)
from voicekit_dashscope.errors import ConnectionLostError, DashScopeError
from voicekit_dashscope.protocol.realtime import (
    UNSET,
    AudioCommitted,
    AudioDelta,
    AudioFormat,
    AudioTranscriptDelta,
    ErrorEvent,
    FunctionArgumentsDone,
    ItemCreate,
    ItemTruncate,
    OutputItemAdded,
    Phase,
    RealtimeModel,
    RealtimeStateError,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    SessionConfig,
    SessionFinished,
    SessionUpdate,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptionCompleted,
    TranscriptionText,
    TurnDetection,
    get_realtime_model,
)
from voicekit_dashscope.regions import DEFAULT_REGION

log = get_logger("voicekit.dashscope.agent")
INPUT_RATE = 16000


@attrs.frozen(kw_only=True)
class AgentConfig:
    """Settings of an :class:`OmniAgent` (see the module doc and docs/dashscope-realtime.md)."""

    model: str = "qwen3.5-omni-plus-realtime"
    instructions: str = "You are a helpful voice assistant. Keep answers short."
    voice: str | None = None  # None: the model's default voice
    turn_detection: str | None = None  # "semantic_vad" | "server_vad"; None: semantic where supported
    vad_threshold: float | None = None
    silence_duration_ms: int | None = None
    barge_in: str = "immediate"  # or "confirm"
    confirm_grace_s: float = 0.5
    truncate_notice: str = "instructions"  # or "item_truncate" (OpenAI-style, undocumented) or "none"
    output_rate: int = 24000
    chunk_ms: int = 20
    append_ms: int = 100
    session_limit_s: float | None = None  # None: the model's documented cap
    renew_margin_s: float = 120.0
    history_turns: int = 8
    tool_timeout_s: float = 10.0
    finish_timeout_s: float = 20.0
    end_grace_s: float = 1.0
    audio_queue_chunks: int = 4096
    event_buffer: int = 4096

    def __attrs_post_init__(self) -> None:
        if self.barge_in not in ("immediate", "confirm"):
            raise ConfigError(f"barge_in must be 'immediate' or 'confirm', not {self.barge_in!r}")
        if self.truncate_notice not in ("instructions", "item_truncate", "none"):
            raise ConfigError("truncate_notice must be 'instructions', 'item_truncate' or 'none'")
        if self.turn_detection not in (None, "semantic_vad", "server_vad"):
            raise ConfigError(f"turn_detection must be 'semantic_vad' or 'server_vad', not {self.turn_detection!r}")
        for name in ("chunk_ms", "append_ms"):
            if not 1 <= getattr(self, name) <= 1000:
                raise ConfigError(f"{name} must be between 1 and 1000 ms")


@attrs.frozen
class HistoryEntry:
    """One turn of the conversation as the user experienced it."""

    role: str  # "user" | "assistant" | "tool"
    text: str
    interrupted: bool = False
    full_text: str | None = None  # for an interrupted reply: what the model had said


@attrs.define(eq=False)
class _Reply:
    response_id: str
    turn_id: int
    send: trio.MemorySendChannel[AudioFrame]
    recv: trio.MemoryReceiveChannel[AudioFrame]
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    item_id: str | None = None
    text: str = ""
    marks: list[tuple[int, str]] = attrs.field(factory=list)  # (samples received before, delta)
    samples_in: int = 0
    started: bool = False
    interrupted: bool = False
    server_done: bool = False
    paused_for: str | None = None
    dropped: int = 0


class OmniAgent:
    """A realtime voice agent on a Qwen-Omni model (see the module doc)."""

    def __init__(self, connector: Connector, config: AgentConfig | None = None, *,
                 tools: Sequence[Tool] = (), assistant: Assistant | None = None) -> None:
        self.config = config or AgentConfig()
        self.spec: RealtimeModel = get_realtime_model(self.config.model)
        if not self.spec.is_omni:
            raise ConfigError(f"{self.spec.name} is a transcription model; the agent needs an Omni model "
                              "(qwen3.5-omni-plus-realtime, qwen3.5-omni-flash-realtime, qwen3-omni-flash-realtime)")
        td = self.config.turn_detection or ("semantic_vad" if self.spec.semantic_vad else "server_vad")
        if td == "semantic_vad" and not self.spec.semantic_vad:
            raise ConfigError(f"{self.spec.name} has no semantic_vad; use turn_detection='server_vad' or a "
                              "qwen3.5-omni model")
        self.turn_detection = td
        self.connector = connector
        self.tools = resolve_tools(tools, assistant)
        if self.tools and self.spec.tools is False:
            raise ConfigError(f"{self.spec.name} does not support function calling")
        if self.config.output_rate not in self.spec.output_rates:
            raise ConfigError(f"{self.spec.name} outputs audio at {self.spec.output_rates} Hz, "
                              f"not {self.config.output_rate}")
        self.session_config(self.config.instructions)  # validate now, not at the first connection
        self.history: list[HistoryEntry] = []
        self.timeline: deque[ev.Event] = deque(maxlen=20000)
        self._event_send, self.events = trio.open_memory_channel[ev.Event](self.config.event_buffer)
        self.dropped_events = 0
        self.sessions_opened = 0
        self.interruptions = 0
        self._conn: RealtimeConnection | None = None
        self._reply: _Reply | None = None
        self._replies: dict[str, _Reply] = {}
        self._turn = 0
        self._utterances: dict[str, int] = {}
        self._speech_at: dict[str, float] = {}
        self._pending_calls: dict[str, list[FunctionArgumentsDone]] = {}
        self._user_speaking = False
        self._audio_offset = 0.0  # input seconds sent before the current session began
        self._audio_sent = 0.0
        self._t0 = 0.0
        self._player: ReplyPlayer | None = None
        self._nursery: trio.Nursery | None = None
        self._input_done = trio.Event()
        self._finished = trio.Event()
        self._session_instructions = self.config.instructions
        self._confirm_scope: trio.CancelScope | None = None

    @classmethod
    def connect(cls, config: AgentConfig | None = None, *, api_key: str | ApiKey | None = None,
                region: str = DEFAULT_REGION, workspace: str | None = None, base_url: str | None = None,
                tools: Sequence[Tool] = (), assistant: Assistant | None = None) -> OmniAgent:
        """An agent on the real service (or on ``base_url``, e.g. the emulator's ``ws://127.0.0.1:PORT``)."""
        key = resolve_api_key(api_key)
        assert key is not None
        base = realtime_base_url(region, workspace=workspace, base_url=base_url)
        return cls(websocket_connector(key, base=base, workspace=workspace), config, tools=tools,
                   assistant=assistant)

    # ------------------------------------------------------------------ events

    @property
    def sample_rate(self) -> int:
        """The rate of the reply audio the service sends (the player resamples it for any sink)."""
        return self.config.output_rate

    @property
    def started_at(self) -> float:
        """The trio time :meth:`run` started; event ``t`` values count from here."""
        return self._t0

    def now(self) -> float:
        return trio.current_time() - self._t0

    def _emit(self, event: ev.Event) -> None:
        self.timeline.append(event)
        try:
            self._event_send.send_nowait(event)
        except trio.WouldBlock:  # drop the oldest and count it: memory stays flat
            try:
                self.events.receive_nowait()
            except trio.WouldBlock:
                pass
            self.dropped_events += 1
            self._event_send.send_nowait(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    # ------------------------------------------------------------------ session config

    def session_config(self, instructions: str) -> SessionConfig:
        c = self.config
        td = TurnDetection(self.turn_detection, c.vad_threshold, c.silence_duration_ms)
        kw: dict[str, Any] = {}
        if self.spec.nested_audio_format:
            if c.output_rate != 24000:
                kw["output_format"] = AudioFormat("pcm", c.output_rate)
        else:
            kw["input_audio_format"], kw["output_audio_format"] = "pcm16", "pcm24"
        cfg = SessionConfig(modalities=("text", "audio"), voice=c.voice if c.voice else UNSET,
                            instructions=instructions, turn_detection=td,
                            tools=tuple(t.spec() for t in self.tools.values()) or None, **kw)
        from voicekit_dashscope.protocol.realtime import check_session

        issues = check_session(self.spec, cfg)
        if issues:
            raise ConfigError("; ".join(f"{i.param}: {i.message}" for i in issues))
        return cfg

    def carried_instructions(self) -> str:
        """The instructions plus the recent conversation (for a renewed session)."""
        said = [h for h in self.history if h.role in ("user", "assistant") and h.text]
        recent = said[-2 * self.config.history_turns:]
        if not recent:
            return self.config.instructions
        lines = [f"{'User' if h.role == 'user' else 'Assistant'}: {h.text}"
                 + (" [interrupted]" if h.interrupted else "") for h in recent]
        return (self.config.instructions + "\n\nConversation so far (continued from an earlier session; "
                "the assistant lines are what the user actually heard):\n" + "\n".join(lines))

    # ------------------------------------------------------------------ running

    async def run(self, source: AudioSource, sink: AudioSink) -> None:
        """Talk until ``source`` ends and the last reply has played; then end the session."""
        self._t0 = trio.current_time()
        self._player = ReplyPlayer(sink, chunk_ms=self.config.chunk_ms, realtime=True)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._sessions(nursery, source)
                nursery.cancel_scope.cancel()
        finally:
            self._event_send.close()

    async def _sessions(self, nursery: trio.Nursery, source: AudioSource) -> None:
        limit = self.config.session_limit_s or self.spec.session_limit_s or math.inf
        instructions = self.config.instructions
        input_started = False
        while True:
            renew_at = trio.current_time() + max(1.0, limit - self.config.renew_margin_s)
            self._session_instructions = instructions
            async with RealtimeConnection.open(self.connector, self.spec,
                                               session=self.session_config(instructions)) as conn:
                self.sessions_opened += 1
                self._conn = conn
                self._audio_offset = self._audio_sent
                log.info("omni_session_open", model=self.spec.name, session=conn.protocol.session_id,
                         n=self.sessions_opened)
                if not input_started:
                    input_started = True
                    nursery.start_soon(self._input, source)
                renew = await self._serve(conn, renew_at, limit)
                if not renew:
                    return
            instructions = self.carried_instructions()
            log.info("omni_session_renew", carried=len(instructions))

    async def _serve(self, conn: RealtimeConnection, renew_at: float, limit: float) -> bool:
        """Run one session; True when it should be renewed, False when the conversation is over."""
        async with trio.open_nursery() as nursery:
            result: list[bool] = []

            async def watch() -> None:
                await self._input_done.wait()
                await self._quiet(drain=True)
                await trio.sleep(self.config.end_grace_s)  # a last turn may still be on its way
                await self._quiet(drain=True)
                try:
                    with trio.move_on_after(self.config.finish_timeout_s):
                        await conn.finish()
                        await self._finished.wait()
                except DashScopeError:
                    pass
                result.append(False)
                nursery.cancel_scope.cancel()

            async def renew() -> None:
                await trio.sleep_until(renew_at)
                hard = trio.current_time() + max(0.0, self.config.renew_margin_s - 5.0)
                with trio.move_on_at(hard):
                    await self._quiet(drain=False)
                result.append(True)
                nursery.cancel_scope.cancel()

            self._finished = trio.Event()
            nursery.start_soon(watch)
            if math.isfinite(limit):
                nursery.start_soon(renew)
            try:
                await self._receive(conn)
            except ConnectionLostError as exc:
                if not result and not self._finished.is_set():
                    if self._input_done.is_set():
                        result.append(False)
                    else:
                        log.warning("omni_session_lost", error=str(exc))
                        self._emit(ev.Warning(t=self.now(), where="omni", message=f"session lost, renewing: {exc}"))
                        result.append(True)
            nursery.cancel_scope.cancel()
        self._conn = None
        return bool(result and result[0])

    async def _quiet(self, *, drain: bool) -> None:
        """Wait until no reply is playing and the user is not speaking."""
        while True:
            r = self._reply
            if r is not None and not r.done.is_set():
                await r.done.wait()
                continue
            if not drain and self._user_speaking:
                await trio.sleep(0.1)
                continue
            if drain and self._conn is not None and self._conn.protocol.active_response is not None:
                await trio.sleep(0.05)
                continue
            return

    async def _input(self, source: AudioSource) -> None:
        resampler: StreamResampler | None = None
        step = INPUT_RATE * self.config.append_ms // 1000 * 2
        buf = b""
        try:
            async for frame in source.frames():
                if frame.sample_rate != INPUT_RATE or frame.channels != 1:
                    resampler = resampler or StreamResampler(frame.sample_rate, INPUT_RATE, frame.channels, 1)
                    out = resampler.process(frame)
                    if out is None:
                        continue
                    frame = out
                buf += frame.pcm
                while len(buf) >= step:
                    await self._append(buf[:step])
                    buf = buf[step:]
            if buf:
                await self._append(buf)
        finally:
            self._input_done.set()

    async def _append(self, pcm: bytes) -> None:
        conn = self._conn
        self._audio_sent += len(pcm) / 2 / INPUT_RATE
        if conn is None:
            return  # between sessions: the audio of that moment is not heard
        try:
            await conn.send_audio(pcm)
        except (ConnectionLostError, RealtimeStateError):
            pass

    # ------------------------------------------------------------------ server events

    async def _receive(self, conn: RealtimeConnection) -> None:
        while True:
            event = await conn.receive()
            if await self._on_event(conn, event):
                return

    async def _on_event(self, conn: RealtimeConnection, event: Any) -> bool:
        """Handle one server event; True once the session has finished."""
        match event:
            case SpeechStarted():
                await self._on_speech_started(conn, event)
            case SpeechStopped():
                self._on_speech_stopped(event)
            case AudioCommitted():
                r = self._reply
                if r is not None and r.paused_for is not None:
                    await self._interrupt(conn, r, "committed")
            case TranscriptionText() | TranscriptionCompleted():  # also TranscriptionDelta
                self._on_transcript(event)
            case ResponseCreated():
                self._pending_calls[event.response_id] = []
            case OutputItemAdded() | AudioTranscriptDelta() | TextDelta() | AudioDelta():
                self._on_reply_event(conn, event)
            case FunctionArgumentsDone():
                self._pending_calls.setdefault(event.response_id, []).append(event)
            case ResponseDone():
                await self._on_response_done(conn, event)
            case ErrorEvent():
                self._on_error(event)
            case SessionFinished():
                self._finished.set()
                return True
        return False

    def _on_speech_stopped(self, event: SpeechStopped) -> None:
        self._user_speaking = False
        start = self._speech_at.get(event.item_id, event.audio_end_ms / 1000)
        end = self._audio_offset + event.audio_end_ms / 1000
        self._emit(ev.SpeechEnded(t=self.now(), audio_t=end, duration=max(0.0, end - start)))
        if self._reply is not None and self._reply.paused_for is not None:
            self._start_confirm_timer(self._reply)

    def _on_transcript(self, event: TranscriptionText | TranscriptionCompleted) -> None:
        uid = self._utterance(event.item_id)
        if isinstance(event, TranscriptionCompleted):
            self._emit(ev.Transcript(t=self.now(), text=event.transcript, is_final=True, utterance_id=uid,
                                     language=event.language, emotion=event.emotion))
            if event.transcript.strip():
                self.history.append(HistoryEntry("user", event.transcript.strip()))
        else:
            self._emit(ev.Transcript(t=self.now(), text=event.display.strip(), is_final=False,
                                     utterance_id=uid, language=event.language, emotion=event.emotion))

    def _on_reply_event(self, conn: RealtimeConnection,
                        event: OutputItemAdded | AudioTranscriptDelta | TextDelta | AudioDelta) -> None:
        """The reply's item, text and audio (events of a cancelled response are dropped)."""
        if isinstance(event, OutputItemAdded):
            r = self._replies.get(event.response_id)
            if r is not None and event.item.get("type") == "message":
                r.item_id = str(event.item.get("id"))
        elif conn.protocol.is_stale(event):
            return
        elif isinstance(event, AudioDelta):
            self._on_audio(self._reply_for(event.response_id), event.delta)
        else:
            self._on_reply_text(event)

    def _on_reply_text(self, event: AudioTranscriptDelta | TextDelta) -> None:
        r = self._reply_for(event.response_id)
        r.item_id = r.item_id or event.item_id
        r.marks.append((r.samples_in, event.delta))
        r.text += event.delta
        if not r.started:
            r.started = True
            self._emit(ev.ReplyStarted(t=self.now(), turn_id=r.turn_id, text=event.delta.strip()))
        self._emit(ev.ReplyText(t=self.now(), turn_id=r.turn_id, text=event.delta))

    def _utterance(self, item_id: str) -> int:
        if item_id not in self._utterances:
            self._utterances[item_id] = len(self._utterances) + 1
        return self._utterances[item_id]

    async def _on_speech_started(self, conn: RealtimeConnection, event: SpeechStarted) -> None:
        self._user_speaking = True
        audio_t = self._audio_offset + event.audio_start_ms / 1000
        self._speech_at[event.item_id] = audio_t
        self._utterance(event.item_id)
        self._emit(ev.SpeechStarted(t=self.now(), audio_t=audio_t))
        r = self._reply
        if r is None or r.done.is_set() or r.interrupted:
            return
        if self.config.barge_in == "immediate":
            await self._interrupt(conn, r, "speech_started")
        else:
            r.paused_for = event.item_id
            assert self._player is not None
            self._player.pause()

    def _start_confirm_timer(self, r: _Reply) -> None:
        assert self._nursery is not None
        if self._confirm_scope is not None:
            self._confirm_scope.cancel()
        scope = trio.CancelScope()
        self._confirm_scope = scope

        async def timer() -> None:
            with scope:
                await trio.sleep(self.config.confirm_grace_s)
                if r.paused_for is not None and not r.interrupted:  # not a new turn: carry on
                    r.paused_for = None
                    assert self._player is not None
                    self._player.resume()

        self._nursery.start_soon(timer)

    def _reply_for(self, response_id: str) -> _Reply:
        r = self._replies.get(response_id)
        if r is None:
            self._turn += 1
            send, recv = trio.open_memory_channel[AudioFrame](self.config.audio_queue_chunks)
            r = _Reply(response_id, self._turn, send, recv)
            self._replies[response_id] = r
            previous, self._reply = self._reply, r
            assert self._nursery is not None
            self._nursery.start_soon(self._play, r, previous)
            if len(self._replies) > 32:
                for old in list(self._replies)[:-16]:
                    del self._replies[old]
        return r

    def _on_audio(self, r: _Reply, pcm: bytes) -> None:
        if r.interrupted or len(pcm) < 2:
            return
        pcm = pcm[: len(pcm) // 2 * 2]
        frame = AudioFrame(pcm, self.config.output_rate, 1, r.samples_in / self.config.output_rate)
        r.samples_in += frame.samples
        if not r.started:
            r.started = True
            self._emit(ev.ReplyStarted(t=self.now(), turn_id=r.turn_id, text=""))
        try:
            r.send.send_nowait(frame)
        except trio.WouldBlock:
            r.dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _play(self, r: _Reply, previous: _Reply | None) -> None:
        """Play one reply in its own cancel scope; report exactly what was played."""
        player = self._player
        assert player is not None
        if previous is not None:
            await previous.done.wait()
        played = 0
        try:
            with r.scope:
                player.start_reply()
                await player.play(r.recv)
            played = player.played
        finally:
            played = player.played
            player.resume()
            r.recv.close()
            sink_rate = player.sink.sample_rate
            if r.interrupted or r.scope.cancelled_caught:
                heard = self._heard(r, played, sink_rate)
                self.history.append(HistoryEntry("assistant", heard, True, r.text.strip()))
                self._emit(ev.ReplyInterrupted(t=self.now(), turn_id=r.turn_id, text=r.text.strip(),
                                               samples_played=played, sample_rate=sink_rate, heard_text=heard))
            elif r.started:
                if r.text.strip():
                    self.history.append(HistoryEntry("assistant", r.text.strip()))
                self._emit(ev.ReplyFinished(t=self.now(), turn_id=r.turn_id, text=r.text.strip(),
                                            samples_played=played, sample_rate=sink_rate))
            r.done.set()
        if r.interrupted:
            await self._tell_truncation(r, played, sink_rate)

    def _heard(self, r: _Reply, played_sink: int, sink_rate: int) -> str:
        """The reply text whose audio had started playing when playback stopped."""
        played_src = played_sink * self.config.output_rate / sink_rate if sink_rate else 0
        return "".join(delta for pos, delta in r.marks if pos < played_src).strip()

    async def _interrupt(self, conn: RealtimeConnection, r: _Reply, why: str) -> None:
        """Stop playback now, cancel the response on the server, keep what was heard."""
        if r.interrupted:
            return
        r.interrupted = True
        r.paused_for = None
        self.interruptions += 1
        r.scope.cancel()  # the player stops before its next chunk
        r.send.close()
        log.debug("omni_barge_in", why=why, response=r.response_id)
        if conn.protocol.active_response == r.response_id:
            try:
                await conn.send(ResponseCancel())
            except (ConnectionLostError, RealtimeStateError):
                pass

    async def _tell_truncation(self, r: _Reply, played_sink: int, sink_rate: int) -> None:
        conn = self._conn
        if conn is None or self.config.truncate_notice == "none":
            return
        heard = self._heard(r, played_sink, sink_rate)
        try:
            if self.config.truncate_notice == "item_truncate" and r.item_id:
                ms = round(played_sink / sink_rate * 1000) if sink_rate else 0
                await conn.send(ItemTruncate(item_id=r.item_id, audio_end_ms=ms))
            elif self.config.truncate_notice == "instructions":
                note = (f"\n\nNote: your previous answer was interrupted by the user. They heard only: "
                        f"\"{heard}\". Do not assume they heard the rest.")
                await conn.send(SessionUpdate(session=SessionConfig(instructions=self._session_instructions + note)))
        except (ConnectionLostError, RealtimeStateError, ConfigError) as exc:
            log.warning("omni_truncate_notice_failed", error=str(exc))

    async def _on_response_done(self, conn: RealtimeConnection, event: ResponseDone) -> None:
        rid = event.response_id
        r = self._replies.get(rid)
        if r is not None:
            r.server_done = True
            if event.status != "completed" and not r.interrupted and not r.done.is_set():
                # the server cancelled it (its own barge-in handling): stop playing at once
                await self._interrupt(conn, r, f"server:{event.status}")
            r.send.close()
        calls = self._pending_calls.pop(rid, [])
        if calls and event.status == "completed":
            assert self._nursery is not None
            self._nursery.start_soon(self._run_tools, conn, calls)

    async def _run_tools(self, conn: RealtimeConnection, calls: list[FunctionArgumentsDone]) -> None:
        for call in calls:
            t = self.tools.get(call.name)
            if t is None:
                output = f'{{"error": "no tool named {call.name}"}}'
            else:
                try:
                    with trio.fail_after(self.config.tool_timeout_s):
                        output = await t.call(call.arguments)
                except trio.TooSlowError:
                    output = '{"error": "the tool took too long"}'
                except Exception as exc:  # a tool's bug becomes an answer the model can speak about
                    log.warning("omni_tool_failed", tool=call.name, error=f"{type(exc).__name__}: {exc}")
                    self._emit(ev.Error(t=self.now(), where=f"tool:{call.name}", message=str(exc),
                                        error_type=type(exc).__name__))
                    output = '{"error": "the tool failed"}'
            self.history.append(HistoryEntry("tool", f"{call.name}({call.arguments}) -> {output}"))
            self._emit(ev.IntentMatched(t=self.now(), turn_id=self._turn, intent=call.name,
                                        slots={"arguments": call.arguments, "output": output}))
            try:
                await conn.send(ItemCreate.function_output(call.call_id, output))
            except (ConnectionLostError, RealtimeStateError):
                return
        try:
            await conn.send(ResponseCreate())
        except (ConnectionLostError, RealtimeStateError):
            pass

    def _on_error(self, event: ErrorEvent) -> None:
        e = event.error
        conn = self._conn
        if e.code == "response_cancel_not_active":
            return  # our cancel crossed the server's own cancellation: nothing to report
        if conn is not None and conn.protocol.phase is Phase.FINISHING:
            self._finished.set()  # some models refuse session.finish: just close
            return
        log.warning("omni_server_error", code=e.code, message=e.message, param=e.param)
        self._emit(ev.Error(t=self.now(), where="omni", message=f"{e.code}: {e.message}",
                            error_type="RealtimeServerError"))
