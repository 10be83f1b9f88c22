"""Test helpers of the emulator: an in-memory transport to its realtime endpoint.

:func:`memory_connector` gives :class:`~voicekit_dashscope.client.realtime.RealtimeConnection`
(or ``OmniAgent``) a connector that reaches a :class:`RealtimeService` over trio memory channels
instead of a socket, so a test can run a whole conversation under trio's virtual clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from voicekit_dashscope.errors import ConnectionLostError
from voicekit_dashscope_emulator.http import WebSocketClosed
from voicekit_dashscope_emulator.realtime import RealtimeService


class MemoryServerSocket:
    """The server end of an in-memory WebSocket (the subset of ServerWebSocket the handler uses)."""

    def __init__(self, query: str, headers: Mapping[str, str], inbox: trio.MemoryReceiveChannel[str],
                 outbox: trio.MemorySendChannel[str]) -> None:
        self.query = query
        self.headers = dict(headers)
        self._in = inbox
        self._out = outbox
        self.closed = False
        self.close_code: int | None = None
        self.rejected: int | None = None

    async def accept(self) -> None:
        pass

    async def reject(self, status: int, body: dict[str, Any]) -> None:
        self.rejected = status
        self.closed = True
        await self._out.aclose()

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise WebSocketClosed(None, "already closed")
        try:
            await self._out.send(message if isinstance(message, str) else message.decode("latin-1"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
            raise WebSocketClosed(None, "peer gone") from None

    async def receive(self) -> str:
        try:
            return await self._in.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            self.closed = True
            raise WebSocketClosed(1000, "peer closed") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_code = code
        self.closed = True
        await self._out.aclose()

    async def abort(self) -> None:
        await self.close(1006, "aborted")

    async def black_hole(self) -> None:
        self.closed = True
        try:
            while True:
                await self._in.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            pass


class MemoryTransport:
    """The client end: ``send(text)``, ``receive() -> text``, ``aclose()``."""

    def __init__(self, outbox: trio.MemorySendChannel[str], inbox: trio.MemoryReceiveChannel[str]) -> None:
        self._out = outbox
        self._in = inbox

    async def send(self, text: str) -> None:
        try:
            await self._out.send(text)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionLostError("in-memory realtime connection closed") from None

    async def receive(self) -> str:
        try:
            return await self._in.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionLostError("in-memory realtime connection closed by the server") from None

    async def aclose(self) -> None:
        await self._out.aclose()
        await self._in.aclose()


@asynccontextmanager
async def connect_in_memory(service: RealtimeService, model: str, *, api_key: str = "sk-emulator-test",
                            buffer: int = 4096) -> AsyncIterator[MemoryTransport]:
    """A connection to ``service`` over memory channels, served by a task of this nursery."""
    c2s_send, c2s_recv = trio.open_memory_channel[str](buffer)
    s2c_send, s2c_recv = trio.open_memory_channel[str](buffer)
    server = MemoryServerSocket(f"model={model}", {"authorization": f"Bearer {api_key}"}, c2s_recv, s2c_send)
    transport = MemoryTransport(c2s_send, s2c_recv)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.handle, server)
        try:
            yield transport
        finally:
            await transport.aclose()
            with trio.move_on_after(2):
                await trio.sleep(0)
            nursery.cancel_scope.cancel()


def memory_connector(service: RealtimeService) -> Any:
    """A connector for :class:`~voicekit_dashscope.client.realtime.RealtimeConnection` that
    reaches ``service`` in memory (``connector(model)`` is an async context manager)."""

    def connector(model: str) -> Any:
        return connect_in_memory(service, model)

    return connector
