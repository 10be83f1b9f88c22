"""trio client of the DashScope realtime protocol (Qwen3-ASR realtime, Qwen-Omni realtime).

A *connector* opens a transport for a model: ``connector(model)`` is an async context manager
yielding an object with ``send(text)``, ``receive() -> text`` and ``aclose()``. The real one
(:func:`websocket_connector`) speaks WebSocket (trio-websocket) to
``wss://<host>/api-ws/v1/realtime?model=<model>``; the emulator offers an in-memory one for tests
on trio's virtual clock. :class:`RealtimeConnection` wraps a transport in the sans-IO
:class:`~voicekit_dashscope.protocol.realtime.ClientRealtimeProtocol`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, HandshakeError

from voicekit.errors import ConfigError
from voicekit.logging import get_logger
from voicekit_dashscope.auth import ApiKey
from voicekit_dashscope.client.frames import FrameWriter
from voicekit_dashscope.client.task import USER_AGENT, handshake_error
from voicekit_dashscope.errors import ConnectionLostError, ServerTimeoutError
from voicekit_dashscope.protocol.realtime import (
    ClientEvent,
    ClientRealtimeProtocol,
    ErrorEvent,
    RealtimeModel,
    RealtimeProtocolError,
    RealtimeStateError,
    ServerEvent,
    SessionConfig,
    SessionCreated,
    SessionFinish,
    SessionUpdate,
    SessionUpdated,
    get_realtime_model,
)
from voicekit_dashscope.regions import DEFAULT_REGION, REALTIME_PATH, check_transport, get_region

log = get_logger("voicekit.dashscope.realtime")


class RealtimeTransport(Protocol):
    async def send(self, text: str) -> None: ...
    async def receive(self) -> str: ...
    async def aclose(self) -> None: ...


Connector = Callable[[str], AbstractAsyncContextManager[RealtimeTransport]]


def realtime_base_url(region: str = DEFAULT_REGION, *, workspace: str | None = None,
                      base_url: str | None = None) -> str:
    """``wss://host/api-ws/v1/realtime`` for a region (or ``base_url``'s host, e.g. the emulator).

    Without ``base_url``, the host of ``$DASHSCOPE_WEBSOCKET_BASE_URL`` is used when it is set.
    """
    if not base_url:
        from voicekit_dashscope.auth import env_base_urls

        base_url = env_base_urls()[0]
    if base_url:
        parts = urlsplit(base_url.strip())
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
        return check_transport(urlunsplit((scheme, parts.netloc, REALTIME_PATH, "", "")))
    r = get_region(region)
    if not r.realtime_asr:
        raise ConfigError(f"no realtime WebSocket model is documented in region {r.name}; "
                          "use region='beijing' or 'singapore'")
    return f"wss://{r.host_for(workspace)}{REALTIME_PATH}"


class _WebSocketTransport:
    # send() encodes and joins trio-websocket's FIFO send lock before its first checkpoint
    keeps_order = True

    def __init__(self, ws: trio_websocket.WebSocketConnection, url: str) -> None:
        self.ws = ws
        self.url = url
        self.writer = FrameWriter(ws)  # frames straight to the socket (client/frames.py)

    async def send(self, text: str) -> None:
        try:
            await self.writer.send(text)
        except ConnectionClosed as exc:
            raise ConnectionLostError(f"realtime connection closed while sending ({exc.reason})") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLostError(f"realtime connection lost while sending: {exc}") from None

    async def receive(self) -> str:
        try:
            msg = await self.ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason
            code = reason.code if reason is not None else None
            text = (reason.reason or "") if reason is not None else ""
            raise ConnectionLostError(f"realtime connection closed (code {code}{': ' + text if text else ''})",
                                      code=str(code) if code is not None else None, server_message=text) from None
        return msg if isinstance(msg, str) else msg.decode("utf-8", "replace")

    async def ping(self) -> None:
        """A WebSocket ping; returns when the pong arrives (the caller puts a deadline on it)."""
        try:
            await self.ws.ping()
        except ConnectionClosed as exc:
            raise ConnectionLostError(f"realtime connection closed ({exc.reason})") from None

    async def aclose(self) -> None:
        await self.ws.aclose()


def websocket_connector(api_key: ApiKey, *, base: str, workspace: str | None = None,
                        connect_timeout: float = 10.0,
                        extra_headers: Mapping[str, str] | None = None) -> Connector:
    """Connect to ``base`` (``wss://host/api-ws/v1/realtime``) with ``?model=`` appended."""
    check_transport(base)

    @asynccontextmanager
    async def connect(model: str) -> AsyncIterator[RealtimeTransport]:
        url = f"{base}?model={quote(model)}"
        headers = [(b"Authorization", api_key.bearer().encode()), (b"user-agent", USER_AGENT.encode())]
        if workspace:
            headers.append((b"X-DashScope-WorkSpace", workspace.encode()))
        for k, v in (extra_headers or {}).items():
            headers.append((k.encode(), v.encode()))
        try:
            cm = trio_websocket.open_websocket_url(url, extra_headers=headers, connect_timeout=connect_timeout,
                                                   disconnect_timeout=2.0, message_queue_size=256,
                                                   max_message_size=32 * 1024 * 1024)
            ws = await cm.__aenter__()
        except (HandshakeError, OSError, trio.BrokenResourceError) as exc:
            raise handshake_error(exc, url) from None
        try:
            yield _WebSocketTransport(ws, url)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await cm.__aexit__(None, None, None)
                except BaseException:  # closing a dead socket is not news
                    pass

    return connect


class SendLock:
    """A first-come-first-served lock around a send path, at a fraction of ``trio.Lock``'s cost:
    taken without a scheduler trip when free, no owner bookkeeping (release it in the task that
    took it), handed straight to the first waiter on release."""

    __slots__ = ("_held", "_lot")

    def __init__(self) -> None:
        self._held = False
        self._lot = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        if self._held:
            await self._lot.park()  # release() hands the lock over: it stays held
        else:
            self._held = True

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("release of a SendLock that is not held")
        if self._lot:
            self._lot.unpark()
        else:
            self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class RealtimeConnection:
    """One realtime session over a transport: typed send/receive through the protocol."""

    def __init__(self, transport: RealtimeTransport, model: RealtimeModel) -> None:
        self.transport = transport
        self.protocol = ClientRealtimeProtocol(model)
        self.model = model
        self.send_lock = SendLock()
        # a transport whose send() queues the frame before its first checkpoint (the WebSocket one)
        # keeps the protocol's order by itself: no lock of ours per message
        self._ordered = bool(getattr(transport, "keeps_order", False))

    @classmethod
    @asynccontextmanager
    async def open(cls, connector: Connector, model: str | RealtimeModel, *,
                   session: SessionConfig | None = None, timeout: float = 10.0) -> AsyncIterator[RealtimeConnection]:
        """Connect, wait for ``session.created``, send ``session`` and wait for ``session.updated``."""
        spec = model if isinstance(model, RealtimeModel) else get_realtime_model(model)
        async with connector(spec.name) as transport:
            conn = cls(transport, spec)
            with trio.move_on_after(timeout) as scope:
                event = await conn.receive()
                if isinstance(event, ErrorEvent):
                    raise event.error.exception()
                if not isinstance(event, SessionCreated):
                    raise RealtimeProtocolError(f"the realtime server opened with {event.TYPE!r} "
                                                "instead of session.created")
                if session is not None:
                    await conn.update(session)
            if scope.cancelled_caught:
                raise ServerTimeoutError(f"the realtime session for {spec.name} did not open within {timeout:g} s")
            yield conn

    async def send(self, event: ClientEvent) -> None:
        if self._ordered:
            await self.transport.send(self.protocol.send(event))
            return
        async with self.send_lock:
            await self.transport.send(self.protocol.send(event))

    async def send_audio(self, pcm: bytes) -> None:
        """``send(AudioAppend(audio=pcm))`` without building the event (the per-chunk hot path)."""
        if self._ordered:
            await self.transport.send(self.protocol.append_audio(pcm))
            return
        async with self.send_lock:
            await self.transport.send(self.protocol.append_audio(pcm))

    async def receive(self) -> ServerEvent:
        return self.protocol.receive(await self.transport.receive())

    async def update(self, session: SessionConfig) -> dict[str, Any]:
        """Send ``session.update`` and wait for ``session.updated`` (an ``error`` is raised).

        Only for use before the receive loop starts (it reads from the connection itself)."""
        await self.send(SessionUpdate(session=session))
        while True:
            event = await self.receive()
            if isinstance(event, SessionUpdated):
                return dict(event.session)
            if isinstance(event, ErrorEvent):
                raise event.error.exception()
            log.debug("realtime_event_before_updated", type=type(event).__name__)

    async def finish(self) -> None:
        """Send ``session.finish`` (the receive loop then sees ``session.finished`` or ``error``)."""
        try:
            await self.send(SessionFinish())
        except RealtimeStateError:
            pass
