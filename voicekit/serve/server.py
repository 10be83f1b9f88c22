"""``voicekit serve``: a small web page and a WebSocket endpoint, on one port, that let a browser
talk to an assistant.

One HTTP/1.1 listener (h11) serves the page's static files; a request that asks to upgrade to a
WebSocket on ``/ws`` is handed, bytes and all, to trio-websocket. Each WebSocket is one
conversation: the browser's microphone is the session's :class:`WebSocketSource`, the replies go
back through a :class:`WebSocketSink`, and every session event is forwarded as JSON. The session
runs in the connection's nursery, so a closed socket cancels it and nothing outlives it.

Protections: loopback by default (a non-loopback address needs a token); the token checked in
the hello; Host checked against DNS rebinding and Origin against cross-site pages; message size
limits; a cap on concurrent conversations that only a client past its hello can take; a separate,
small pool (global and per client address) for connections that have not said hello yet; timeouts
for the HTTP request head, the hello and an idle conversation. docs/security.md has the reasons.

In a fleet (docs/scaling.md): ``/healthz`` (alive) and ``/readyz`` (accepting: not full, event loop
not lagging, not draining) for a load balancer, ``/metrics`` in the Prometheus format, admission
control (a new conversation is refused, retryably, before it would slow the running ones), a
conversation that falls behind real time is shed, and :meth:`VoiceServer.drain` for SIGTERM.

The parts, one module each: :mod:`~voicekit.serve.config` (settings, binding rules),
:mod:`~voicekit.serve.http` (requests, answers, static files, Host/Origin checks),
:mod:`~voicekit.serve.admission` (pending pool, readiness, event-loop lag),
:mod:`~voicekit.serve.conversation` (one conversation's tasks), :mod:`~voicekit.serve.stream`
(the WebSocket as audio source and sink), :mod:`~voicekit.serve.metrics`; this module ties them
together: listening, routing, the hello, and the drain.
"""

from __future__ import annotations

import json
from importlib import resources

import h11
import structlog
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from voicekit.errors import ConfigError
from voicekit.logging import get_logger
from voicekit.serve import admission
from voicekit.serve.admission import REFUSAL_REASONS, RETRY_AFTER, LoopLag, PendingPool, Ticket
from voicekit.serve.agent import AgentRecipe
from voicekit.serve.config import ServeConfig, SessionRecipe, check_bind, is_loopback
from voicekit.serve.conversation import BACKLOG_INTERVAL, Conversation, describe, must_propagate, send_error
from voicekit.serve.http import (
    CSP,
    FRAME_ERRORS,
    HEALTH_PATH,
    MAX_REQUEST_HEAD,
    METRICS_PATH,
    READY_PATH,
    STATIC,
    WS_PATH,
    HeadTooLarge,
    PrefixedStream,
    Request,
    check_host,
    check_origin,
    client_address,
    close_frame,
    close_reason,
    linger,
    peer_address,
    read_head,
    respond,
)
from voicekit.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from voicekit.serve.metrics import MISSING as METRICS_MISSING
from voicekit.serve.metrics import ServeMetrics, ServerStats
from voicekit.serve.protocol import CloseCode, ErrorMessage, Hello, ProtocolError, ServerProtocol
from voicekit.serve.stream import BACKLOG_SLACK, WebSocketSink, WebSocketSource

__all__ = ["BACKLOG_INTERVAL", "BACKLOG_SLACK", "RETRY_AFTER", "STATIC", "ServeConfig", "ServerStats",
           "SessionRecipe", "VoiceServer", "WebSocketSink", "WebSocketSource", "check_bind", "is_loopback"]

log = get_logger("voicekit.serve")


