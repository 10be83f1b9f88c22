"""The phases of one realtime session, and which events move it from one phase to the next.

::

    CONNECTING ──session.created (server)──► OPEN ──session.finish (client)──► FINISHING
                                                                                   │
                                          FINISHED ◄──session.finished (server)────┘

:data:`TRANSITIONS` holds these moves as data, by who sends the event; every other event leaves
the phase unchanged. Both state machines (:mod:`._client`, :mod:`._server`) read it. What else
each side refuses (a response event for an unknown response, audio commit in VAD mode) depends
on more than the phase and is written out in those modules; so is the one rule where the client
is stricter than the table: it takes ``session.finished`` only after its own ``session.finish``.
"""

from __future__ import annotations

import enum

from voicekit_dashscope.protocol.realtime._events import Event, SessionCreated, SessionFinish, SessionFinished


class Phase(enum.Enum):
    CONNECTING = "connecting"  # waiting for session.created
    OPEN = "open"
    FINISHING = "finishing"  # session.finish sent / received
    FINISHED = "finished"


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


TRANSITIONS: dict[Role, dict[Phase, dict[type[Event], Phase]]] = {
    Role.CLIENT: {
        Phase.OPEN: {SessionFinish: Phase.FINISHING},
    },
    Role.SERVER: {
        Phase.CONNECTING: {SessionCreated: Phase.OPEN},
        Phase.OPEN: {SessionFinished: Phase.FINISHED},  # a server may end a session by itself
        Phase.FINISHING: {SessionFinished: Phase.FINISHED},
    },
}
# the events that change the phase somewhere, by sender: elsewhere they are out of order
PHASE_EVENTS: dict[Role, frozenset[type[Event]]] = {
    role: frozenset(t for moves in table.values() for t in moves) for role, table in TRANSITIONS.items()}
# the phases in which a client may send anything at all
CLIENT_SENDS_IN = frozenset({Phase.OPEN})


def next_phase(role: Role, phase: Phase, event: Event) -> Phase | None:
    """The phase after ``role`` sends ``event`` in ``phase``; ``None`` when ``event`` changes the
    phase elsewhere but not here (it is out of order)."""
    move = TRANSITIONS[role].get(phase, {}).get(type(event))
    if move is not None:
        return move
    return None if type(event) in PHASE_EVENTS[role] else phase
