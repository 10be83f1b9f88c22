"""One conversation of ``voicekit serve``: a WebSocket past its hello, and the session it talks to.

Four tasks in the conversation's nursery: the browser → session direction (:meth:`Conversation._pump`,
with the idle timeout and the protocol checks), the session itself, the session → browser
direction (every event, in order), and the backlog watch that sheds a conversation fallen behind
real time. Whichever ends the conversation calls :meth:`Conversation.finish` with the close code,
the reason and the error to tell the client; that cancels the other three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import structlog
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from voicekit.errors import first_error, leaves, one_line, only_cancelled
from voicekit.events import WarningEvent
from voicekit.logging import get_logger
from voicekit.serve.fallback import FallbackVAD
from voicekit.serve.metrics import TurnTimer
from voicekit.serve.protocol import (
    Audio,
    AudioFormat,
    CloseCode,
    End,
    ErrorMessage,
    EventMessage,
    Hello,
    ProtocolError,
    Ready,
    ServerProtocol,
    State,
    encode,
)
from voicekit.serve.stream import WebSocketSink, WebSocketSource
from voicekit.session.session import Session

if TYPE_CHECKING:
    from voicekit.serve.agent import AgentSession
    from voicekit.serve.server import VoiceServer

__all__ = ["BACKLOG_INTERVAL", "END_KINDS", "Conversation", "describe", "must_propagate", "send_error"]

log = get_logger("voicekit.serve")

#: How often each conversation's audio backlog is checked.
BACKLOG_INTERVAL: Final = 0.1
#: How a conversation ended (its close reason) as a metrics label.
END_KINDS: Final = {"session ended": "session_ended", "client left": "client_left", "idle timeout": "idle_timeout",
                    "fell behind real time": "backlog", "server restarting": "drained",
                    "session failed": "session_failed"}


def must_propagate(exc: BaseException) -> bool:
    """What a connection may pass up to the server: Ctrl-C, and the server's own cancellation.
    Anything else (an error, ``SystemExit`` from a handler, a mix with a cancellation) ends that
    connection only; a pending cancellation is delivered again at the server's next checkpoint."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[0] is not None or only_cancelled(exc)
    return isinstance(exc, (KeyboardInterrupt, trio.Cancelled))


def describe(exc: BaseException) -> str:
    """One line for the first real error in ``exc`` (exception groups unwrapped, secrets redacted)."""
    leaf = first_error(exc, BaseException) or leaves(exc)[0]
    return one_line(leaf, with_type=not isinstance(leaf, Exception))


async def send_error(ws: WebSocketConnection, error: ErrorMessage) -> None:
    try:
        await ws.send_message(encode(error))
    except ConnectionClosed:
        pass


