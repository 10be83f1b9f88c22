"""A live session: the trio pipeline of DESIGN.md.

::

    source ─► resample ─► endpointer (VAD) ─► ASR stream ─► turns ─► handler ─► TTS ─► player ─► sink
                              │ speech during a reply ─► interruption policy ─► cancel the reply

Every stage is a task in the session's nursery, every edge a bounded channel, and every reply
runs in its own cancel scope: a barge-in is one ``cancel()``, after which nothing of that reply
reaches the sink. Everything that happens is a frozen event (``voicekit.events``).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

import attrs
import structlog
import trio

from voicekit import events as ev
from voicekit.asr.base import ASRConfig, ASREngine, ASRStream, TranscriptResult
from voicekit.audio.echo import EchoGuard
from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.audio.sinks import AudioSink
from voicekit.audio.sources import AudioSource
from voicekit.errors import ConfigError, HandlerError, VoicekitError, one_line, only_cancelled, sole_error
from voicekit.handlers.assistant import Announcement, Assistant, Turn
from voicekit.handlers.protocol import Handler
from voicekit.logging import get_logger
from voicekit.session.channels import BoundedChannel
from voicekit.session.handling import HandlerCall, HandlerRunner, RunningHandler
from voicekit.session.interruption import Decision, InterruptionPolicy, VADInterruption
from voicekit.session.player import ReplyPlayer
from voicekit.tts.base import TTSEngine
from voicekit.vad.base import VADBackend
from voicekit.vad.endpointer import Endpointer, EndpointerConfig, SpeechEnd, SpeechStart

# announcements a session holds at once; a handler asking for more gets an error
MAX_PENDING_ANNOUNCEMENTS = 64
# how long the end of a session waits for handlers it gave up on before saying it is waiting
_STUCK_GRACE_S = 0.1

log = get_logger("voicekit.session")

# how each event is logged; the rest (speech, partials, reply text) at debug level
_LOG_LEVELS: dict[type, str] = {
    ev.Error: "error", ev.Warning: "warning", ev.SessionStarted: "info", ev.SessionEnded: "info",
    ev.TurnEnded: "info", ev.IntentMatched: "info", ev.ReplyStarted: "info", ev.ReplyFinished: "info",
    ev.ReplyInterrupted: "info",
}


def _filtered_out(level: str) -> bool:
    """Whether a voicekit log line at ``level`` would be dropped anyway: unconfigured structlog
    (voicekit's quiet default keeps warnings and errors only), or a filtering wrapper class whose
    method for that level does nothing."""
    if not structlog.is_configured():
        return level in ("debug", "info")
    method = getattr(structlog.get_config()["wrapper_class"], level, None)
    return getattr(method, "__name__", "") == "_nop"


@attrs.frozen
class SessionConfig:
    endpointer: EndpointerConfig = attrs.Factory(EndpointerConfig)
    realtime: bool = False  # pace playback as a speaker would (set for live input)
    audio_buffer_frames: int = 100  # source → VAD edge: 2 s of 20 ms frames
    audio_policy: str = "block"  # "drop_oldest" for live sources that must never stall
    event_buffer: int = 4096
    language: str | None = None
    context: str | None = None
    hotwords: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    use_grammar: bool = False  # give the assistant's JSGF grammar to command-mode engines
    chunk_ms: int = 20
    tts_buffer_frames: int = 1000  # synthesized audio held ahead of the player (bounded)
    echo: EchoGuard | None = None  # keeps the assistant from hearing itself (voicekit.audio.echo)


@attrs.define
class _ReplyState:
    turn_id: int
    text: str
    scope: trio.CancelScope
    done: trio.Event
    pieces: list[tuple[str, int]]  # (sentence, samples) as played
    synth_seconds: dict[int, float] = attrs.Factory(dict)  # piece index -> seconds synthesized
    interrupted: bool = False


class Session:
    """One conversation. Build it, then either ``await session.run()`` in your nursery and read
    ``session.events()``, or use :func:`open_session`."""

    def __init__(self, source: AudioSource, *, asr: ASREngine, vad: VADBackend,
                 assistant: Assistant | None = None, tts: TTSEngine | None = None,
                 sink: AudioSink | None = None, interruption: InterruptionPolicy | None = None,
                 config: SessionConfig | None = None, names: dict[str, str] | None = None,
                 close_sink: bool = True) -> None:
        self.source = source
        # the session closes the sink when it ends (a WAV file is complete only once closed);
        # pass close_sink=False to keep one sink open across several sessions
        self.close_sink = close_sink
        self.asr = asr
        self.vad = vad
        self.assistant = assistant
        self.tts = tts
        self.sink = sink
        self.config = config or SessionConfig()
        # default: pause the reply the moment the user speaks, cut it after 300 ms of speech,
        # resume it after a shorter sound (a cough, a click)
        self.policy: InterruptionPolicy = interruption or VADInterruption(pause=True)
        self.id = uuid.uuid4().hex[:12]
        self.context: dict[str, Any] = {}
        self.names = names or {}
        echo = self.config.echo
        if echo is not None and vad.sample_rate != 16000:
            raise ConfigError("the echo guard works at 16 kHz: run the VAD at 16000 Hz")
        self.player = ReplyPlayer(sink, chunk_ms=self.config.chunk_ms, realtime=self.config.realtime,
                                  on_played=echo.reference if echo is not None else None) \
            if sink is not None else None
        self._subscribers: list[BoundedChannel[ev.Event]] = []
        self._primary = self.subscribe(self.config.event_buffer)
        self._t0 = 0.0
        self._turn = 0
        self._reply: _ReplyState | None = None
        self._replies: trio.Nursery | None = None
        self._scheduled: trio.Nursery | None = None
        self._handlers: HandlerRunner | None = None
        self._pending: dict[int, Announcement] = {}
        self._audio_pos = 0.0  # audio seconds of the input heard so far
        self._audio_waiters: list[tuple[float, int, trio.Event]] = []
        self._audio_seq = itertools.count()
        self._announce_lock = trio.Lock()
        self._pending_changed = trio.Event()
        self._speech_voiced = 0.0
        self._voiced_at = 0.0
        self._in_speech = False
        self._endpointer: Endpointer = Endpointer(vad, self.config.endpointer)
        self._to_asr: StreamResampler | None = None
        self._inline: trio.MemoryReceiveChannel[TranscriptResult] | None = None  # see _open_inline
        self._queue: trio.MemorySendChannel[TranscriptResult] | None = None
        self._queued = 0  # results in the queue or being handled by _recognize_queued
        self._launch: tuple[_ReplyState, HandlerCall] | None = None  # a reply whose reader is not started
        self._ended = False
        self._drained = trio.Event()

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, buffer: int = 1024) -> trio.MemoryReceiveChannel[ev.Event]:
        """Another reader of the event stream (drop-oldest when it falls ``buffer`` behind)."""
        ch: BoundedChannel[ev.Event] = BoundedChannel(buffer, "drop_oldest")
        self._subscribers.append(ch)
        return ch.receive_channel

    async def events(self) -> AsyncIterator[ev.Event]:
        """Every event of the session, in order; ends after ``SessionEnded``."""
        async with self._primary:
            async for event in self._primary:
                yield event

    @property
    def dropped_events(self) -> int:
        return sum(s.dropped for s in self._subscribers)

    def now(self) -> float:
        return trio.current_time() - self._t0

    @property
    def audio_position(self) -> float:
        """Seconds of input audio the pipeline (VAD, ASR) has taken in so far; a server compares
        it with what it received to see whether the session keeps up with real time."""
        return self._audio_pos

    @property
    def input_drained(self) -> bool:
        """Whether :meth:`drained` would return at once."""
        return self._drained.is_set()

    async def drained(self) -> None:
        """Wait until the input has ended and everything it held has been processed: every frame
        went through the VAD, the endpointer and the recognizer, the recognizer gave its last
        transcript, and each final became a turn (its ``TurnEnded`` and ``IntentMatched`` events
        are out and its handler has been started). Replies may still be playing; ``run()`` returns
        once they have finished too. Also returns if the session ends before that (an error, a
        cancel): check ``SessionEnded.reason``."""
        await self._drained.wait()

    def _set_drained(self) -> None:
        self._drained.set()

    def _emit(self, event: ev.Event) -> None:
        for sub in self._subscribers:
            sub.put_nowait(event)
        level = _LOG_LEVELS.get(type(event), "debug")
        if _filtered_out(level):
            return  # the log line would be dropped: skip building it (the turn hand-off is timed)
        fields = {k: v for k, v in attrs.asdict(event, recurse=False).items() if k not in ("t", "words")}
        getattr(log, level)(event.kind, **fields)

    # -- the pipeline -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the input ends and every reply has finished (or until cancelled)."""
        self._t0 = trio.current_time()
        structlog.contextvars.bind_contextvars(session_id=self.id)
        reason = "input ended"
        failed = False
        self._emit(ev.SessionStarted(
            t=0.0, session_id=self.id, asr=self.names.get("asr", type(self.asr).__name__),
            vad=self.names.get("vad", type(self.vad).__name__),
            tts=self.names.get("tts", type(self.tts).__name__) if self.tts else None,
            assistant=self.assistant.name if self.assistant else None))
        task_status.started()
        try:
            async with trio.open_nursery() as handlers:
                self._handlers = HandlerRunner(handlers, on_late=self._handler_returned_late)
                async with trio.open_nursery() as replies, trio.open_nursery() as scheduled:
                    self._replies = replies
                    self._scheduled = scheduled
                    async with self.asr.open_stream(self._asr_config()) as stream:
                        queue = self._open_inline(stream)
                        audio: BoundedChannel[AudioFrame] | None = None
                        async with trio.open_nursery() as n:
                            if self.config.audio_policy == "drop_oldest":
                                # a live source must never wait for the pipeline: a task of its
                                # own reads it into a bounded channel that drops the oldest audio
                                audio = BoundedChannel(self.config.audio_buffer_frames, "drop_oldest")
                                n.start_soon(self._capture, audio)
                                n.start_soon(self._listen, audio, stream)
                            else:
                                # the source may wait: it feeds VAD, endpointer and ASR in its own
                                # task, frame by frame, with no hop between them
                                n.start_soon(self._listen_inline, stream)
                            if self._inline is not None:
                                assert queue is not None
                                n.start_soon(self._recognize_queued, queue)
                            else:
                                n.start_soon(self._recognize, stream)
                    self._set_drained()
                    await self._say_due_announcements()
                    scheduled.cancel_scope.cancel()  # the input ended: pending announcements are dropped
                    if audio is not None and audio.dropped:
                        self._emit(ev.Warning(t=self.now(), where="audio",
                                              message="input audio dropped: the pipeline fell behind",
                                              count=audio.dropped))
                await self._release_handlers(handlers)
        except trio.Cancelled:
            reason = "cancelled"
            raise
        except BaseException as exc:  # reported as an event, then re-raised to the caller
            if only_cancelled(exc):
                reason = "cancelled"
                raise
            reason = "error"
            leaf = sole_error(exc)
            failed = not isinstance(leaf, KeyboardInterrupt)  # Ctrl-C ends a live session: keep its audio
            self._emit(ev.Error(t=self.now(), where="session", message=one_line(leaf, with_type=True),
                                error_type=type(leaf).__name__))
            if leaf is not exc and isinstance(leaf, Exception):
                raise leaf from None  # the typed error, not a one-item exception group
            raise
        finally:
            self._set_drained()  # never leave a drained() waiter behind
            self._report_glitches()
            await self._close_sink(failed)
            self._finish(reason)

    async def _close_sink(self, failed: bool) -> None:
        """Close the sink (complete the reply file) before ``SessionEnded``; after an error, a sink
        that can ``discard()`` what it wrote (a WAV file) does so, leaving no half-written file."""
        sink = self.sink
        if sink is None or not self.close_sink:
            return
        discard = getattr(sink, "discard", None)
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            try:
                if failed and callable(discard):
                    discard()
                else:
                    await sink.aclose()
            except Exception as exc:  # the session's own outcome matters more than a failed close
                self._emit(ev.Error(t=self.now(), where="output", message=one_line(exc, with_type=True),
                                    error_type=type(exc).__name__))

    def _report_glitches(self) -> None:
        """Devices count lost input (overruns) and starved output (underruns): report them."""
        for where, obj, attr, what in (("input", self.source, "overruns", "input audio lost: the capture "
                                        "buffer overflowed"),
                                       ("output", self.sink, "underruns", "output audio ran dry: "
                                        "the speaker was starved")):
            count = getattr(obj, attr, 0)
            if isinstance(count, int) and count > 0:
                self._emit(ev.Warning(t=self.now(), where=where, message=what, count=count))

    def _finish(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._emit(ev.SessionEnded(t=self.now(), reason=reason))
        for sub in self._subscribers:
            sub.send_channel.close()

    def _asr_config(self) -> ASRConfig:
        a = self.assistant
        hotwords = tuple(self.config.hotwords) or (tuple(a.phrases()) if a else ())
        grammar = a.jsgf() if (a is not None and self.config.use_grammar) else None
        return ASRConfig(sample_rate=self.asr.capabilities.preferred_rate,
                         language=self.config.language or (a.language if a else None),
                         hotwords=hotwords, context=self.config.context or (a.description if a else None),
                         grammar=grammar)

    def _open_inline(self, stream: ASRStream) -> trio.MemoryReceiveChannel[TranscriptResult] | None:
        """A stream that says it ``delivers_inline`` (voicekit.asr.base) has its results taken by
        the feeding task right after each call, with no hop to a recognizer task; the turns that
        must wait for a reply go, in order, through a small queue to a task that waits."""
        self._inline = self._queue = None
        self._queued = 0
        if not getattr(stream, "delivers_inline", False):
            return None
        results = stream.__aiter__()
        if not isinstance(results, trio.MemoryReceiveChannel):
            return None
        self._inline = results
        self._queue, queue = trio.open_memory_channel[TranscriptResult](64)
        return queue

    def _prepare(self) -> Callable[[AudioFrame], AudioFrame | None]:
        """Source frame → mono frame at the VAD's rate, through the echo guard (None: the
        resampler holds it back for now). The returned function keeps the resampler's state;
        its ``flush`` attribute returns the resampler's tail at the end of the input."""
        rate = self.vad.sample_rate
        echo = self.config.echo
        resampler: StreamResampler | None = None

        def prepare(frame: AudioFrame) -> AudioFrame | None:
            nonlocal resampler
            if frame.sample_rate != rate or frame.channels != 1:
                if resampler is None:
                    resampler = StreamResampler(frame.sample_rate, rate, frame.channels, 1)
                out = resampler.process(frame)
                if out is None:
                    return None
                frame = out
            if echo is not None:
                frame = echo.process(frame)
            return frame

        def flush() -> AudioFrame | None:
            tail = resampler.flush() if resampler is not None else None
            return tail if tail is not None and tail.samples else None

        prepare.flush = flush  # type: ignore[attr-defined]
        return prepare

    async def _capture(self, audio: BoundedChannel[AudioFrame]) -> None:
        """Live input (``audio_policy="drop_oldest"``): read the source into the channel."""
        prepare = self._prepare()
        try:
            async for frame in self.source.frames():
                out = prepare(frame)
                if out is not None:
                    await audio.send(out)
            tail = prepare.flush()  # type: ignore[attr-defined]
            if tail is not None:
                await audio.send(tail)
        finally:
            await audio.aclose()
            await self.source.aclose()

    async def _listen(self, audio: BoundedChannel[AudioFrame], stream: ASRStream) -> None:
        """Live input: VAD, endpointer and ASR for what ``_capture`` queued; frames that arrived
        together are handled in one go."""
        self._endpointer = Endpointer(self.vad, self.config.endpointer)
        feed = self._feeder(stream)
        recv = audio.receive_channel
        async with recv:
            while True:
                try:
                    frame = recv.receive_nowait()
                except trio.WouldBlock:
                    try:
                        frame = await recv.receive()
                    except trio.EndOfChannel:
                        break
                except trio.EndOfChannel:
                    break
                await feed(frame)
        await self._finish_input(stream, feed)

    async def _listen_inline(self, stream: ASRStream) -> None:
        """Input that may wait (``audio_policy="block"``): the source's frames go through VAD,
        endpointer and ASR in this one task; a slow stage holds the source back directly."""
        self._endpointer = Endpointer(self.vad, self.config.endpointer)
        feed = self._feeder(stream)
        prepare = self._prepare()
        player = self.player if self.player is not None and self.player.pace else None
        if player is not None:
            player.clock_by_input(True)
        try:
            async for frame in self.source.frames():
                out = prepare(frame)
                if out is not None:
                    await feed(out)
                if player is not None:
                    player.tick()
            tail = prepare.flush()  # type: ignore[attr-defined]
        finally:
            if player is not None:
                player.clock_by_input(False)  # the input ended: the player keeps time itself
            await self.source.aclose()
        if tail is not None:
            await feed(tail)
        await self._finish_input(stream, feed)

    async def _finish_input(self, stream: ASRStream, feed: Callable[[AudioFrame], Awaitable[None]]) -> None:
        to_asr = self._to_asr
        for item in self._endpointer.flush():
            if isinstance(item, AudioFrame):
                await self._send_audio(item, stream, to_asr)
                self._on_audio(item)
                if self._inline is not None:
                    await self._take_results()
            else:
                await self._on_marker(item, stream)
        await stream.finish()
        if self._queue is not None:
            await self._take_results()
            await self._queue.aclose()  # the queued turns' task ends once they are done

    def _feeder(self, stream: ASRStream) -> Callable[[AudioFrame], Awaitable[None]]:
        """The per-frame work: endpointer (VAD) → ASR → interruption policy, in that order."""
        asr_rate = self.asr.capabilities.preferred_rate
        self._to_asr = to_asr = StreamResampler(self.vad.sample_rate, asr_rate) \
            if asr_rate != self.vad.sample_rate else None
        process = self._endpointer.process
        send_audio = stream.send_audio
        on_audio = self._on_audio
        on_marker = self._on_marker
        frame_type = AudioFrame
        take = self._take_results if self._inline is not None else None

        async def feed(frame: AudioFrame) -> None:
            for item in process(frame):
                if type(item) is frame_type:
                    if to_asr is None:
                        await send_audio(item)
                    else:
                        await self._send_audio(item, stream, to_asr)
                    on_audio(item)
                    if take is not None:
                        await take()
                else:
                    await on_marker(item, stream)  # type: ignore[arg-type]

        return feed

    @staticmethod
    async def _send_audio(frame: AudioFrame, stream: ASRStream, to_asr: StreamResampler | None) -> None:
        if to_asr is None:
            await stream.send_audio(frame)
            return
        out = to_asr.process(frame)
        if out is not None:
            await stream.send_audio(out)

    def _on_audio(self, frame: AudioFrame) -> None:
        end = frame.end
        if end > self._audio_pos:
            self._audio_pos = end
            if self._audio_waiters:
                self._advance_audio(end)
        reply = self._reply
        if reply is None or reply.done.is_set():
            return  # the per-frame policy calls matter only while a reply plays (reset() at each)
        if self._in_speech:
            # span of the user's speech so far: first voiced frame to the latest voiced frame
            last = min(end, self._endpointer.last_voiced_end)
            self._speech_voiced = max(0.0, last - self._voiced_at)
            self._decide(self.policy.on_voiced_audio(end, self._speech_voiced))
        else:
            self._decide(self.policy.on_tick(end))

    async def _on_marker(self, item: SpeechStart | SpeechEnd, stream: ASRStream) -> None:
        if isinstance(item, SpeechStart):
            self._in_speech = True
            self._speech_voiced = 0.0
            self._voiced_at = item.voiced_at
            self._emit(ev.SpeechStarted(t=self.now(), audio_t=item.t))
            self._decide(self.policy.on_speech_started(item.t))  # pause or cut before the ASR call
            await stream.speech_started(item.t)
            if self._inline is not None:
                await self._take_results()
        else:
            self._in_speech = False
            self._emit(ev.SpeechEnded(t=self.now(), audio_t=item.t, duration=item.duration))
            await stream.speech_ended(item.t)
            self._decide(self.policy.on_speech_ended(item.t))
            if self._inline is not None:
                await self._take_results()

    def _decide(self, decision: Decision) -> None:
        reply = self._reply
        if reply is None or decision is Decision.NONE or reply.done.is_set():
            return
        if decision is Decision.INTERRUPT:
            reply.interrupted = True
            reply.scope.cancel()
        elif decision is Decision.PAUSE and self.player is not None:
            self.player.pause()
        elif decision is Decision.RESUME and self.player is not None:
            self.player.resume()

    async def _recognize(self, stream: ASRStream) -> None:
        async for result in stream:
            if self._on_result(result):
                await self._start_turn(result)

    async def _recognize_queued(self, queue: trio.MemoryReceiveChannel[TranscriptResult]) -> None:
        """Inline results that had to wait (a request made during a reply), in order."""
        async with queue:
            async for result in queue:
                await self._start_turn(result)
                self._queued -= 1

    async def _take_results(self) -> None:
        """Results an inline stream produced during the call just made: handled here, in the
        feeding task, unless a turn has to wait for a reply (then, in order, by a task)."""
        recv, queue = self._inline, self._queue
        assert recv is not None and queue is not None
        while True:
            try:
                result = recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if self._queued:  # an earlier turn waits: this result goes after it
                self._queued += 1
                await queue.send(result)
            elif self._on_result(result):
                if self._turn_now(result):
                    await self._launch_reply()
                else:
                    self._queued += 1
                    await queue.send(result)

    def _on_result(self, result: TranscriptResult) -> bool:
        """The transcript event and the policy's say; True when the result should become a turn."""
        self._emit(_transcript_event(self.now(), result))
        reply = self._reply
        playing = reply is not None and not reply.done.is_set()
        if not result.is_final:
            if playing:
                self._decide(self.policy.on_partial(result.text))
            return False
        on_final = getattr(self.policy, "on_final", None)  # optional: policies may decide on finals
        if on_final is not None and playing:
            self._decide(on_final(result.text))
        return bool(result.text.strip())

    # -- turns and replies ------------------------------------------------------------------

    async def _start_turn(self, result: TranscriptResult) -> None:
        if not self._turn_now(result):
            await self._wait_quiet()  # a real request: answer it once the reply has finished
            self._open_turn(result)
        await self._launch_reply()

    def _turn_now(self, result: TranscriptResult) -> bool:
        """Open the turn at once if nothing is playing (or drop a backchannel said over a reply);
        False when it has to wait for the reply to finish."""
        previous = self._reply
        if previous is not None and not previous.done.is_set():
            # the user spoke during a reply and the policy did not interrupt it
            check = getattr(self.policy, "is_backchannel", None)
            if check is not None and check(result.text):
                return True  # "uh-huh" while the assistant talks is not a turn
            return False
        self._open_turn(result)
        return True

    def _open_turn(self, result: TranscriptResult) -> None:
        self._turn += 1
        turn_id = self._turn
        self._emit(ev.TurnEnded(t=self.now(), turn_id=turn_id, text=result.text))
        if self.assistant is None:
            return
        match = self.assistant.match(result.text)
        if match is None:
            return
        self._emit(ev.IntentMatched(t=self.now(), turn_id=turn_id, intent=match.intent, slots=match.slots))
        # unpaced input: announcements count audio seconds from the end of what the user said
        heard_at = result.end if result.end is not None else self._audio_pos
        turn = Turn(text=result.text, intent=match.intent, slots=match.slots, turn_id=turn_id,
                    context=self.context, language=result.language, emotion=result.emotion,
                    speaker=result.speaker, scheduler=functools.partial(self._schedule, heard_at=heard_at))
        self._start_reply(turn, match.handler)

    def _start_reply(self, turn: Turn, handler: Handler) -> None:
        """Start the handler now (it is called in the scheduler's next round); the task that reads
        and plays its reply is started by :meth:`_launch_reply`, which every caller awaits next."""
        state = _ReplyState(turn.turn_id, "", trio.CancelScope(), trio.Event(), [])
        self._reply = state
        self.policy.reset()
        assert self._handlers is not None
        self._launch = (state, self._handlers.start(handler, turn))

    async def _launch_reply(self) -> None:
        """Let the handler just started take the next round on its own (the caller's own work,
        reading the next frame say, waits one round), then start the reply task that reads it."""
        launch, self._launch = self._launch, None
        if launch is None:
            return
        state, call = launch
        assert self._replies is not None
        try:
            await call.entry.began.wait()
        finally:
            self._replies.start_soon(self._run_reply, state, call)

    @property
    def paced(self) -> bool:
        """Whether the input arrives as fast as it is spoken (then timers run on trio's clock);
        otherwise they run on the input's audio time."""
        return self.config.realtime

    def _schedule(self, text: str, after: float, *, heard_at: float | None = None) -> Announcement:
        assert self._scheduled is not None
        self._pending = {k: a for k, a in self._pending.items() if not a.scope.cancel_called}
        if len(self._pending) >= MAX_PENDING_ANNOUNCEMENTS:
            raise ConfigError(f"this session already has {MAX_PENDING_ANNOUNCEMENTS} announcements pending; "
                              f"cancel one before scheduling another")
        if self.paced:
            due = self.now() + after
        else:
            due = (self._audio_pos if heard_at is None else heard_at) + after
        announcement = Announcement(text, due, trio.CancelScope())
        self._pending[id(announcement)] = announcement
        self._scheduled.start_soon(self._announce, announcement, after)
        return announcement

    def _advance_audio(self, t: float) -> None:
        self._audio_pos = max(self._audio_pos, t)
        waiters = self._audio_waiters
        while waiters and waiters[0][0] <= self._audio_pos:
            heapq.heappop(waiters)[2].set()

    async def _sleep_until_audio(self, t: float) -> None:
        """Wait until the input has been heard up to audio second ``t``."""
        if self._audio_pos >= t:
            await trio.lowlevel.checkpoint()
            return
        reached = trio.Event()
        heapq.heappush(self._audio_waiters, (t, next(self._audio_seq), reached))
        await reached.wait()

    def _unpend(self, announcement: Announcement) -> None:
        if self._pending.pop(id(announcement), None) is not None:
            self._pending_changed.set()

    async def _say_due_announcements(self) -> None:
        """The input ended. Unpaced, it was read faster than it is spoken: announcements that fell
        due within its audio are still said (the later ones are dropped)."""
        if self.paced:
            return
        while any(a.due <= self._audio_pos and not a.scope.cancel_called for a in self._pending.values()):
            self._pending_changed = trio.Event()
            await self._pending_changed.wait()

    async def _wait_quiet(self) -> None:
        """Until no reply is playing (a reply that starts meanwhile is waited for too)."""
        while self._reply is not None and not self._reply.done.is_set():
            await self._reply.done.wait()

    async def _announce(self, announcement: Announcement, after: float) -> None:
        acquired = False
        try:
            with announcement.scope:
                if self.paced:
                    await trio.sleep(after)
                else:
                    await self._sleep_until_audio(announcement.due)
                # one announcement at a time, in the order they fell due (trio's lock is fair)
                await self._announce_lock.acquire()
                acquired = True
                await self._wait_quiet()  # never talk over a reply
            if announcement.scope.cancelled_caught:
                return
            self._unpend(announcement)

            async def say(turn: Turn) -> str:
                return announcement.text

            self._turn += 1
            turn = Turn(text="", intent="announcement", slots={}, turn_id=self._turn, context=self.context,
                        scheduler=functools.partial(self._schedule, heard_at=announcement.due))
            self._start_reply(turn, say)
            await self._launch_reply()
            if self._reply is not None:
                await self._reply.done.wait()
        finally:
            self._unpend(announcement)
            if acquired:
                self._announce_lock.release()

    async def _run_reply(self, state: _ReplyState, call: HandlerCall) -> None:
        structlog.contextvars.bind_contextvars(turn_id=state.turn_id)
        assistant = self.assistant
        assert assistant is not None
        try:
            with state.scope:
                pieces = call.pieces(timeout=assistant.handler_timeout, limit=assistant.max_reply_chars,
                                     on_cut=functools.partial(self._reply_cut, state.turn_id))
                try:
                    async with aclosing(pieces):
                        async for piece in pieces:
                            await self._say(state, piece)
                except HandlerError as exc:
                    self._emit(ev.Error(t=self.now(), turn_id=state.turn_id, where="handler",
                                        message=str(exc), error_type=type(exc.__cause__ or exc).__name__))
                    await self._say(state, assistant.apology)
            rate = self.player.sink.sample_rate if self.player else 0
            played = sum(n for _, n in state.pieces)
            if state.scope.cancelled_caught or state.interrupted:
                self._emit(ev.ReplyInterrupted(t=self.now(), turn_id=state.turn_id, text=state.text,
                                               samples_played=played, sample_rate=rate,
                                               heard_text=_heard(state, rate)))
            elif state.pieces:
                self._emit(ev.ReplyFinished(t=self.now(), turn_id=state.turn_id, text=state.text,
                                            samples_played=played, sample_rate=rate))
        finally:
            call.abandon()  # a reply cut before it read anything still stops its handler
            if self.player is not None:
                self.player.resume()
            state.done.set()
            structlog.contextvars.unbind_contextvars("turn_id")

    def _reply_cut(self, turn_id: int, what: str, length: int, limit: int) -> None:
        self._emit(ev.Warning(t=self.now(), turn_id=turn_id, where="handler",
                              message=f"{what} replied with {length} characters; only the first {limit} "
                                      f"(max_reply_chars) are spoken", count=length - limit))

    def _handler_returned_late(self, entry: RunningHandler) -> None:
        if self._ended:
            return
        gave_up = entry.gave_up_at if entry.gave_up_at is not None else entry.started
        self._emit(ev.Warning(t=self.now(), where="handler",
                              message=f"{entry.what} returned {trio.current_time() - gave_up:.1f} s after the "
                                      f"session gave up on it (it ignored cancellation); its answer was dropped"))

    async def _release_handlers(self, handlers: trio.Nursery) -> None:
        """The session is over: cancel every handler still running, and say which ones it has to
        wait for (blocked in a thread that trio cannot cancel)."""
        runner = self._handlers
        handlers.cancel_scope.cancel()
        if runner is None or not runner.running:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(_STUCK_GRACE_S):
            for entry in list(runner.running):
                await entry.done.wait()
        for entry in runner.stuck():
            self._emit(ev.Warning(t=self.now(), where="handler",
                                  message=f"{entry.what} is still blocked in a thread that cannot be cancelled; "
                                          f"the session ends when it returns (pass abandon_on_cancel=True "
                                          f"to trio.to_thread.run_sync)"))

    async def _say(self, state: _ReplyState, piece: str) -> None:
        if not state.pieces:
            self._emit(ev.ReplyStarted(t=self.now(), turn_id=state.turn_id, text=piece))
            if self.player is not None:
                self.player.start_reply()
        state.text = (state.text + " " + piece).strip()
        self._emit(ev.ReplyText(t=self.now(), turn_id=state.turn_id, text=piece))
        await self._speak(state, piece)

    async def _speak(self, state: _ReplyState, text: str) -> None:
        """Synthesize ahead into a bounded channel while the player plays from it."""
        index = len(state.pieces)
        state.pieces.append((text, 0))
        if self.tts is None or self.player is None:
            return
        player, tts = self.player, self.tts
        before = player.played
        send, recv = trio.open_memory_channel[AudioFrame](self.config.tts_buffer_frames)

        async def produce() -> None:
            total = 0.0
            try:
                async with send, aclosing(tts.synthesize(text, language=self.config.language)) as frames:  # type: ignore[type-var]
                    async for frame in frames:
                        total += frame.duration
                        try:
                            send.send_nowait(frame)  # room in the buffer: no task switch
                        except trio.WouldBlock:
                            await send.send(frame)
                state.synth_seconds[index] = total
            except VoicekitError as exc:
                self._emit(ev.Error(t=self.now(), turn_id=state.turn_id, where="tts",
                                    message=one_line(exc, with_type=True), error_type=type(exc).__name__))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                async with recv:
                    await player.play(recv)
        finally:
            state.pieces[index] = (text, player.played - before)


def _heard(state: _ReplyState, sink_rate: int) -> str:
    """The words of the reply the user actually heard, judged by the audio played: whole pieces
    that played to the end, then the played fraction of the piece that was cut."""
    heard: list[str] = []
    for i, (text, played) in enumerate(state.pieces):
        total = state.synth_seconds.get(i)
        played_s = played / sink_rate if sink_rate else 0.0
        if total is not None and played_s >= total - 1e-6:
            heard.append(text)
            continue
        words = text.split()
        if total:
            heard.extend(words[: math.floor(len(words) * played_s / total)])
        break
    return " ".join(heard)


def _transcript_event(t: float, r: TranscriptResult) -> ev.Transcript:
    return ev.Transcript(t=t, text=r.text, is_final=r.is_final, utterance_id=r.utterance_id, start=r.start,
                         end=r.end, words=r.words, language=r.language, emotion=r.emotion, speaker=r.speaker)


@asynccontextmanager
async def open_session(source: AudioSource, **kwargs: Any) -> AsyncIterator[Session]:
    """Start a session in a nursery of its own; leaving the block cancels what is left."""
    session = Session(source, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        try:
            yield session
        finally:
            nursery.cancel_scope.cancel()
