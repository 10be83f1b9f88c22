"""A live session: the trio pipeline of DESIGN.md.

::

    source ─► resample ─► endpointer (VAD) ─► ASR stream ─► turns ─► handler ─► TTS ─► player ─► sink
                              │ speech during a reply ─► interruption policy ─► cancel the reply

Every stage is a task in the session's nursery, every edge a bounded channel, and every reply
runs in its own cancel scope: a barge-in is one ``cancel()``, after which nothing of that reply
reaches the sink. Everything that happens is a frozen event (``voicekit.events``).

The parts, one module each: :mod:`~voicekit.session.listening` (input → VAD → ASR),
:mod:`~voicekit.session.turns` (transcripts → turns → replies, barge-in),
:mod:`~voicekit.session.replies` (speaking a reply), :mod:`~voicekit.session.announcements`,
:mod:`~voicekit.session.eventlog` (the event stream). This module builds them and runs them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Required, TypedDict, Unpack

import attrs
import structlog
import trio

from voicekit import events as ev
from voicekit.asr.base import ASRConfig, ASREngine
from voicekit.audio.echo import EchoGuard
from voicekit.audio.sinks import AudioSink
from voicekit.audio.sources import AudioSource
from voicekit.errors import ConfigError, one_line, only_cancelled, sole_error
from voicekit.handlers.assistant import Assistant
from voicekit.session.announcements import AudioTime
from voicekit.session.eventlog import EventHub
from voicekit.session.handling import HandlerRunner, RunningHandler
from voicekit.session.interruption import InterruptionPolicy, VADInterruption
from voicekit.session.listening import Listener
from voicekit.session.player import ReplyPlayer
from voicekit.session.replies import ReplyRunner
from voicekit.session.turns import Turns
from voicekit.tts.base import TTSEngine
from voicekit.vad.base import VADBackend
from voicekit.vad.endpointer import EndpointerConfig

# how long the end of a session waits for handlers it gave up on before saying it is waiting
_STUCK_GRACE_S = 0.1


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


class SessionParts(TypedDict, total=False):
    """The keyword arguments of :class:`Session` and :func:`open_session` (type checkers check
    each one; an unknown or missing keyword is a ``TypeError`` as for any function)."""

    asr: Required[ASREngine]
    vad: Required[VADBackend]
    assistant: Assistant | None
    tts: TTSEngine | None
    sink: AudioSink | None
    interruption: InterruptionPolicy | None  # default: VADInterruption(pause=True)
    config: SessionConfig | None
    names: dict[str, str] | None  # plugin names for SessionStarted (default: the class names)
    close_sink: bool  # default True; False keeps one sink open across several sessions


_REQUIRED_PARTS = ("asr", "vad")


def _check_parts(parts: dict[str, Any]) -> None:
    """What Python says of a wrong keyword, since ``**parts`` accepts any."""
    unknown = sorted(set(parts) - set(SessionParts.__annotations__))
    if unknown:
        raise TypeError(f"Session() got an unexpected keyword argument {unknown[0]!r}")
    missing = [name for name in _REQUIRED_PARTS if name not in parts]
    if missing:
        raise TypeError(f"Session() missing 1 required keyword-only argument: {missing[0]!r}")


class Session:
    """One conversation. Build it, then either ``await session.run()`` in your nursery and read
    ``session.events()``, or use :func:`open_session`.

    ``Session(source, *, asr, vad, assistant=None, tts=None, sink=None, interruption=None,
    config=None, names=None, close_sink=True)``: see :class:`SessionParts`."""

    def __init__(self, source: AudioSource, **parts: Unpack[SessionParts]) -> None:
        _check_parts(dict(parts))
        self.source = source
        # the session closes the sink when it ends (a WAV file is complete only once closed);
        # pass close_sink=False to keep one sink open across several sessions
        self.close_sink = parts.get("close_sink", True)
        self.asr = asr = parts["asr"]
        self.vad = vad = parts["vad"]
        self.assistant = assistant = parts.get("assistant")
        self.tts = tts = parts.get("tts")
        self.sink = sink = parts.get("sink")
        self.config = config = parts.get("config") or SessionConfig()
        # default: pause the reply the moment the user speaks, cut it after 300 ms of speech,
        # resume it after a shorter sound (a cough, a click)
        self.policy: InterruptionPolicy = parts.get("interruption") or VADInterruption(pause=True)
        self.id = uuid.uuid4().hex[:12]
        self.context: dict[str, Any] = {}
        self.names = parts.get("names") or {}
        echo = config.echo
        if echo is not None and vad.sample_rate != 16000:
            raise ConfigError("the echo guard works at 16 kHz: run the VAD at 16000 Hz")
        self.player = ReplyPlayer(sink, chunk_ms=config.chunk_ms, realtime=config.realtime,
                                  on_played=echo.reference if echo is not None else None) \
            if sink is not None else None
        self._hub = hub = EventHub()
        self._emit = hub.emit
        self._primary = self.subscribe(config.event_buffer)
        self._audio = audio = AudioTime()
        replies = ReplyRunner(hub, assistant, tts, self.player, language=config.language,
                              buffer_frames=config.tts_buffer_frames)
        self._turns = Turns(hub=hub, assistant=assistant, policy=self.policy, player=self.player,
                            replies=replies, audio=audio, context=self.context, paced=self.paced)
        self._listener = Listener(source, vad=vad, asr=asr, config=config, player=self.player,
                                  turns=self._turns, hub=hub, audio=audio)
        self._handlers: HandlerRunner | None = None
        self._ended = False
        self._drained = trio.Event()

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, buffer: int = 1024) -> trio.MemoryReceiveChannel[ev.Event]:
        """Another reader of the event stream (drop-oldest when it falls ``buffer`` behind)."""
        return self._hub.subscribe(buffer)

    async def events(self) -> AsyncIterator[ev.Event]:
        """Every event of the session, in order; ends after ``SessionEnded``."""
        async with self._primary:
            async for event in self._primary:
                yield event

    @property
    def dropped_events(self) -> int:
        return self._hub.dropped

    def now(self) -> float:
        return self._hub.now()

    @property
    def audio_position(self) -> float:
        """Seconds of input audio the pipeline (VAD, ASR) has taken in so far; a server compares
        it with what it received to see whether the session keeps up with real time."""
        return self._audio.position

    @property
    def paced(self) -> bool:
        """Whether the input arrives as fast as it is spoken (then timers run on trio's clock);
        otherwise they run on the input's audio time."""
        return self.config.realtime

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

    # -- the pipeline -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the input ends and every reply has finished (or until cancelled)."""
        self._hub.start()
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
                if self.assistant is not None:
                    self._handlers.spare()  # a task waits for the first handler (see HandlerRunner.spare)
                async with trio.open_nursery() as replies, trio.open_nursery() as scheduled:
                    self._turns.begin(self._handlers, replies, scheduled)
                    async with self.asr.open_stream(self._asr_config()) as stream:
                        await self._listener.run(stream)
                    self._drained.set()
                    await self._turns.announcements.say_due()
                    scheduled.cancel_scope.cancel()  # the input ended: pending announcements are dropped
                    if self._listener.dropped:
                        self._emit(ev.Warning(t=self.now(), where="audio",
                                              message="input audio dropped: the pipeline fell behind",
                                              count=self._listener.dropped))
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
            self._drained.set()  # never leave a drained() waiter behind
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
        self._hub.close()

    def _asr_config(self) -> ASRConfig:
        a = self.assistant
        hotwords = tuple(self.config.hotwords) or (tuple(a.phrases()) if a else ())
        grammar = a.jsgf() if (a is not None and self.config.use_grammar) else None
        return ASRConfig(sample_rate=self.asr.capabilities.preferred_rate,
                         language=self.config.language or (a.language if a else None),
                         hotwords=hotwords, context=self.config.context or (a.description if a else None),
                         grammar=grammar)

    # -- handlers the session gave up on ----------------------------------------------------

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


@asynccontextmanager
async def open_session(source: AudioSource, **parts: Unpack[SessionParts]) -> AsyncIterator[Session]:
    """Start a session in a nursery of its own; leaving the block cancels what is left."""
    session = Session(source, **parts)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        try:
            yield session
        finally:
            nursery.cancel_scope.cancel()
