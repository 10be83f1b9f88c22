"""Assertions on a session's event stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from voicekit import events as ev

if TYPE_CHECKING:
    from voicekit.session.session import Session

E = TypeVar("E", bound=ev.Event)


class Timeline:
    """A recorded list of events with small query helpers."""

    def __init__(self, events: Iterable[ev.Event]) -> None:
        self.events = list(events)

    def __iter__(self) -> Iterator[ev.Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def first(self, kind: type[E]) -> E:
        found = self.of(kind)
        if not found:
            raise AssertionError(f"no {kind.__name__} event in timeline: {self.kinds()}")
        return found[0]

    def finals(self) -> list[str]:
        return [e.text for e in self.of(ev.Transcript) if e.is_final]

    def assert_order(self, *kinds: type[ev.Event]) -> None:
        """The kinds occur in this order (other events may come in between)."""
        it = iter(self.events)
        for kind in kinds:
            if not any(isinstance(e, kind) for e in it):
                raise AssertionError(f"expected {[k.__name__ for k in kinds]} in order; got {self.kinds()}")


async def collect(session: Session) -> Timeline:
    """Run ``session`` to its end and return its timeline (call inside a trio task)."""
    import trio

    events: list[ev.Event] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        async for event in session.events():
            events.append(event)
    return Timeline(events)
