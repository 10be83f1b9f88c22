"""A session's event stream: the session clock, every subscriber's bounded channel, and the log
line of each event (DESIGN.md rule 4: events are the embedding API, the log and the test oracle)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import structlog
import trio

from voicekit import events as ev
from voicekit.logging import get_logger
from voicekit.session.channels import BoundedChannel

log = get_logger("voicekit.session")

# how each event is logged; the rest (speech, partials, reply text) at debug level
_LOG_LEVELS: dict[type, str] = {
    ev.Error: "error", ev.Warning: "warning", ev.SessionStarted: "info", ev.SessionEnded: "info",
    ev.TurnEnded: "info", ev.IntentMatched: "info", ev.ReplyStarted: "info", ev.ReplyFinished: "info",
    ev.ReplyInterrupted: "info",
}


def _filtered_out(level: str) -> bool:
    """Whether a voicekit log line at ``level`` would be dropped anyway: unconfigured structlog
    (voicekit's quiet default keeps warnings and errors only), or a filtering wrapper class whose
    method for that level does nothing."""
    if not structlog.is_configured():
        return level in ("debug", "info")
    method = getattr(structlog.get_config()["wrapper_class"], level, None)
    return getattr(method, "__name__", "") == "_nop"


class EventHub:
    """Where a session's events go. ``now()`` is seconds since :meth:`start`; :meth:`emit` hands an
    event to every subscriber (each drops its oldest event when it falls behind) and to the log."""

    def __init__(self) -> None:
        self._subscribers: list[BoundedChannel[ev.Event]] = []
        self._t0 = 0.0
        self._held: list[ev.Event] | None = None  # see hold()

    def start(self) -> None:
        """The session starts: its clock reads 0 now."""
        self._t0 = trio.current_time()

    def now(self) -> float:
        return trio.current_time() - self._t0

    def subscribe(self, buffer: int) -> trio.MemoryReceiveChannel[ev.Event]:
        ch: BoundedChannel[ev.Event] = BoundedChannel(buffer, "drop_oldest")
        self._subscribers.append(ch)
        return ch.receive_channel

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscribers)

    def hold(self) -> bool:
        """Keep the events emitted from now on until :meth:`release` (their ``t`` is still the
        moment of ``emit``; only their delivery waits). The turn hand-off holds them so that the
        handler takes the scheduler's next round alone: no subscriber woken alongside it, no log
        line built before it. False when a hold is on already (then its owner releases)."""
        if self._held is not None:
            return False
        self._held = []
        return True

    @contextmanager
    def holding(self) -> Iterator[None]:
        """:meth:`hold` for the ``with`` block; released at its end unless a hold was on already."""
        held = self.hold()
        try:
            yield
        finally:
            if held:
                self.release()

    def release(self) -> None:
        """Deliver the held events, in order, and stop holding."""
        held, self._held = self._held, None
        if held:
            for event in held:
                self._deliver(event)

    def emit(self, event: ev.Event) -> None:
        held = self._held
        if held is not None:
            held.append(event)
            return
        self._deliver(event)

    def _deliver(self, event: ev.Event) -> None:
        for sub in self._subscribers:
            sub.put_nowait(event)
        level = _LOG_LEVELS.get(type(event), "debug")
        if _filtered_out(level):
            return  # the log line would be dropped: skip building it (the turn hand-off is timed)
        fields = {k: v for k, v in attrs.asdict(event, recurse=False).items() if k not in ("t", "words")}
        getattr(log, level)(event.kind, **fields)

    def close(self) -> None:
        """The stream ends: every subscriber's ``async for`` finishes after what it holds."""
        self.release()
        for sub in self._subscribers:
            sub.send_channel.close()
