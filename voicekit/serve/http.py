"""The HTTP side of ``voicekit serve``: one HTTP/1.1 request per connection (h11), the static
page, the answers (with security headers), the Host and Origin checks, and the socket wrapper
that hands an upgrade request, bytes and all, to the WebSocket layer."""

from __future__ import annotations

import struct
from collections.abc import Callable
from http import HTTPStatus
from typing import Final
from urllib.parse import urlsplit

import attrs
import h11
import trio

from voicekit.serve.config import ip_of, is_loopback
from voicekit.serve.protocol import CloseCode

__all__ = ["CSP", "FRAME_ERRORS", "HEALTH_PATH", "MAX_REQUEST_HEAD", "METRICS_PATH", "READY_PATH", "STATIC",
           "WS_PATH", "HeadTooLarge", "PrefixedStream", "Request", "check_host", "check_origin", "client_address",
           "close_frame", "close_reason", "forwarded_hops", "linger", "peer_address", "read_head", "respond"]

WS_PATH: Final = "/ws"
HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
MAX_REQUEST_HEAD: Final = 8192

#: Static files: URL path -> (file in voicekit/serve/static, content type).
STATIC: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
    "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8"),
    "/downsampler.js": ("downsampler.js", "text/javascript; charset=utf-8"),
}
CSP: Final = ("default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")


class PrefixedStream(trio.abc.Stream):
    """The socket as the WebSocket layer sees it: it first returns bytes already read (the HTTP
    request head), notes whether a close frame went out, and does not close the socket when asked
    to: the server does that itself, after sending the close frame the WebSocket layer leaves out
    on a frame-level protocol error, and after a lingering close (see :func:`linger`)."""

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
FRAME_ERRORS: Final = frozenset({CloseCode.PROTOCOL_ERROR, 1007, CloseCode.MESSAGE_TOO_BIG})


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked (server) close frame."""
    payload = struct.pack("!H", code) + close_reason(reason).encode("utf-8")
    return bytes([0x88, len(payload)]) + payload


async def linger(stream: trio.abc.Stream, seconds: float, *, limit: int = 1 << 20) -> None:
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
class Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def wants_websocket(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()


class HeadTooLarge(Exception):
    pass


async def read_head(stream: trio.abc.Stream, conn: h11.Connection) -> tuple[Request, bytes] | None:
    """The request head (at most :data:`MAX_REQUEST_HEAD` bytes, else :class:`HeadTooLarge`) and
    every byte read so far."""
    raw = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if len(raw) > MAX_REQUEST_HEAD:
                raise HeadTooLarge
            data = bytes(await stream.receive_some(4096))
            raw += data
            conn.receive_data(data)  # b"" = the peer closed
            continue
        if isinstance(event, h11.Request):
            ends = [i + n for i, n in ((raw.find(b"\r\n\r\n"), 4), (raw.find(b"\n\n"), 2)) if i >= 0]
            if not ends or min(ends) > MAX_REQUEST_HEAD:  # h11 only limits a head it has not seen whole
                raise HeadTooLarge
            headers: dict[str, str] = {}
            for name, value in event.headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            return Request(event.method.decode("latin-1").upper(),
                            urlsplit(event.target.decode("latin-1")).path, headers), bytes(raw)
        return None  # ConnectionClosed: the peer left before a request


async def respond(stream: trio.abc.Stream, conn: h11.Connection, status: int, body: bytes,
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


def host_of(netloc: str) -> str:
    try:
        return urlsplit("//" + netloc).hostname or ""
    except ValueError:
        return ""


def peer_address(stream: trio.abc.Stream) -> str:
    try:
        peer = stream.socket.getpeername()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "?"
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


def _hop(text: str) -> str | None:
    """One hop of a forwarding header → its IP address as text, or None (``unknown``, an
    obfuscated ``_name``, garbage). Ports and brackets are dropped."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    ip = ip_of(text)
    return None if ip is None else str(ip)


def forwarded_hops(request: Request, header: str) -> list[str | None]:
    """The addresses a ``X-Forwarded-For`` or ``Forwarded`` header lists, client first."""
    value = request.headers.get(header)
    if not value:
        return []
    if header == "x-forwarded-for":
        return [_hop(part) for part in value.split(",")]
    hops: list[str | None] = []
    for element in value.split(","):  # RFC 7239: for=...;proto=...;by=..., for=...
        found: str | None = None
        for pair in element.split(";"):
            name, _, val = pair.partition("=")
            if name.strip().lower() == "for":
                found = _hop(val)
        hops.append(found)
    return hops


def client_address(peer: str, request: Request, trusts: Callable[[str], bool], header: str) -> str:
    """The client behind a chain of proxies. Only a peer that ``trusts`` is believed: its header's
    hops are read right to left (the right end is what that proxy saw), past the hops that are
    trusted proxies themselves; the first other one is the client. A missing or unreadable hop
    stops the walk at the last address known for sure. From an untrusted peer: the peer."""
    if not trusts(peer):
        return peer
    client = peer
    for hop in reversed(forwarded_hops(request, header)):
        if hop is None:
            break
        client = hop
        if not trusts(hop):
            break
    return client


def close_reason(text: str) -> str:
    """WebSocket close reasons must fit in 123 bytes."""
    data = text.encode("utf-8")[:120]
    return data.decode("utf-8", "ignore")



def check_host(request: Request, *, loopback: bool, token: str | None) -> str | None:
    """Against DNS rebinding: a server on loopback without a token answers only to loopback
    host names (a hostile page cannot make the browser send ``Host: 127.0.0.1``)."""
    if not loopback or token:
        return None
    host = host_of(request.headers.get("host", ""))
    if not host or not is_loopback(host):
        return (f"host {request.headers.get('host', '')!r} refused: this server listens on loopback without "
                "a token and answers only to localhost / 127.0.0.1")
    return None


def check_origin(request: Request, allowed: tuple[str, ...]) -> str | None:
    """Only the server's own page (or an allowed origin) may open a conversation from a browser."""
    origin = request.headers.get("origin")
    if origin is None:
        return None  # not a browser (browsers always send Origin with WebSocket requests)
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
