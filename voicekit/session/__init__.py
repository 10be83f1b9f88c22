"""The live session pipeline."""

from voicekit.session.interruption import Decision, InterruptionPolicy, NeverInterrupt, VADInterruption
from voicekit.session.player import ReplyPlayer
from voicekit.session.session import Session, SessionConfig, open_session

__all__ = ["Decision", "InterruptionPolicy", "NeverInterrupt", "ReplyPlayer", "Session", "SessionConfig",
           "VADInterruption", "open_session"]
