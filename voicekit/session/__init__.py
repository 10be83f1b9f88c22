"""The live session pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "Decision",
    "InterruptionPolicy",
    "NeverInterrupt",
    "ReplyPlayer",
    "Session",
    "SessionConfig",
    "VADInterruption",
    "open_session",
]

_EXPORTS = {
    "Decision": "voicekit.session.interruption",
    "InterruptionPolicy": "voicekit.session.interruption",
    "NeverInterrupt": "voicekit.session.interruption",
    "ReplyPlayer": "voicekit.session.player",
    "Session": "voicekit.session.session",
    "SessionConfig": "voicekit.session.session",
    "VADInterruption": "voicekit.session.interruption",
    "open_session": "voicekit.session.session",
}

if TYPE_CHECKING:
    from voicekit.session.interruption import Decision as Decision
    from voicekit.session.interruption import InterruptionPolicy as InterruptionPolicy
    from voicekit.session.interruption import NeverInterrupt as NeverInterrupt
    from voicekit.session.interruption import VADInterruption as VADInterruption
    from voicekit.session.player import ReplyPlayer as ReplyPlayer
    from voicekit.session.session import Session as Session
    from voicekit.session.session import SessionConfig as SessionConfig
    from voicekit.session.session import open_session as open_session
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
