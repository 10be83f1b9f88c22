"""Talk to an assistant from a web browser: ``voicekit serve`` (see docs/browser.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "ServeConfig",
    "ServerStats",
    "SessionRecipe",
    "VoiceServer",
    "WebSocketSink",
    "WebSocketSource",
    "check_bind",
    "is_loopback",
]

_EXPORTS = {
    "ServeConfig": "voicekit.serve.server",
    "ServerStats": "voicekit.serve.server",
    "SessionRecipe": "voicekit.serve.server",
    "VoiceServer": "voicekit.serve.server",
    "WebSocketSink": "voicekit.serve.server",
    "WebSocketSource": "voicekit.serve.server",
    "check_bind": "voicekit.serve.server",
    "is_loopback": "voicekit.serve.server",
}

if TYPE_CHECKING:
    from voicekit.serve.server import ServeConfig as ServeConfig
    from voicekit.serve.server import ServerStats as ServerStats
    from voicekit.serve.server import SessionRecipe as SessionRecipe
    from voicekit.serve.server import VoiceServer as VoiceServer
    from voicekit.serve.server import WebSocketSink as WebSocketSink
    from voicekit.serve.server import WebSocketSource as WebSocketSource
    from voicekit.serve.server import check_bind as check_bind
    from voicekit.serve.server import is_loopback as is_loopback
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
