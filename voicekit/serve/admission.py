"""Who may start a conversation on ``voicekit serve``, and when.

* The pending pool: connections that have not said a valid hello yet never hold a session slot;
  they hold a :class:`Ticket` in a pool bounded in all (the oldest is dropped when full) and per
  client address (one more is refused with HTTP 429).
* Readiness: a new conversation is admitted only while the server is not draining, not full
  (``max_sessions``) and its event loop is not lagging (``max_loop_lag``); :class:`LoopLag`
  measures the lag. A refusal is retryable (1013 after the hello, or HTTP 503 + Retry-After at
  the upgrade), and its text says why.
"""

from __future__ import annotations

import collections
from collections import Counter
from collections.abc import Callable
from typing import Final

import attrs
import trio

from voicekit.serve.config import ServeConfig
from voicekit.serve.metrics import ServerStats

__all__ = ["LAG_INTERVAL", "LAG_WINDOW", "REFUSAL_REASONS", "RETRY_AFTER", "LoopLag", "PendingPool", "Ticket",
           "count_refusal", "readiness", "refusal_text"]

#: Seconds a refused client is asked to wait (``Retry-After``) before it tries again.
RETRY_AFTER: Final = 2
#: How often the event-loop lag is sampled, and over how many seconds its mean is taken.
LAG_INTERVAL: Final = 0.05
LAG_WINDOW: Final = 1.0
#: The WebSocket close reason of a refusal after the hello, by why it was refused.
REFUSAL_REASONS: Final = {"max_sessions": "server busy", "loop_lag": "server overloaded",
                          "draining": "server draining"}


@attrs.define(eq=False)
class Ticket:
    """A connection that has not said a valid hello yet: it holds a place in the pending pool
    (and in its address's share of it) until it is answered, admitted, or evicted."""

    address: str | None  # None: not known yet (a trusted proxy's connection, before its request head)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    evicted: bool = False
    released: bool = False
    admitted: bool = False  # became a conversation


class PendingPool:
    """The connections that have not said a valid hello yet, oldest first."""

    def __init__(self, config: ServeConfig, stats: ServerStats) -> None:
        self.config = config
        self.stats = stats
        self._pending: dict[Ticket, None] = {}  # insertion-ordered: the oldest first
        self._per_address: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, address: str | None) -> Ticket | None:
        """A place in the pending pool, or None when ``address`` has its share already. When the
        pool is full the oldest pending connection makes room: a flood can only push out other
        unauthenticated connections, and a client that says hello at once still gets through.
        ``address`` None (a trusted proxy's connection): counted in the pool, and in its client's
        share once :meth:`assign` names the client."""
        cfg = self.config
        if address is not None and self._per_address[address] >= cfg.max_pending_per_address:
            return None
        while len(self._pending) >= cfg.max_pending:
            oldest = next(iter(self._pending))
            oldest.evicted = True
            oldest.scope.cancel()
            self.release(oldest)
            self.stats.evicted += 1
        ticket = Ticket(address)
        self._pending[ticket] = None
        if address is not None:
            self._per_address[address] += 1
        return ticket

    def assign(self, ticket: Ticket, address: str) -> bool:
        """Name the client of a ticket admitted without one; False (and the ticket keeps no
        share) when that client has its share already."""
        if ticket.released or ticket.address is not None:
            return not ticket.released
        if self._per_address[address] >= self.config.max_pending_per_address:
            return False
        ticket.address = address
        self._per_address[address] += 1
        return True

    def release(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self._pending.pop(ticket, None)
        if ticket.address is not None:
            self._per_address[ticket.address] -= 1
            if self._per_address[ticket.address] <= 0:
                del self._per_address[ticket.address]


def readiness(config: ServeConfig, *, draining: bool, active: int, loop_lag: float) -> tuple[bool, str]:
    """Whether a new conversation would be admitted, and if not why: ``"draining"``,
    ``"max_sessions"`` (full) or ``"loop_lag"`` (the event loop is late: more work would slow
    the running conversations)."""
    if draining:
        return False, "draining"
    if active >= config.max_sessions:
        return False, "max_sessions"
    if loop_lag > config.max_loop_lag:
        return False, "loop_lag"
    return True, "ready"


def refusal_text(why: str, config: ServeConfig, loop_lag: float) -> str:
    """What a refused client is told (one line, with what to do)."""
    n = config.max_sessions
    if why == "max_sessions":
        return (f"the server is busy: {n} conversation{'s' if n != 1 else ''} already running (its "
                "--max-sessions limit); try again later")
    if why == "loop_lag":
        return (f"the server is overloaded (its event loop runs {loop_lag * 1000:.0f} ms late, over "
                f"its --max-loop-lag of {config.max_loop_lag * 1000:.0f} ms); try again later")
    return "the server is shutting down; try again (another server will answer)"


def count_refusal(stats: ServerStats, why: str) -> None:
    if why == "max_sessions":
        stats.rejected_busy += 1
    elif why == "loop_lag":
        stats.refused_loop_lag += 1
    else:
        stats.refused_draining += 1


class LoopLag:
    """How late the event loop wakes up: sleep a fixed interval, note the excess; ``value`` is
    the mean over the last :data:`LAG_WINDOW` seconds."""

    def __init__(self) -> None:
        self.value = 0.0

    async def watch(self, on_sample: Callable[[float], None]) -> None:
        """Measure until cancelled; ``on_sample(lag)`` after each sample."""
        window: collections.deque[float] = collections.deque(maxlen=max(1, round(LAG_WINDOW / LAG_INTERVAL)))
        while True:
            start = trio.current_time()
            await trio.sleep(LAG_INTERVAL)
            lag = max(0.0, trio.current_time() - start - LAG_INTERVAL)
            window.append(lag)
            self.value = sum(window) / len(window)
            on_sample(lag)
