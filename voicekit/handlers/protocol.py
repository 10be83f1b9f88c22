"""What an intent handler is, as a type: the seam between a session and the code it runs.

A handler takes the :class:`~voicekit.handlers.Turn` and answers with a reply — a string, a
:class:`~voicekit.handlers.Reply`, ``None`` to stay silent, or an async iterator of strings (a
streamed reply) — either directly (a plain ``def``, run in a worker thread) or through an
awaitable (``async def``). Any callable of that shape is a :class:`Handler`: functions, bound
methods and objects with ``__call__`` alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from voicekit.handlers.assistant import Reply, Turn

__all__ = ["Handler", "HandlerResult"]

#: What a handler's reply may be, once awaited.
HandlerResult: TypeAlias = "str | Reply | AsyncIterator[str] | None"


class Handler(Protocol):
    """``handler(turn)`` returns a reply, or an awaitable of one (see the module docstring)."""

    def __call__(self, turn: Turn, /) -> HandlerResult | Awaitable[HandlerResult]: ...
