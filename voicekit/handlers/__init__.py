"""Intent handlers: assistants, turns and replies."""

from voicekit.handlers.assistant import Assistant, Intent, Match, Reply, Turn
from voicekit.handlers.templates import compile_template, normalize

__all__ = ["Assistant", "Intent", "Match", "Reply", "Turn", "compile_template", "normalize"]