class Conversation:
    """A conversation from its ``ready`` to its close: :meth:`run` returns the close code and reason."""

    def __init__(self, server: VoiceServer, ws: WebSocketConnection, proto: ServerProtocol, hello: Hello) -> None:
        self.server = server
        self.ws = ws
        self.proto = proto
        self.hello = hello
        self.scope = trio.CancelScope()
        self.close_code: int = CloseCode.NORMAL
        self.reason = "session ended"
        self.error: ErrorMessage | None = None
        self.failure: BaseException | None = None
        self.done = False
        self.backlog = 0.0  # seconds behind real time, at the last check
        self.turns = TurnTimer(server.metrics)

    def finish(self, code: int, reason: str, error: ErrorMessage | None = None) -> None:
        """End the conversation (the first call decides how)."""
        if not self.done:
            self.done = True
            self.close_code, self.reason, self.error = code, reason, error
        self.scope.cancel()

    async def run(self) -> tuple[int, str]:
        server, ws, hello = self.server, self.ws, self.hello
        cfg = server.config
        rate = server.recipe.reply_rate
        source = WebSocketSource(hello.sample_rate)
        sink = WebSocketSink(ws, rate) if rate else None
        session = server.recipe.build(source, sink)
        structlog.contextvars.bind_contextvars(session_id=session.id)  # every later line of this connection
        log.info("conversation", client=hello.client, sample_rate=hello.sample_rate)
        try:
            await ws.send_message(encode(Ready(session_id=session.id,
                                               assistant=server.recipe.assistant.name if server.recipe.assistant
                                               else None, sample_rate=hello.sample_rate,
                                               max_audio_bytes=cfg.max_audio_bytes,
                                               max_text_bytes=cfg.max_text_bytes)))
            if rate:
                await ws.send_message(encode(AudioFormat(sample_rate=rate)))
        except ConnectionClosed:
            return CloseCode.NORMAL, ""
        server.stats.sessions_started += 1
        server.metrics.sessions_started.inc()
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    server.conversations[self] = None
                    nursery.start_soon(self._pump, source)
                    nursery.start_soon(self._run_session, session)
                    nursery.start_soon(self._forward, session, sink)
                    nursery.start_soon(self._watch_backlog, source, session)
        finally:
            server.conversations.pop(self, None)
        kind = END_KINDS.get(self.reason, "protocol_error")
        server.metrics.sessions_ended.labels(kind).inc()
        if kind == "protocol_error":
            server.metrics.errors.labels("protocol").inc()
        log.info("conversation ended", close_code=int(self.close_code), reason=self.reason)
        if self.error is not None:
            await send_error(ws, self.error)
        return self.close_code, self.reason

    async def _watch_backlog(self, source: WebSocketSource, session: Session | AgentSession) -> None:
        """A conversation that falls behind real time is reported (a warning event to the client,
        a log line, the metrics) and closed with 1013 and an ``overloaded`` error, before its
        audio would be dropped: never a silent, unbounded lag."""
        server = self.server
        bound = server.config.max_backlog
        vad = getattr(session, "vad", None)
        fallback = vad if isinstance(vad, FallbackVAD) else None
        switch_at = server.config.vad_fallback_backlog
        while True:
            await trio.sleep(BACKLOG_INTERVAL)
            backlog = self.backlog = source.backlog(session.audio_position)
            server.metrics.audio_backlog.observe(backlog)
            if fallback is not None and backlog > switch_at and fallback.switch():
                await self._fall_back(fallback, backlog, session)
            if backlog <= bound:
                continue
            server.stats.shed += 1
            server.metrics.sessions_shed.inc()
            server.metrics.errors.labels("backlog").inc()
            log.warning("fell behind real time", backlog=round(backlog, 3), max_backlog=bound,
                        loop_lag=round(server.loop_lag, 4), active=server.active)
            text = (f"this conversation fell {backlog:.1f} s behind real time (over the server's --max-backlog of "
                    f"{bound:g} s): the server is overloaded")
            await self._warn(session, text)
            self.finish(CloseCode.TRY_AGAIN_LATER, "fell behind real time",
                        ErrorMessage(code="overloaded", message=f"{text}; reconnect to carry on"))
            return

    async def _fall_back(self, vad: FallbackVAD, backlog: float, session: Session | AgentSession) -> None:
        """The first step when a conversation lags: its cheaper VAD, reported (a warning event to
        the client, a log line, the metrics). Shedding comes only if it still lags."""
        server = self.server
        server.stats.vad_fallbacks += 1
        server.metrics.vad_fallbacks.inc()
        log.warning("vad fallback", backlog=round(backlog, 3), vad=vad.primary_name, fallback=vad.fallback_name,
                    vad_fallback_backlog=server.config.vad_fallback_backlog, loop_lag=round(server.loop_lag, 4),
                    active=server.active)
        text = (f"this conversation fell {backlog:.1f} s behind real time (over the server's --vad-fallback-backlog "
                f"of {server.config.vad_fallback_backlog:g} s): voice activity detection switched from "
                f"{vad.primary_name} to the cheaper {vad.fallback_name}")
        await self._warn(session, text)

    async def _warn(self, session: Session | AgentSession, text: str) -> None:
        """A ``warning`` event to the client, given up after the close timeout (it may be gone)."""
        warning = WarningEvent(t=session.now(), where="serve", message=text)
        with trio.move_on_after(self.server.config.close_timeout):
            try:
                await self.ws.send_message(encode(EventMessage(warning.to_dict())))
            except ConnectionClosed:
                pass

    async def _pump(self, source: WebSocketSource) -> None:
        """The browser → session direction; the peer closing the socket ends the conversation."""
        server, proto = self.server, self.proto
        idle = server.config.idle_timeout
        try:
            while True:
                with trio.move_on_after(idle) as waiting:
                    data = await self.ws.get_message()
                if waiting.cancelled_caught:
                    if proto.state is State.ENDED:
                        continue  # the input has ended: the session finishes its replies, then closes
                    server.stats.idle_closed += 1
                    log.info("idle", seconds=idle)
                    self.finish(CloseCode.POLICY_VIOLATION, "idle timeout", ErrorMessage(
                        code="idle_timeout", message=f"nothing received for {idle:g} s; send audio, or "
                                                     "{\"type\": \"end\"} when the microphone stops"))
                    return
                message = proto.receive(data)
                if isinstance(message, Audio):
                    if message.pcm:
                        await source.push(message.pcm)
                elif isinstance(message, End):
                    source.end()
        except ConnectionClosed:
            self.finish(CloseCode.GOING_AWAY, "client left")
        except ProtocolError as exc:
            if exc.code == "unauthorized":
                server.stats.rejected_unauthorized += 1
            else:
                server.stats.protocol_errors += 1
            log.info("refused", code=exc.code, error=str(exc))
            self.finish(exc.close_code, exc.code, ErrorMessage(code=exc.code, message=str(exc)))

    async def _run_session(self, session: Session | AgentSession) -> None:
        stats = self.server.stats
        reason = "input ended"
        try:
            await session.run()
        except BaseException as exc:
            if only_cancelled(exc):
                reason = "cancelled"
                raise
            reason = "error"
            if must_propagate(exc):  # Ctrl-C
                raise
            # an error (already an error event), or SystemExit & co. from a handler: this
            # conversation fails, the server goes on; _forward ends the conversation after the events
            self.failure = exc
            log.warning("session failed", error=describe(exc))
        finally:
            stats.sessions_finished += 1
            stats.end_reasons.append(reason)

    async def _forward(self, session: Session | AgentSession, sink: WebSocketSink | None) -> None:
        """The session → browser direction: every event, in order, until the session ends."""
        try:
            async for event in session.events():
                self.turns.observe(event, session.now, sink)
                await self.ws.send_message(encode(EventMessage(event.to_dict())))
        except ConnectionClosed:
            self.finish(CloseCode.GOING_AWAY, "client left")
            return
        if self.failure is not None:
            text = describe(self.failure)
            self.finish(CloseCode.INTERNAL_ERROR, "session failed",
                        ErrorMessage(code="session_failed", message=f"the session failed: {text}"))
        else:
            self.finish(CloseCode.NORMAL, "session ended")
