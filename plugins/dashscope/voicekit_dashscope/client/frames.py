"""WebSocket messages written straight to the socket: the per-message hot path of a stream.

trio-websocket (over wsproto) does the handshake, reads, pings and the closing handshake. Sending
a message through it costs, besides the system call, an event object, wsproto's frame writer, a
masking step done with Python integers (about 10 us for a 4 KB realtime audio append), a lock
taken through the scheduler and a socket send that checkpoints twice. :class:`FrameWriter` writes
the same RFC 6455 frame itself — FIN, the opcode, the length, a fresh random masking key per frame
(``os.urandom``) and the payload masked with numpy — under trio-websocket's own send lock, so its
frames never interleave with the pongs and the close frame the library sends. When the kernel's
socket buffer takes the whole frame at once (the usual case), a send makes no trip through the
scheduler; otherwise the rest is written with ``send_all``, which waits for room.

Only plain, uncompressed connections take this path (trio-websocket offers no extensions; a
connection that negotiated one, or a future trio-websocket without the attributes used here,
falls back to ``send_message``, which is correct, only slower).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

import numpy as np
import trio
import trio_websocket
from wsproto.connection import ConnectionState

OP_TEXT = 0x1
OP_BINARY = 0x2
_U32 = np.dtype("<u4")


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (RFC 6455 section 5.3); its own inverse."""
    n = len(payload)
    pad = -n % 4
    words = np.frombuffer(payload + bytes(pad) if pad else payload, dtype=_U32)
    out = (words ^ np.frombuffer(key, dtype=_U32)).tobytes()
    return out[:n] if pad else out


def client_frame(payload: bytes, opcode: int = OP_TEXT, key: bytes | None = None) -> bytes:
    """One complete, masked client frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4) if key is None else key
    return header + key + mask(payload, key)


class FrameWriter:
    """Sends whole messages on an open trio-websocket client connection (see the module doc)."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        stream: Any = getattr(ws, "_stream", None)
        self._stream = stream
        self._lock: trio.StrictFIFOLock | None = getattr(ws, "_stream_lock", None)
        proto: Any = getattr(ws, "_wsproto", None)
        inner = getattr(proto, "connection", None)  # wsproto: set once the handshake is done
        extensions = getattr(getattr(inner, "_proto", None), "extensions", None)
        self.fast = (getattr(ws, "is_client", False) is True and stream is not None
                     and isinstance(self._lock, trio.StrictFIFOLock) and hasattr(ws, "_close_reason")
                     and proto is not None and extensions == [])
        # the kernel socket under a plain (ws://) connection; wss:// goes through the SSL stream
        raw = getattr(getattr(stream, "socket", None), "_sock", None)
        self._sock: socket.socket | None = raw if isinstance(stream, trio.SocketStream) and isinstance(
            raw, socket.socket) else None

    async def send(self, message: str | bytes) -> None:
        """Like ``ws.send_message(message)``: raises ``ConnectionClosed`` once the connection is closed."""
        ws = self.ws
        if not self.fast or ws._close_reason is not None or ws._wsproto.state is not ConnectionState.OPEN:
            await ws.send_message(message)  # the library's path (and its errors)
            return
        if isinstance(message, str):
            frame = client_frame(message.encode("utf-8"), OP_TEXT)
        else:
            frame = client_frame(bytes(message), OP_BINARY)
        lock = self._lock
        assert lock is not None
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()  # no scheduler trip for a free lock
        try:
            sent = 0
            if self._sock is not None:
                try:
                    sent = self._sock.send(frame)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = -1  # a broken socket: let the stream raise and the library note it
            if sent < len(frame):  # a part, none, or a broken socket (-1)
                try:
                    await self._stream.send_all(memoryview(frame)[max(sent, 0):])
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    lock.release()
                    lock = None
                    await ws.send_message(message)  # raises ConnectionClosed after the library's cleanup
        finally:
            if lock is not None:
                lock.release()
