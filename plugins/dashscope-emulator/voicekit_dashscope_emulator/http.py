"""A small HTTP/1.1 server on trio, built on the sans-IO ``h11`` and ``wsproto`` libraries.

One listening port serves both plain HTTP requests (routed to handlers by method and path) and
WebSocket upgrades (routed by path to a WebSocket handler). The emulator hosts every DashScope
endpoint on it; other emulated APIs can add routes.

:class:`ServerWebSocket` is a deliberately low-level WebSocket: the emulator must be able to
misbehave on purpose (stop answering pings, close with any code, drop the TCP connection).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs
import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from voicekit.logging import get_logger

log = get_logger("voicekit.dashscope.emulator")
MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024  # a 10 MB audio file in base64 (sync ASR) fits
READ = 65536


@attrs.frozen
class HttpRequest:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@attrs.frozen
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, obj: Any) -> HttpResponse:
        return cls(status, json.dumps(obj, ensure_ascii=False).encode())


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class _Replay(trio.abc.Stream):
    """A stream that first returns bytes already read (the peeked request head)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


class WebSocketClosed(Exception):
    """The peer closed (or the transport broke)."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"websocket closed ({code}) {reason}")
        self.code = code
        self.reason = reason


class ServerWebSocket:
    """The server end of one WebSocket, after the handshake was read."""

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, request: Request) -> None:
        self.stream = stream
        self._ws = ws
        self.request = request
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.extra_headers}
        self._send_lock = trio.Lock()
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.closed = False

    @property
    def path(self) -> str:
        return urlsplit(self.request.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.request.target).query

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.closed = True
                raise WebSocketClosed(None, f"send failed: {exc}") from None

    async def accept(self) -> None:
        await self._write(self._ws.send(AcceptConnection()))

    async def reject(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        out = self._ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        out += self._ws.send(RejectData(data=data, body_finished=True))
        try:
            await self._write(out)
        finally:
            await self.abort()

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise WebSocketClosed(None, "already closed")
        event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        await self._write(self._ws.send(event))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes straight to the socket (for injecting broken frames)."""
        await self._write(data)

    async def receive(self) -> str | bytes:
        """Next complete message. Answers pings; raises :class:`WebSocketClosed` at the end."""
        while True:
            for event in self._ws.events():
                handler = self._ON_EVENT.get(type(event))
                message = None if handler is None else await handler(self, event)
                if message is not None:
                    return message
            if self.closed:
                raise WebSocketClosed(None, "closed")
            await self._read_more()

    async def _read_more(self) -> None:
        """Feed the next bytes from the peer to wsproto; :class:`WebSocketClosed` if there are none."""
        try:
            data = bytes(await self.stream.receive_some(READ))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.closed = True
            raise WebSocketClosed(None, "connection lost")
        try:
            self._ws.receive_data(data)
        except RemoteProtocolError as exc:
            self.closed = True
            await self.abort()
            raise WebSocketClosed(1002, f"protocol error: {exc}") from None

    # what receive does with each wsproto event: a finished message is returned, the rest answer None

    async def _on_text(self, event: TextMessage) -> str | None:
        self._text.append(event.data)
        if not event.message_finished:
            return None
        text, self._text = "".join(self._text), []
        return text

    async def _on_bytes(self, event: BytesMessage) -> bytes | None:
        self._bytes.append(bytes(event.data))
        if not event.message_finished:
            return None
        data, self._bytes = b"".join(self._bytes), []
        return data

    async def _on_ping(self, event: Ping) -> None:
        await self._write(self._ws.send(event.response()))

    async def _on_close(self, event: CloseConnection) -> None:
        try:
            await self._write(self._ws.send(event.response()))
        except WebSocketClosed:
            pass
        self.closed = True
        await self.abort()
        raise WebSocketClosed(event.code, event.reason or "")

    _ON_EVENT: ClassVar[dict[type, Callable[[ServerWebSocket, Any], Awaitable[str | bytes | None]]]] = {
        TextMessage: _on_text, BytesMessage: _on_bytes, Ping: _on_ping, CloseConnection: _on_close}

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        try:
            await self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
        except (WebSocketClosed, Exception):
            pass
        self.closed = True
        # give the peer a moment to answer the close, then hang up (the server closes TCP first)
        with trio.move_on_after(1.0):
            try:
                while data := await self.stream.receive_some(READ):
                    try:
                        self._ws.receive_data(bytes(data))
                    except RemoteProtocolError:
                        break
                    if any(isinstance(e, CloseConnection) for e in self._ws.events()):
                        break
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await self.abort()

    async def abort(self) -> None:
        self.closed = True
        with trio.CancelScope(shield=True):
            try:
                await trio.aclose_forcefully(self.stream)
            except Exception:
                pass

    async def black_hole(self) -> None:
        """Stop answering anything (no pongs, no close) and discard input until the peer leaves."""
        self.closed = True
        try:
            while await self.stream.receive_some(READ):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await self.abort()