class VoiceServer:
    """Serve the page and one conversation per WebSocket (a pipeline session from a
    :class:`SessionRecipe`, or a realtime agent from an :class:`~voicekit.serve.agent.AgentRecipe`).
    ``await server.serve()`` runs until cancelled; with ``nursery.start(server.serve)`` you get the URL once it listens.
    :meth:`drain` (what ``voicekit serve`` does on SIGTERM) stops taking conversations, lets the
    running ones finish, and closes the rest with 1012 at ``drain_timeout``."""

    def __init__(self, recipe: SessionRecipe | AgentRecipe, config: ServeConfig | None = None) -> None:
        self.recipe = recipe
        self.config = config or ServeConfig()
        self.port: int | None = None
        self.active = 0  # running conversations (each past a valid hello)
        self.stats = ServerStats()
        self.metrics = ServeMetrics()
        self.draining = False
        self.conversations: dict[Conversation, None] = {}  # the running ones
        self._lag = LoopLag()
        self._conversing = 0  # connections admitted to a conversation and not yet closed
        self._static: dict[str, bytes] = {}
        self._loopback = is_loopback(self.config.host)
        self._pool = PendingPool(self.config, self.stats)

    @property
    def loop_lag(self) -> float:
        """The event-loop lag (seconds), mean over the last second."""
        return self._lag.value

    @property
    def url(self) -> str:
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        check_bind(cfg.host, cfg.token)
        folder = resources.files("voicekit.serve") / "static"
        self._static = {name: (folder / name).read_bytes() for name, _ in STATIC.values()}
        listeners = await self._listen()
        sock = listeners[0].socket
        self.port = sock.getsockname()[1]
        log.info("listening", url=self.url, max_sessions=cfg.max_sessions, token=cfg.token is not None)
        self.metrics.max_sessions.set(cfg.max_sessions)
        self._update_ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_loop)
            task_status.started(self.url)
            await trio.serve_listeners(self._handle, listeners)

    async def _listen(self) -> list[trio.SocketListener]:
        """The listening sockets (a worker of ``voicekit serve --workers`` overrides this to share
        its port with its siblings: voicekit.serve.workers)."""
        cfg = self.config
        try:
            listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}; pick another "
                              "--port (0 = any free port) or stop what uses it") from exc
        if cfg.port == 0:  # each listener would get its own free port: keep one
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        return listeners

    # -- capacity, readiness, drain

    def readiness(self) -> tuple[bool, str]:
        """Whether a new conversation would be admitted now, and if not why: ``"draining"``,
        ``"max_sessions"`` (full) or ``"loop_lag"`` (the event loop is late: more work would slow
        the running conversations)."""
        return admission.readiness(self.config, draining=self.draining, active=self.active, loop_lag=self.loop_lag)

    def probe_readiness(self) -> tuple[bool, str]:
        """What ``/readyz`` answers: :meth:`readiness` here; a worker of ``voicekit serve --workers``
        answers for all the workers behind its port (voicekit.serve.workers)."""
        return self.readiness()

    def _update_ready(self) -> None:
        self.metrics.ready.set(1 if self.readiness()[0] else 0)
        self.metrics.sessions_active.set(self.active)

    async def _watch_loop(self) -> None:
        """Measure the event-loop lag; with each sample, note the largest audio backlog among the
        conversations and whether the server is ready."""
        def sampled(lag: float) -> None:
            self.metrics.loop_lag.observe(lag)
            self.metrics.loop_lag_seconds.set(self.loop_lag)
            self.metrics.audio_backlog_max.set(max((c.backlog for c in self.conversations), default=0.0))
            self._update_ready()

        await self._lag.watch(sampled)

    async def drain(self) -> None:
        """Stop taking conversations (``/readyz`` answers 503 at once, new ones are refused with
        1013 or 503), let the running ones finish for up to ``drain_timeout`` seconds, then close
        what is left with 1012 (service restart) and a ``restarting`` error, which tells a client
        to reconnect (behind a load balancer, to another worker). Returns when every conversation
        has closed; the caller then stops the server."""
        cfg = self.config
        self.draining = True
        self.metrics.draining.set(1)
        self._update_ready()
        log.info("draining", active=self.active, timeout=cfg.drain_timeout)
        with trio.move_on_after(cfg.drain_timeout):
            while self._conversing:
                await trio.sleep(0.05)
        left = self.active
        with trio.move_on_after(2 * cfg.close_timeout + 1):
            while self._conversing:
                for conv in list(self.conversations):
                    if not conv.done:
                        self.stats.drained += 1
                        conv.finish(CloseCode.SERVICE_RESTART, "server restarting", ErrorMessage(
                            code="restarting", message="the server is restarting; reconnect to carry on (another "
                                                       "server will answer)"))
                await trio.sleep(0.05)
        log.info("drained", closed_at_deadline=left)

    @property
    def pending(self) -> int:
        """Connections that have not said a valid hello yet."""
        return len(self._pool)

    # -- connections

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.stats.connections += 1
        cfg = self.config
        address = peer_address(stream)
        structlog.contextvars.bind_contextvars(peer=address)  # this task's (this connection's) lines only
        # a trusted proxy's connection is counted against its client, named in the request head
        proxied = cfg.trusts(address)
        async with stream:
            try:
                ticket = self._pool.admit(None if proxied else address)
                if ticket is None:
                    await self._too_many(stream, h11.Connection(h11.SERVER), address)
                    await linger(stream, min(0.5, cfg.close_timeout), limit=64 * 1024)
                    return
                try:
                    with ticket.scope:
                        await self._handle_http(stream, ticket)
                        await linger(stream, cfg.close_timeout)
                finally:
                    self._pool.release(ticket)
                    if ticket.admitted:
                        self._conversing -= 1
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
                pass  # the peer left
            except BaseException as exc:  # one bad connection must never stop the server
                if must_propagate(exc):
                    raise
                self.stats.connection_failures += 1
                self.metrics.errors.labels("connection").inc()
                log.warning("connection failed", error=describe(exc))

    async def _too_many(self, stream: trio.SocketStream, conn: h11.Connection, address: str) -> None:
        self.stats.rejected_address += 1
        log.info("refused", code="too_many_connections", client=address)
        await respond(stream, conn, 429,
                       f"too many connections from {address} that have not started a conversation "
                       f"(at most {self.config.max_pending_per_address}); try again later\n".encode())

    async def _count_client(self, stream: trio.SocketStream, conn: h11.Connection, ticket: Ticket,
                            request: Request) -> bool:
        """A trusted proxy's connection: count it against the client the proxy names (False, and
        answered 429, when that client has its share of the pending pool already)."""
        proxy = peer_address(stream)
        client = client_address(proxy, request, self.config.trusts, self.config.proxy_header)
        structlog.contextvars.bind_contextvars(peer=client, proxy=proxy)
        if self._pool.assign(ticket, client):
            return True
        await self._too_many(stream, conn, client)
        return False

    async def _handle_http(self, stream: trio.SocketStream, ticket: Ticket) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        try:
            with trio.fail_after(self.config.request_timeout):
                got = await read_head(stream, conn)
        except trio.TooSlowError:
            await respond(stream, conn, 408, b"request head not received in time\n")
            return
        except HeadTooLarge:
            await respond(stream, conn, 431, f"request head over {MAX_REQUEST_HEAD} bytes\n".encode())
            return
        except h11.RemoteProtocolError as exc:
            await respond(stream, conn, exc.error_status_hint, f"bad HTTP request: {exc}\n".encode())
            return
        if got is None:
            return
        request, raw = got
        if ticket.address is None and not await self._count_client(stream, conn, ticket, request):
            return
        refusal = check_host(request, loopback=self._loopback, token=self.config.token)
        if refusal is not None:
            await respond(stream, conn, 403, refusal.encode() + b"\n")
            return
        if request.path in (HEALTH_PATH, READY_PATH, METRICS_PATH):
            await self._probe(stream, conn, request)
            return
        if request.path == WS_PATH:
            if not request.wants_websocket:
                await respond(stream, conn, 426, b"this is the WebSocket endpoint; open / in a browser\n",
                               extra=(("upgrade", "websocket"),))
                return
            if request.headers.get("sec-websocket-version") != "13" or "sec-websocket-key" not in request.headers:
                await respond(stream, conn, 400, b"not a WebSocket version 13 handshake\n",
                               extra=(("sec-websocket-version", "13"),))
                return
            refusal = check_origin(request, self.config.allowed_origins)
            if refusal is not None:
                await respond(stream, conn, 403, refusal.encode() + b"\n")
                return
            ready, why = self.readiness()
            if not ready and self.config.refuse_at_upgrade:
                self._count_refusal(why)
                self.stats.refused_at_upgrade += 1
                await respond(stream, conn, 503, (self._refusal_text(why) + "\n").encode(),
                               extra=(("retry-after", str(RETRY_AFTER)),))
                return
            await self._websocket(stream, raw, ticket)
            return
        if request.method not in ("GET", "HEAD"):
            await respond(stream, conn, 405, b"only GET and HEAD\n", extra=(("allow", "GET, HEAD"),))
            return
        entry = STATIC.get(request.path)
        if entry is None:
            await respond(stream, conn, 404, b"not found; the page is at /\n", head_only=request.method == "HEAD")
            return
        name, content_type = entry
        await respond(stream, conn, 200, self._static[name], content_type, head_only=request.method == "HEAD",
                       extra=(("content-security-policy", CSP),))

    async def _probe(self, stream: trio.SocketStream, conn: h11.Connection, request: Request) -> None:
        """``/healthz``: the process answers (200). ``/readyz``: 200 when a new conversation would
        be admitted, else 503 with the reason and Retry-After. ``/metrics``: Prometheus text."""
        head = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            await respond(stream, conn, 405, b"only GET and HEAD\n", extra=(("allow", "GET, HEAD"),))
            return
        if request.path == HEALTH_PATH:
            await respond(stream, conn, 200, b"ok\n", head_only=head)
        elif request.path == READY_PATH:
            ready, why = self.probe_readiness()
            body = json.dumps({"ready": ready, "reason": why, "active": self.active,
                               "max_sessions": self.config.max_sessions, "draining": self.draining,
                               "loop_lag": round(self.loop_lag, 4)}).encode() + b"\n"
            await respond(stream, conn, 200 if ready else 503, body, "application/json", head_only=head,
                           extra=() if ready else (("retry-after", str(RETRY_AFTER)),))
        else:
            text = self.metrics.render()
            if text is None:
                await respond(stream, conn, 501, METRICS_MISSING.encode(), head_only=head)
            else:
                await respond(stream, conn, 200, text, METRICS_CONTENT_TYPE, head_only=head)

    def _count_refusal(self, why: str) -> None:
        admission.count_refusal(self.stats, why)
        self.metrics.sessions_refused.labels(why).inc()
        log.info("refused", code="busy", reason=why, active=self.active, loop_lag=round(self.loop_lag, 4))

    def _refusal_text(self, why: str) -> str:
        return admission.refusal_text(why, self.config, self.loop_lag)

    async def _websocket(self, stream: trio.SocketStream, head: bytes, ticket: Ticket) -> None:
        cfg = self.config
        ws: WebSocketConnection | None = None
        wrapped = PrefixedStream(stream, head)
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(cfg.request_timeout):  # a handshake wsproto rejected never completes
                request = await trio_websocket.wrap_server_stream(
                    nursery, wrapped, max_message_size=2 * max(cfg.max_audio_bytes, cfg.max_text_bytes))
                ws = await request.accept()
            if ws is None:
                nursery.cancel_scope.cancel()
                return
            code, reason = int(CloseCode.INTERNAL_ERROR), "server error"
            try:
                code, reason = await self._converse(ws, ticket)
            finally:
                with trio.move_on_after(cfg.close_timeout) as scope:
                    scope.shield = True
                    if ticket.evicted:
                        code, reason = CloseCode.TRY_AGAIN_LATER, "too many connections waiting for a hello"
                        await send_error(ws, ErrorMessage(
                            code="busy", message="too many connections are waiting to say hello; this one waited "
                                                 "longest and was dropped: say hello at once after connecting"))
                    await ws.aclose(code, close_reason(reason))
                    closed = ws.closed
                    if closed is not None and closed.code in FRAME_ERRORS and not wrapped.sent_close:
                        # a frame the WebSocket layer could not parse: it dropped the connection without
                        # telling the client why; tell it (RFC 6455 §7.1.7: fail with a close frame)
                        self.stats.protocol_errors += 1
                        log.info("refused", code="bad_frame", close_code=closed.code, error=closed.reason)
                        try:
                            await stream.send_all(close_frame(closed.code, closed.reason or "protocol error"))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                nursery.cancel_scope.cancel()

    async def _converse(self, ws: WebSocketConnection, ticket: Ticket) -> tuple[int, str]:
        cfg = self.config
        proto = ServerProtocol(token=cfg.token, max_audio_bytes=cfg.max_audio_bytes,
                               max_text_bytes=cfg.max_text_bytes)
        try:
            with trio.fail_after(cfg.hello_timeout):
                hello = proto.receive(await ws.get_message())
        except trio.TooSlowError:
            await send_error(ws, ErrorMessage(
                code="timeout", message=f"no hello within {cfg.hello_timeout:g} s; the first message must be "
                                        "{\"type\": \"hello\", \"sample_rate\": 16000, ...}"))
            return CloseCode.POLICY_VIOLATION, "no hello in time"
        except ProtocolError as exc:
            return await self._refuse(ws, exc)
        except ConnectionClosed:
            return CloseCode.NORMAL, ""
        assert isinstance(hello, Hello)
        ready, why = self.readiness()
        if not ready:
            self._count_refusal(why)
            await send_error(ws, ErrorMessage(code="busy", message=self._refusal_text(why)))
            return CloseCode.TRY_AGAIN_LATER, REFUSAL_REASONS.get(why, "server draining")
        self.active += 1
        self._conversing += 1
        ticket.admitted = True
        self._pool.release(ticket)  # authenticated: from now on it holds a session slot, not a pending place
        self._update_ready()
        try:
            return await Conversation(self, ws, proto, hello).run()
        finally:
            self.active -= 1
            self._update_ready()

    async def _refuse(self, ws: WebSocketConnection, exc: ProtocolError) -> tuple[int, str]:
        if exc.code == "unauthorized":
            self.stats.rejected_unauthorized += 1
        else:
            self.stats.protocol_errors += 1
        log.info("refused", code=exc.code, error=str(exc))
        await send_error(ws, ErrorMessage(code=exc.code, message=str(exc)))
        return exc.close_code, exc.code
