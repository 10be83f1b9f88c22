"""Intent handlers: assistants, turns and replies, and the :class:`Handler` type."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "Assistant",
    "Handler",
    "HandlerResult",
    "Intent",
    "Match",
    "Reply",
    "Turn",
    "compile_template",
    "normalize",
]

_EXPORTS = {
    "Assistant": "voicekit.handlers.assistant",
    "Handler": "voicekit.handlers.protocol",
    "HandlerResult": "voicekit.handlers.protocol",
    "Intent": "voicekit.handlers.assistant",
    "Match": "voicekit.handlers.assistant",
    "Reply": "voicekit.handlers.assistant",
    "Turn": "voicekit.handlers.assistant",
    "compile_template": "voicekit.handlers.templates",
    "normalize": "voicekit.handlers.templates",
}

if TYPE_CHECKING:
    from voicekit.handlers.assistant import Assistant as Assistant
    from voicekit.handlers.assistant import Intent as Intent
    from voicekit.handlers.assistant import Match as Match
    from voicekit.handlers.assistant import Reply as Reply
    from voicekit.handlers.assistant import Turn as Turn
    from voicekit.handlers.protocol import Handler as Handler
    from voicekit.handlers.protocol import HandlerResult as HandlerResult
    from voicekit.handlers.templates import compile_template as compile_template
    from voicekit.handlers.templates import normalize as normalize
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
