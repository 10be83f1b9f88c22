"""Bounded channels with an explicit policy when full (DESIGN rule 3)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import trio

T = TypeVar("T")
Policy = Literal["block", "drop_oldest"]


class BoundedChannel(Generic[T]):
    """A trio memory channel of fixed size that either blocks the sender or drops the oldest item.

    ``dropped`` counts what the drop-oldest policy threw away, so a slow consumer shows up as a
    number instead of as memory growth.
    """

    def __init__(self, size: int, policy: Policy = "block") -> None:
        if size < 1:
            raise ValueError("channel size must be at least 1")
        self.size = size
        self.policy = policy
        self.send_channel, self.receive_channel = trio.open_memory_channel[T](size)
        self.dropped = 0

    async def send(self, item: T) -> None:
        if self.policy == "block":
            await self.send_channel.send(item)
            return
        await trio.lowlevel.checkpoint()
        self.put_nowait(item)

    def put_nowait(self, item: T) -> None:
        """Drop-oldest put; never blocks (for either policy it drops when full). An item for a
        reader that has gone away (closed its end) is discarded."""
        while True:
            try:
                self.send_channel.send_nowait(item)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except trio.WouldBlock:
                try:
                    self.receive_channel.receive_nowait()
                    self.dropped += 1
                except trio.WouldBlock:
                    pass

    async def aclose(self) -> None:
        await self.send_channel.aclose()
