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
"""

from __future__ import annotations

import collections
import ipaddress
import json
import struct
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import h11
import structlog
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from voicekit.asr.base import ASREngine
from voicekit.audio.frame import AudioFrame
from voicekit.audio.sinks import AudioSink
from voicekit.audio.sources import AudioSource
from voicekit.errors import ConfigError, first_error, leaves, one_line, only_cancelled
from voicekit.events import Error as ErrorEvent
from voicekit.events import Event, IntentMatched, ReplyInterrupted, ReplyStarted, SpeechEnded, SpeechStarted
from voicekit.events import Warning as WarningEvent
from voicekit.handlers.assistant import Assistant
from voicekit.logging import get_logger
from voicekit.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from voicekit.serve.metrics import MISSING as METRICS_MISSING
from voicekit.serve.metrics import ServeMetrics
from voicekit.serve.protocol import (
    MAX_AUDIO_BYTES,
    MAX_TEXT_BYTES,
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
from voicekit.session.interruption import InterruptionPolicy
from voicekit.session.session import Session, SessionConfig
from voicekit.tts.base import TTSEngine
from voicekit.vad.base import VADBackend

log = get_logger("voicekit.serve")

WS_PATH: Final = "/ws"
HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
MAX_REQUEST_HEAD: Final = 8192
#: Seconds a refused client is asked to wait (``Retry-After``) before it tries again.
RETRY_AFTER: Final = 2
#: How often the event-loop lag is sampled, and over how many seconds its mean is taken.
LAG_INTERVAL: Final = 0.05
LAG_WINDOW: Final = 1.0
#: How often each conversation's audio backlog is checked.
BACKLOG_INTERVAL: Final = 0.1
#: Audio a pipeline may hold back waiting for more (a resampler's delay, a part of a VAD frame).
BACKLOG_SLACK: Final = 0.15
#: Static files: URL path -> (file in voicekit/serve/static, content type).
STATIC: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
    "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8"),
    "/downsampler.js": ("downsampler.js", "text/javascript; charset=utf-8"),
}
_CSP: Final = ("default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")


# -- binding rules ------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1). Other names count as
    non-loopback: we cannot know what they resolve to."""
    name = host.strip().lower().rstrip(".")
    if name in ("localhost", "ip6-localhost", "ip6-loopback") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if token is not None and not token.strip():
        raise ConfigError("--token is empty: pass a long random string (e.g. from 'openssl rand -hex 16')")
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host!r} without a token: anyone who can reach it could talk to the "
            "assistant. Pass --token SECRET (or set VOICEKIT_SERVE_TOKEN), or use --host 127.0.0.1")


def _positive(owner: str, name: str) -> Callable[[Any, Any, Any], None]:
    def check(_: Any, __: Any, value: Any) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{owner} {name} must be a positive number, got {value!r}")
    return check