WsHandler = Callable[[ServerWebSocket], Awaitable[None]]


class HttpServer:
    """Routes by path: ``add_route(method, path, handler)`` and ``add_websocket(path, handler)``.

    A WebSocket path also matches with a trailing ``/`` (the docs show both spellings).
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], HttpHandler] = {}
        self.ws_routes: dict[str, WsHandler] = {}
        self.prefix_routes: list[tuple[str, str, HttpHandler]] = []
        self.connections = 0

    def add_route(self, method: str, path: str, handler: HttpHandler) -> None:
        self.routes[(method.upper(), path.rstrip("/"))] = handler

    def add_prefix_route(self, method: str, prefix: str, handler: HttpHandler) -> None:
        """Route every path that starts with ``prefix`` (e.g. ``/api/v1/tasks/``) when no exact route matches."""
        self.prefix_routes.append((method.upper(), prefix, handler))

    def add_websocket(self, path: str, handler: WsHandler) -> None:
        self.ws_routes[path.rstrip("/")] = handler

    async def serve(self, listeners: list[trio.SocketListener], task_status: Any = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        await trio.serve_listeners(self.handle_stream, listeners, task_status=task_status)

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        try:
            head = b""
            with trio.move_on_after(30):
                while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                    chunk = await stream.receive_some(READ)
                    if not chunk:
                        break
                    head += chunk
            if b"\r\n\r\n" not in head:
                await trio.aclose_forcefully(stream)
                return
            first = head.split(b"\r\n\r\n", 1)[0].lower()
            if b"\r\nupgrade: websocket" in first or b"\r\nupgrade:websocket" in first:
                await self._websocket(stream, head)
            else:
                await self._http(_Replay(stream, head))
        except (trio.BrokenResourceError, trio.ClosedResourceError, WebSocketClosed):
            pass
        except Exception as exc:  # one bad connection must not stop the server
            log.warning("emulator_connection_error", error=f"{type(exc).__name__}: {exc}")
        finally:
            await trio.aclose_forcefully(stream)

    async def _websocket(self, stream: trio.abc.Stream, head: bytes) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
        except RemoteProtocolError:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
        if request is None:
            return
        conn = ServerWebSocket(stream, ws, request)
        handler = self.ws_routes.get(conn.path.rstrip("/"))
        if handler is None:
            await conn.reject(404, {"code": "NotFound", "message": f"no WebSocket endpoint at {conn.path}"})
            return
        await handler(conn)

    async def _http(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request = await _read_request(stream, conn)
            if request is None:
                return
            response = await self._respond(request)
            headers = [("content-type", response.content_type), ("content-length", str(len(response.body))),
                       *response.headers]
            await stream.send_all(conn.send(h11.Response(status_code=response.status, headers=headers)) or b"")
            await stream.send_all(conn.send(h11.Data(data=response.body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            if not _next_cycle(conn):
                return

    def _route(self, request: HttpRequest) -> HttpHandler | None:
        """The handler of an exact route, else of the first prefix route that matches."""
        handler = self.routes.get((request.method, request.path.rstrip("/")))
        if handler is not None:
            return handler
        return next((h for m, p, h in self.prefix_routes if m == request.method and request.path.startswith(p)), None)

    async def _respond(self, request: HttpRequest) -> HttpResponse:
        handler = self._route(request)
        if handler is None:
            known = any(p == request.path.rstrip("/") for (_, p) in self.routes)
            status = 405 if known else 404
            return HttpResponse.json(status, {"code": "NotFound" if status == 404 else "MethodNotAllowed",
                                              "message": f"{request.method} {request.path}"})
        try:
            return await handler(request)
        except Exception as exc:
            log.warning("emulator_handler_error", error=f"{type(exc).__name__}: {exc}")
            return HttpResponse.json(500, {"code": "InternalError", "message": str(exc)})


def _next_cycle(conn: h11.Connection) -> bool:
    """Ready the connection for the next request; False when it must close."""
    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
        return False
    try:
        conn.start_next_cycle()
    except h11.LocalProtocolError:
        return False
    return True


async def next_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    """The next h11 event, reading as needed; ``None`` when the peer breaks HTTP (answered 400), goes quiet
    for 60 s, or leaves mid-request."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            return None
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(60) as scope:
            data = await stream.receive_some(READ)
        if scope.cancelled_caught:
            return None
        conn.receive_data(bytes(data))
        if not data and conn.their_state is not h11.DONE:
            return None


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection) -> HttpRequest | None:
    """The next whole request; ``None`` when there is none (closed, paused, broken, or a body over MAX_BODY)."""
    req: h11.Request | None = None
    body = bytearray()
    while (event := await next_event(stream, conn)) is not None:
        if isinstance(event, h11.Request):
            req = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                return None
        elif isinstance(event, h11.EndOfMessage):
            assert req is not None
            headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in req.headers)
            return HttpRequest(req.method.decode(), req.target.decode("latin-1"), headers, bytes(body))
        else:  # ConnectionClosed, PAUSED
            return None
    return None