def _port(_: Any, __: Any, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigError(f"port must be 0..65535 (0 = any free port), got {value!r}")


@attrs.frozen(kw_only=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8765, validator=_port)
    token: str | None = attrs.field(default=None, repr=lambda t: "None" if t is None else "'***'")
    max_sessions: int = attrs.field(default=4, validator=_positive("serve", "max_sessions"))
    #: Connections that have not said a valid hello yet (HTTP requests, WebSockets before the hello):
    #: they never hold a session slot; this pool is bounded on its own (the oldest is dropped when full) ...
    max_pending: int = attrs.field(default=32, validator=_positive("serve", "max_pending"))
    #: ... and per client address (one more is refused with HTTP 429).
    max_pending_per_address: int = attrs.field(default=8, validator=_positive("serve", "max_pending_per_address"))
    hello_timeout: float = attrs.field(default=5.0, validator=_positive("serve", "hello_timeout"))
    #: A conversation whose client sends nothing for this long (before its end message) is closed.
    idle_timeout: float = attrs.field(default=60.0, validator=_positive("serve", "idle_timeout"))
    request_timeout: float = attrs.field(default=10.0, validator=_positive("serve", "request_timeout"))
    close_timeout: float = attrs.field(default=2.0, validator=_positive("serve", "close_timeout"))
    max_audio_bytes: int = attrs.field(default=MAX_AUDIO_BYTES, validator=_positive("serve", "max_audio_bytes"))
    max_text_bytes: int = attrs.field(default=MAX_TEXT_BYTES, validator=_positive("serve", "max_text_bytes"))
    #: Extra page origins allowed to open the WebSocket (``"*"`` = any); the server's own is always allowed.
    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Admission: no new conversation while the event loop wakes up later than this (seconds, the
    #: mean over the last second): the running conversations would be slowed down.
    max_loop_lag: float = attrs.field(default=0.25, validator=_positive("serve", "max_loop_lag"))
    #: A conversation whose oldest unprocessed audio is older than this (seconds) has fallen
    #: behind real time: it is reported and closed (1013, ``overloaded``).
    max_backlog: float = attrs.field(default=1.5, validator=_positive("serve", "max_backlog"))
    #: After :meth:`VoiceServer.drain` starts, running conversations have this long to finish.
    drain_timeout: float = attrs.field(default=30.0, validator=_positive("serve", "drain_timeout"))
    #: Answer a WebSocket upgrade with HTTP 503 + Retry-After when not ready (full, lagging,
    #: draining), for a proxy that retries another worker; otherwise the connection is accepted
    #: and the refusal comes after the hello as a ``busy`` error and close 1013, which a browser
    #: can read (it cannot read an HTTP status).
    refuse_at_upgrade: bool = False


# -- what a conversation is made of --------------------------------------------------------------

def _live_config() -> SessionConfig:
    return SessionConfig(realtime=True, audio_policy="drop_oldest")


@attrs.define(kw_only=True)
class SessionRecipe:
    """How to build one :class:`Session` per connection. The ASR engine, TTS engine and assistant
    are shared (their per-conversation state lives in the session); the VAD backend and the
    interruption policy are stateful, so each session gets its own from the factories."""

    asr: ASREngine
    vad_factory: Callable[[], VADBackend]
    assistant: Assistant | None = None
    tts: TTSEngine | None = None
    config: SessionConfig = attrs.Factory(_live_config)
    interruption: Callable[[], InterruptionPolicy] | None = None
    names: dict[str, str] = attrs.Factory(dict)

    @property
    def reply_rate(self) -> int | None:
        return self.tts.capabilities.sample_rate if self.tts is not None else None

    def build(self, source: AudioSource, sink: AudioSink | None) -> Session:
        return Session(source, asr=self.asr, vad=self.vad_factory(), assistant=self.assistant, tts=self.tts,
                       sink=sink, interruption=self.interruption() if self.interruption else None,
                       config=self.config, names=self.names)


# -- the WebSocket as audio source and sink -------------------------------------------------------

class WebSocketSource:
    """Microphone audio that arrives as binary messages: PCM int16 mono at ``sample_rate``.
    The connection's reader task :meth:`push`-es each message; :meth:`end` ends the input.
    Timestamps count the samples received, so they are contiguous."""

    channels = 1

    def __init__(self, sample_rate: int, *, buffer: int = 100) -> None:
        self.sample_rate = sample_rate
        self._send, self._recv = trio.open_memory_channel[bytes](buffer)
        self._samples = 0
        self.received = 0.0  # seconds of audio received
        # (audio time at the end of a message, when it arrived) for the messages not yet known
        # to be processed; bounded (a stalled session is shed long before it fills)
        self._arrivals: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)

    async def push(self, pcm: bytes) -> bool:
        """Queue audio (waits while ``buffer`` messages are queued); False once the session
        stopped reading."""
        self.received += len(pcm) / 2 / self.sample_rate
        self._arrivals.append((self.received, trio.current_time()))
        try:
            await self._send.send(pcm)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def backlog(self, processed: float) -> float:
        """How far behind real time the session is: the age (seconds) of the oldest audio that
        arrived and is not yet processed, given the audio position ``processed`` the session has
        reached. A client that sends faster than real time is not behind: only waiting counts.
        The last :data:`BACKLOG_SLACK` seconds do not count: the resampler and the VAD may hold
        that much until more audio comes (a client that pauses is not a session that lags)."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= processed + BACKLOG_SLACK:
            arrivals.popleft()
        if not arrivals:
            return 0.0
        return max(0.0, trio.current_time() - arrivals[0][1])

    def end(self) -> None:
        self._send.close()

    def frames(self) -> WebSocketSource:
        return self

    def __aiter__(self) -> WebSocketSource:
        return self

    async def __anext__(self) -> AudioFrame:
        try:
            pcm = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        frame = AudioFrame(pcm, self.sample_rate, 1, self._samples / self.sample_rate)
        self._samples += len(pcm) // 2
        return frame

    async def aclose(self) -> None:
        self._send.close()
        self._recv.close()


class WebSocketSink:
    """Reply audio out as binary messages. Not realtime: the session's player paces it, so the
    browser receives audio as fast as it plays and a barge-in stops it within one chunk. Writes
    after the browser went away are dropped (the connection's reader cancels the session)."""

    realtime = False
    channels = 1

    def __init__(self, ws: WebSocketConnection, sample_rate: int) -> None:
        self.ws = ws
        self.sample_rate = sample_rate
        self.bytes_sent = 0
        self.closed = False
        self._on_first: Callable[[], None] | None = None

    def on_next_write(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` just before the next piece of audio goes out (the first audio of a reply)."""
        self._on_first = callback

    async def write(self, frame: AudioFrame) -> None:
        if self.closed or not frame.pcm:
            return
        if self._on_first is not None:
            callback, self._on_first = self._on_first, None
            callback()
        try:
            await self.ws.send_message(frame.pcm)
            self.bytes_sent += len(frame.pcm)
        except ConnectionClosed:
            self.closed = True

    async def aclose(self) -> None:
        self.closed = True


# -- HTTP ---------------------------------------------------------------------------------------

class _PrefixedStream(trio.abc.Stream):
    """The socket as the WebSocket layer sees it: it first returns bytes already read (the HTTP
    request head), notes whether a close frame went out, and does not close the socket when asked
    to: the server does that itself, after sending the close frame the WebSocket layer leaves out
    on a frame-level protocol error, and after a lingering close (see :func:`_linger`)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.stream = stream
        self.prefix = prefix
        self.sent_close = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.prefix:
            n = len(self.prefix) if max_bytes is None else max_bytes
            data, self.prefix = self.prefix[:n], self.prefix[n:]
            return data
        return bytes(await self.stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # each call carries whole frames; a server frame starting 0x88 is a (final) close frame
        if bytes(data[:1]) == b"\x88":
            self.sent_close = True
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()  # the server closes the socket (VoiceServer._handle)


#: Close codes the WebSocket layer reports for frames it could not parse.
_FRAME_ERRORS: Final = frozenset({CloseCode.PROTOCOL_ERROR, 1007, CloseCode.MESSAGE_TOO_BIG})


def _close_frame(code: int, reason: str) -> bytes:
    """An unmasked (server) close frame."""
    payload = struct.pack("!H", code) + _close_reason(reason).encode("utf-8")
    return bytes([0x88, len(payload)]) + payload


async def _linger(stream: trio.abc.Stream, seconds: float, *, limit: int = 1 << 20) -> None:
    """Half-close, then read and drop what the client still sends, until it closes, ``seconds``
    pass or ``limit`` bytes arrived. Closing a socket that has unread data makes the kernel send a
    reset, which can destroy the last answer (an HTTP error, a close frame) before the client reads it."""
    with trio.move_on_after(seconds):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            total = 0
            while total < limit:
                data = await stream.receive_some(65536)
                if not data:
                    return
                total += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return


@attrs.frozen
class _Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def wants_websocket(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()


class _HeadTooLarge(Exception):
    pass


async def _read_head(stream: trio.abc.Stream, conn: h11.Connection) -> tuple[_Request, bytes] | None:
    """The request head (at most :data:`MAX_REQUEST_HEAD` bytes, else :class:`_HeadTooLarge`) and
    every byte read so far."""
    raw = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if len(raw) > MAX_REQUEST_HEAD:
                raise _HeadTooLarge
            data = bytes(await stream.receive_some(4096))
            raw += data
            conn.receive_data(data)  # b"" = the peer closed
            continue
        if isinstance(event, h11.Request):
            ends = [i + n for i, n in ((raw.find(b"\r\n\r\n"), 4), (raw.find(b"\n\n"), 2)) if i >= 0]
            if not ends or min(ends) > MAX_REQUEST_HEAD:  # h11 only limits a head it has not seen whole
                raise _HeadTooLarge
            headers: dict[str, str] = {}
            for name, value in event.headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            return _Request(event.method.decode("latin-1").upper(),
                            urlsplit(event.target.decode("latin-1")).path, headers), bytes(raw)
        return None  # ConnectionClosed: the peer left before a request


async def _respond(stream: trio.abc.Stream, conn: h11.Connection, status: int, body: bytes,
                   content_type: str = "text/plain; charset=utf-8", *, head_only: bool = False,
                   extra: tuple[tuple[str, str], ...] = ()) -> None:
    headers = [("content-type", content_type), ("content-length", str(len(body))), ("connection", "close"),
               ("cache-control", "no-store"), ("x-content-type-options", "nosniff"),
               ("referrer-policy", "no-referrer"), *extra]
    try:
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase))
        if not head_only:
            data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:  # h11 will not answer a request it could not parse: write it by hand
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                 *(f"{k}: {v}" for k, v in headers)]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    await stream.send_all(data)


def _host_of(netloc: str) -> str:
    try:
        return urlsplit("//" + netloc).hostname or ""
    except ValueError:
        return ""


# -- the server ---------------------------------------------------------------------------------

@attrs.define
class ServerStats:
    connections: int = 0  # TCP connections accepted
    sessions_started: int = 0
    sessions_finished: int = 0
    rejected_busy: int = 0
    rejected_unauthorized: int = 0
    protocol_errors: int = 0  # bad messages and frames the WebSocket layer could not parse
    rejected_address: int = 0  # refused: too many unauthenticated connections from one address
    evicted: int = 0  # unauthenticated connections dropped because the pool was full
    idle_closed: int = 0  # conversations closed by the idle timeout
    refused_loop_lag: int = 0  # new conversations refused: the event loop lagged (--max-loop-lag)
    refused_draining: int = 0  # new conversations refused: the server drains
    refused_at_upgrade: int = 0  # of all refusals, those answered HTTP 503 to the upgrade
    shed: int = 0  # running conversations closed: they fell behind real time (--max-backlog)
    drained: int = 0  # running conversations closed by a drain at its deadline (1012)
    connection_failures: int = 0  # connections that ended in an unexpected exception (logged)
    end_reasons: list[str] = attrs.Factory(list)  # how each session ended: "input ended", "cancelled", ...


@attrs.define(eq=False)
class _Conversation:
    scope: trio.CancelScope
    close_code: int = CloseCode.NORMAL
    reason: str = "session ended"
    error: ErrorMessage | None = None
    failure: BaseException | None = None
    done: bool = False
    backlog: float = 0.0  # seconds behind real time, at the last check
    # turn timing for the metrics (session times of the events)
    speech_end: float | None = None
    barge_start: float | None = None
    replying: bool = False

    def finish(self, code: int, reason: str, error: ErrorMessage | None = None) -> None:
        if not self.done:
            self.done = True
            self.close_code, self.reason, self.error = code, reason, error
        self.scope.cancel()


def _must_propagate(exc: BaseException) -> bool:
    """What a connection may pass up to the server: Ctrl-C, and the server's own cancellation.
    Anything else (an error, ``SystemExit`` from a handler, a mix with a cancellation) ends that
    connection only; a pending cancellation is delivered again at the server's next checkpoint."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[0] is not None or only_cancelled(exc)
    return isinstance(exc, (KeyboardInterrupt, trio.Cancelled))


def _describe(exc: BaseException) -> str:
    """One line for the first real error in ``exc`` (exception groups unwrapped, secrets redacted)."""
    leaf = first_error(exc, BaseException) or leaves(exc)[0]
    return one_line(leaf, with_type=not isinstance(leaf, Exception))


@attrs.define(eq=False)
class _Ticket:
    """A connection that has not said a valid hello yet: it holds a place in the pending pool
    (and in its address's share of it) until it is answered, admitted, or evicted."""

    address: str
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    evicted: bool = False
    released: bool = False
    admitted: bool = False  # became a conversation


def _peer_address(stream: trio.abc.Stream) -> str:
    try:
        peer = stream.socket.getpeername()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "?"
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


def _close_reason(text: str) -> str:
    """WebSocket close reasons must fit in 123 bytes."""
    data = text.encode("utf-8")[:120]
    return data.decode("utf-8", "ignore")


#: How a conversation ended (its close reason) as a metrics label.
_END_KINDS: Final = {"session ended": "session_ended", "client left": "client_left", "idle timeout": "idle_timeout",
                     "fell behind real time": "backlog", "server restarting": "drained",
                     "session failed": "session_failed"}


class VoiceServer:
    """Serve the page and one conversation per WebSocket. ``await server.serve()`` runs until
    cancelled; with ``nursery.start(server.serve)`` you get the URL once it listens.
    :meth:`drain` (what ``voicekit serve`` does on SIGTERM) stops taking conversations, lets the
    running ones finish, and closes the rest with 1012 at ``drain_timeout``."""

    def __init__(self, recipe: SessionRecipe, config: ServeConfig | None = None) -> None:
        self.recipe = recipe
        self.config = config or ServeConfig()
        self.port: int | None = None
        self.active = 0  # running conversations (each past a valid hello)
        self.stats = ServerStats()
        self.metrics = ServeMetrics()
        self.draining = False
        self.loop_lag = 0.0  # event-loop lag, mean over the last LAG_WINDOW seconds
        self._conversations: dict[_Conversation, None] = {}
        self._conversing = 0  # connections admitted to a conversation and not yet closed
        self._static: dict[str, bytes] = {}
        self._loopback = is_loopback(self.config.host)
        self._pending: dict[_Ticket, None] = {}  # insertion-ordered: the oldest first
        self._per_address: Counter[str] = Counter()

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
        try:
            listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}; pick another "
                              "--port (0 = any free port) or stop what uses it") from exc
        if cfg.port == 0:  # each listener would get its own free port: keep one
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        sock = listeners[0].socket
        self.port = sock.getsockname()[1]
        log.info("listening", url=self.url, max_sessions=cfg.max_sessions, token=cfg.token is not None)
        self.metrics.max_sessions.set(cfg.max_sessions)
        self._update_ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_loop)
            task_status.started(self.url)
            await trio.serve_listeners(self._handle, listeners)

    # -- capacity, readiness, drain

    def readiness(self) -> tuple[bool, str]:
        """Whether a new conversation would be admitted now, and if not why: ``"draining"``,
        ``"max_sessions"`` (full) or ``"loop_lag"`` (the event loop is late: more work would slow
        the running conversations)."""
        if self.draining:
            return False, "draining"
        if self.active >= self.config.max_sessions:
            return False, "max_sessions"
        if self.loop_lag > self.config.max_loop_lag:
            return False, "loop_lag"
        return True, "ready"

    def _update_ready(self) -> None:
        self.metrics.ready.set(1 if self.readiness()[0] else 0)
        self.metrics.sessions_active.set(self.active)

    async def _watch_loop(self) -> None:
        """Measure how late the event loop wakes up: sleep a fixed interval, note the excess.
        Also samples the largest audio backlog among the conversations."""
        window: collections.deque[float] = collections.deque(maxlen=max(1, round(LAG_WINDOW / LAG_INTERVAL)))
        while True:
            start = trio.current_time()
            await trio.sleep(LAG_INTERVAL)
            lag = max(0.0, trio.current_time() - start - LAG_INTERVAL)
            window.append(lag)
            self.loop_lag = sum(window) / len(window)
            self.metrics.loop_lag.observe(lag)
            self.metrics.loop_lag_seconds.set(self.loop_lag)
            self.metrics.audio_backlog_max.set(max((c.backlog for c in self._conversations), default=0.0))
            self._update_ready()

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
                for conv in list(self._conversations):
                    if not conv.done:
                        self.stats.drained += 1
                        conv.finish(CloseCode.SERVICE_RESTART, "server restarting", ErrorMessage(
                            code="restarting", message="the server is restarting; reconnect to carry on (another "
                                                       "server will answer)"))
                await trio.sleep(0.05)
        log.info("drained", closed_at_deadline=left)

    # -- the pending (not yet authenticated) pool

    def _admit(self, address: str) -> _Ticket | None:
        """A place in the pending pool, or None when ``address`` has its share already. When the
        pool is full the oldest pending connection makes room: a flood can only push out other
        unauthenticated connections, and a client that says hello at once still gets through."""
        cfg = self.config
        if self._per_address[address] >= cfg.max_pending_per_address:
            return None
        while len(self._pending) >= cfg.max_pending:
            oldest = next(iter(self._pending))
            oldest.evicted = True
            oldest.scope.cancel()
            self._release(oldest)
            self.stats.evicted += 1
        ticket = _Ticket(address)
        self._pending[ticket] = None
        self._per_address[address] += 1
        return ticket

    def _release(self, ticket: _Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self._pending.pop(ticket, None)
        self._per_address[ticket.address] -= 1
        if self._per_address[ticket.address] <= 0:
            del self._per_address[ticket.address]

    @property
    def pending(self) -> int:
        """Connections that have not said a valid hello yet."""
        return len(self._pending)

    # -- connections

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.stats.connections += 1
        cfg = self.config
        address = _peer_address(stream)
        structlog.contextvars.bind_contextvars(peer=address)  # this task's (this connection's) lines only
        async with stream:
            try:
                ticket = self._admit(address)
                if ticket is None:
                    self.stats.rejected_address += 1
                    log.info("refused", code="too_many_connections", client=address)
                    await _respond(stream, h11.Connection(h11.SERVER), 429,
                                   f"too many connections from {address} that have not started a conversation "
                                   f"(at most {cfg.max_pending_per_address}); try again later\n".encode())
                    await _linger(stream, min(0.5, cfg.close_timeout), limit=64 * 1024)
                    return
                try:
                    with ticket.scope:
                        await self._handle_http(stream, ticket)
                        await _linger(stream, cfg.close_timeout)
                finally:
                    self._release(ticket)
                    if ticket.admitted:
                        self._conversing -= 1
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
                pass  # the peer left
            except BaseException as exc:  # one bad connection must never stop the server
                if _must_propagate(exc):
                    raise
                self.stats.connection_failures += 1
                self.metrics.errors.labels("connection").inc()
                log.warning("connection failed", error=_describe(exc))

    async def _handle_http(self, stream: trio.SocketStream, ticket: _Ticket) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        try:
            with trio.fail_after(self.config.request_timeout):
                got = await _read_head(stream, conn)
        except trio.TooSlowError:
            await _respond(stream, conn, 408, b"request head not received in time\n")
            return
        except _HeadTooLarge:
            await _respond(stream, conn, 431, f"request head over {MAX_REQUEST_HEAD} bytes\n".encode())
            return
        except h11.RemoteProtocolError as exc:
            await _respond(stream, conn, exc.error_status_hint, f"bad HTTP request: {exc}\n".encode())
            return
        if got is None:
            return
        request, raw = got
        refusal = self._check_host(request)
        if refusal is not None:
            await _respond(stream, conn, 403, refusal.encode() + b"\n")
            return
        if request.path in (HEALTH_PATH, READY_PATH, METRICS_PATH):
            await self._probe(stream, conn, request)
            return
        if request.path == WS_PATH:
            if not request.wants_websocket:
                await _respond(stream, conn, 426, b"this is the WebSocket endpoint; open / in a browser\n",
                               extra=(("upgrade", "websocket"),))
                return
            if request.headers.get("sec-websocket-version") != "13" or "sec-websocket-key" not in request.headers:
                await _respond(stream, conn, 400, b"not a WebSocket version 13 handshake\n",
                               extra=(("sec-websocket-version", "13"),))
                return
            refusal = self._check_origin(request)
            if refusal is not None:
                await _respond(stream, conn, 403, refusal.encode() + b"\n")
                return
            ready, why = self.readiness()
            if not ready and self.config.refuse_at_upgrade:
                self._count_refusal(why)
                self.stats.refused_at_upgrade += 1
                await _respond(stream, conn, 503, (self._refusal_text(why) + "\n").encode(),
                               extra=(("retry-after", str(RETRY_AFTER)),))
                return
            await self._websocket(stream, raw, ticket)
            return
        if request.method not in ("GET", "HEAD"):
            await _respond(stream, conn, 405, b"only GET and HEAD\n", extra=(("allow", "GET, HEAD"),))
            return
        entry = STATIC.get(request.path)
        if entry is None:
            await _respond(stream, conn, 404, b"not found; the page is at /\n", head_only=request.method == "HEAD")
            return
        name, content_type = entry
        await _respond(stream, conn, 200, self._static[name], content_type, head_only=request.method == "HEAD",
                       extra=(("content-security-policy", _CSP),))

    async def _probe(self, stream: trio.SocketStream, conn: h11.Connection, request: _Request) -> None:
        """``/healthz``: the process answers (200). ``/readyz``: 200 when a new conversation would
        be admitted, else 503 with the reason and Retry-After. ``/metrics``: Prometheus text."""
        head = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            await _respond(stream, conn, 405, b"only GET and HEAD\n", extra=(("allow", "GET, HEAD"),))
            return
        if request.path == HEALTH_PATH:
            await _respond(stream, conn, 200, b"ok\n", head_only=head)
        elif request.path == READY_PATH:
            ready, why = self.readiness()
            body = json.dumps({"ready": ready, "reason": why, "active": self.active,
                               "max_sessions": self.config.max_sessions, "draining": self.draining,
                               "loop_lag": round(self.loop_lag, 4)}).encode() + b"\n"
            await _respond(stream, conn, 200 if ready else 503, body, "application/json", head_only=head,
                           extra=() if ready else (("retry-after", str(RETRY_AFTER)),))
        else:
            text = self.metrics.render()
            if text is None:
                await _respond(stream, conn, 501, METRICS_MISSING.encode(), head_only=head)
            else:
                await _respond(stream, conn, 200, text, METRICS_CONTENT_TYPE, head_only=head)

    def _count_refusal(self, why: str) -> None:
        if why == "max_sessions":
            self.stats.rejected_busy += 1
        elif why == "loop_lag":
            self.stats.refused_loop_lag += 1
        else:
            self.stats.refused_draining += 1
        self.metrics.sessions_refused.labels(why).inc()
        log.info("refused", code="busy", reason=why, active=self.active, loop_lag=round(self.loop_lag, 4))

    def _refusal_text(self, why: str) -> str:
        n = self.config.max_sessions
        if why == "max_sessions":
            return (f"the server is busy: {n} conversation{'s' if n != 1 else ''} already running (its "
                    "--max-sessions limit); try again later")
        if why == "loop_lag":
            return (f"the server is overloaded (its event loop runs {self.loop_lag * 1000:.0f} ms late, over "
                    f"its --max-loop-lag of {self.config.max_loop_lag * 1000:.0f} ms); try again later")
        return "the server is shutting down; try again (another server will answer)"

    def _check_host(self, request: _Request) -> str | None:
        """Against DNS rebinding: a server on loopback without a token answers only to loopback
        host names (a hostile page cannot make the browser send ``Host: 127.0.0.1``)."""
        if not self._loopback or self.config.token:
            return None
        host = _host_of(request.headers.get("host", ""))
        if not host or not is_loopback(host):
            return (f"host {request.headers.get('host', '')!r} refused: this server listens on loopback without "
                    "a token and answers only to localhost / 127.0.0.1")
        return None

    def _check_origin(self, request: _Request) -> str | None:
        """Only the server's own page (or an allowed origin) may open a conversation from a browser."""
        origin = request.headers.get("origin")
        if origin is None:
            return None  # not a browser (browsers always send Origin with WebSocket requests)
        allowed = self.config.allowed_origins
        if "*" in allowed or origin in allowed:
            return None
        try:
            netloc = urlsplit(origin).netloc.lower()
        except ValueError:
            netloc = ""
        if netloc and netloc == request.headers.get("host", "").lower():
            return None
        return (f"origin {origin!r} may not open a conversation: only this server's own page can "
                "(or start the server with --allow-origin ORIGIN)")

    async def _websocket(self, stream: trio.SocketStream, head: bytes, ticket: _Ticket) -> None:
        cfg = self.config
        ws: WebSocketConnection | None = None
        wrapped = _PrefixedStream(stream, head)
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
                        await self._send_error(ws, ErrorMessage(
                            code="busy", message="too many connections are waiting to say hello; this one waited "
                                                 "longest and was dropped: say hello at once after connecting"))
                    await ws.aclose(code, _close_reason(reason))
                    closed = ws.closed
                    if closed is not None and closed.code in _FRAME_ERRORS and not wrapped.sent_close:
                        # a frame the WebSocket layer could not parse: it dropped the connection without
                        # telling the client why; tell it (RFC 6455 §7.1.7: fail with a close frame)
                        self.stats.protocol_errors += 1
                        log.info("refused", code="bad_frame", close_code=closed.code, error=closed.reason)
                        try:
                            await stream.send_all(_close_frame(closed.code, closed.reason or "protocol error"))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                nursery.cancel_scope.cancel()

    async def _send_error(self, ws: WebSocketConnection, error: ErrorMessage) -> None:
        try:
            await ws.send_message(encode(error))
        except ConnectionClosed:
            pass

    async def _converse(self, ws: WebSocketConnection, ticket: _Ticket) -> tuple[int, str]:
        cfg = self.config
        proto = ServerProtocol(token=cfg.token, max_audio_bytes=cfg.max_audio_bytes,
                               max_text_bytes=cfg.max_text_bytes)
        try:
            with trio.fail_after(cfg.hello_timeout):
                hello = proto.receive(await ws.get_message())
        except trio.TooSlowError:
            await self._send_error(ws, ErrorMessage(
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
            await self._send_error(ws, ErrorMessage(code="busy", message=self._refusal_text(why)))
            return CloseCode.TRY_AGAIN_LATER, {"max_sessions": "server busy", "loop_lag": "server overloaded"}.get(
                why, "server draining")
        self.active += 1
        self._conversing += 1
        ticket.admitted = True
        self._release(ticket)  # authenticated: from now on it holds a session slot, not a pending place
        self._update_ready()
        try:
            return await self._conversation(ws, proto, hello)
        finally:
            self.active -= 1
            self._update_ready()

    async def _conversation(self, ws: WebSocketConnection, proto: ServerProtocol, hello: Hello) -> tuple[int, str]:
        cfg = self.config
        rate = self.recipe.reply_rate
        source = WebSocketSource(hello.sample_rate)
        sink = WebSocketSink(ws, rate) if rate else None
        session = self.recipe.build(source, sink)
        structlog.contextvars.bind_contextvars(session_id=session.id)  # every later line of this connection
        log.info("conversation", client=hello.client, sample_rate=hello.sample_rate)
        try:
            await ws.send_message(encode(Ready(session_id=session.id,
                                               assistant=self.recipe.assistant.name if self.recipe.assistant
                                               else None, sample_rate=hello.sample_rate,
                                               max_audio_bytes=cfg.max_audio_bytes,
                                               max_text_bytes=cfg.max_text_bytes)))
            if rate:
                await ws.send_message(encode(AudioFormat(sample_rate=rate)))
        except ConnectionClosed:
            return CloseCode.NORMAL, ""
        self.stats.sessions_started += 1
        self.metrics.sessions_started.inc()
        try:
            async with trio.open_nursery() as nursery:
                conv = _Conversation(nursery.cancel_scope)
                self._conversations[conv] = None
                nursery.start_soon(self._pump, ws, proto, source, conv)
                nursery.start_soon(self._run_session, session, conv)
                nursery.start_soon(self._forward, ws, session, conv, sink)
                nursery.start_soon(self._watch_backlog, ws, source, session, conv)
        finally:
            self._conversations.pop(conv, None)
        kind = _END_KINDS.get(conv.reason, "protocol_error")
        self.metrics.sessions_ended.labels(kind).inc()
        if kind == "protocol_error":
            self.metrics.errors.labels("protocol").inc()
        log.info("conversation ended", close_code=int(conv.close_code), reason=conv.reason)
        if conv.error is not None:
            await self._send_error(ws, conv.error)
        return conv.close_code, conv.reason

    async def _watch_backlog(self, ws: WebSocketConnection, source: WebSocketSource, session: Session,
                             conv: _Conversation) -> None:
        """A conversation that falls behind real time is reported (a warning event to the client,
        a log line, the metrics) and closed with 1013 and an ``overloaded`` error, before its
        audio would be dropped: never a silent, unbounded lag."""
        bound = self.config.max_backlog
        while True:
            await trio.sleep(BACKLOG_INTERVAL)
            backlog = conv.backlog = source.backlog(session.audio_position)
            self.metrics.audio_backlog.observe(backlog)
            if backlog <= bound:
                continue
            self.stats.shed += 1
            self.metrics.sessions_shed.inc()
            self.metrics.errors.labels("backlog").inc()
            log.warning("fell behind real time", backlog=round(backlog, 3), max_backlog=bound,
                        loop_lag=round(self.loop_lag, 4), active=self.active)
            text = (f"this conversation fell {backlog:.1f} s behind real time (over the server's --max-backlog of "
                    f"{bound:g} s): the server is overloaded")
            warning = WarningEvent(t=session.now(), where="serve", message=text)
            with trio.move_on_after(self.config.close_timeout):
                try:
                    await ws.send_message(encode(EventMessage(warning.to_dict())))
                except ConnectionClosed:
                    pass
            conv.finish(CloseCode.TRY_AGAIN_LATER, "fell behind real time",
                        ErrorMessage(code="overloaded", message=f"{text}; reconnect to carry on"))
            return

    def _observe(self, event: Event, conv: _Conversation, session: Session, sink: WebSocketSink | None) -> None:
        """Turn and barge-in latencies from the session's own event times."""
        m = self.metrics
        if isinstance(event, SpeechStarted):
            if conv.replying:
                conv.barge_start = event.t
        elif isinstance(event, SpeechEnded):
            conv.speech_end = event.t
        elif isinstance(event, IntentMatched):
            if conv.speech_end is not None:
                m.turn_latency.labels("handler").observe(max(0.0, event.t - conv.speech_end))
        elif isinstance(event, ReplyStarted):
            conv.replying = True
            end = conv.speech_end
            if sink is not None and end is not None:
                sink.on_next_write(lambda: m.turn_latency.labels("first_audio").observe(max(0.0, session.now() - end)))
        elif event.kind in ("reply_finished", "reply_interrupted"):
            conv.replying = False
            if isinstance(event, ReplyInterrupted) and conv.barge_start is not None:
                m.barge_in_latency.observe(max(0.0, event.t - conv.barge_start))
            conv.barge_start = None
        elif isinstance(event, ErrorEvent):
            m.errors.labels(f"session_{event.where}").inc()

    async def _refuse(self, ws: WebSocketConnection, exc: ProtocolError) -> tuple[int, str]:
        if exc.code == "unauthorized":
            self.stats.rejected_unauthorized += 1
        else:
            self.stats.protocol_errors += 1
        log.info("refused", code=exc.code, error=str(exc))
        await self._send_error(ws, ErrorMessage(code=exc.code, message=str(exc)))
        return exc.close_code, exc.code

    async def _pump(self, ws: WebSocketConnection, proto: ServerProtocol, source: WebSocketSource,
                    conv: _Conversation) -> None:
        """The browser → session direction; the peer closing the socket ends the conversation."""
        idle = self.config.idle_timeout
        try:
            while True:
                with trio.move_on_after(idle) as waiting:
                    data = await ws.get_message()
                if waiting.cancelled_caught:
                    if proto.state is State.ENDED:
                        continue  # the input has ended: the session finishes its replies, then closes
                    self.stats.idle_closed += 1
                    log.info("idle", seconds=idle)
                    conv.finish(CloseCode.POLICY_VIOLATION, "idle timeout", ErrorMessage(
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
            conv.finish(CloseCode.GOING_AWAY, "client left")
        except ProtocolError as exc:
            if exc.code == "unauthorized":
                self.stats.rejected_unauthorized += 1
            else:
                self.stats.protocol_errors += 1
            log.info("refused", code=exc.code, error=str(exc))
            conv.finish(exc.close_code, exc.code, ErrorMessage(code=exc.code, message=str(exc)))

    async def _run_session(self, session: Session, conv: _Conversation) -> None:
        reason = "input ended"
        try:
            await session.run()
        except BaseException as exc:
            if only_cancelled(exc):
                reason = "cancelled"
                raise
            reason = "error"
            if _must_propagate(exc):  # Ctrl-C
                raise
            # an error (already an error event), or SystemExit & co. from a handler: this
            # conversation fails, the server goes on; _forward ends the conversation after the events
            conv.failure = exc
            log.warning("session failed", error=_describe(exc))
        finally:
            self.stats.sessions_finished += 1
            self.stats.end_reasons.append(reason)

    async def _forward(self, ws: WebSocketConnection, session: Session, conv: _Conversation,
                       sink: WebSocketSink | None) -> None:
        """The session → browser direction: every event, in order, until the session ends."""
        try:
            async for event in session.events():
                self._observe(event, conv, session, sink)
                await ws.send_message(encode(EventMessage(event.to_dict())))
        except ConnectionClosed:
            conv.finish(CloseCode.GOING_AWAY, "client left")
            return
        if conv.failure is not None:
            text = _describe(conv.failure)
            conv.finish(CloseCode.INTERNAL_ERROR, "session failed",
                        ErrorMessage(code="session_failed", message=f"the session failed: {text}"))
        else:
            conv.finish(CloseCode.NORMAL, "session ended")
