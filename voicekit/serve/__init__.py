"""Talk to an assistant from a web browser: ``voicekit serve`` (see docs/browser.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "AgentRecipe",
    "ServeConfig",
    "ServerStats",
    "SessionRecipe",
    "VoiceServer",
    "WebSocketSink",
    "WebSocketSource",
    "agent_recipe",
    "check_bind",
    "is_loopback",
]

_EXPORTS = {
    "AgentRecipe": "voicekit.serve.agent",
    "agent_recipe": "voicekit.serve.agent",
    "ServeConfig": "voicekit.serve.config",
    "ServerStats": "voicekit.serve.metrics",
    "SessionRecipe": "voicekit.serve.config",
    "VoiceServer": "voicekit.serve.server",
    "WebSocketSink": "voicekit.serve.stream",
    "WebSocketSource": "voicekit.serve.stream",
    "check_bind": "voicekit.serve.config",
    "is_loopback": "voicekit.serve.config",
}

if TYPE_CHECKING:
    from voicekit.serve.agent import AgentRecipe as AgentRecipe
    from voicekit.serve.agent import agent_recipe as agent_recipe
    from voicekit.serve.config import ServeConfig as ServeConfig
    from voicekit.serve.config import SessionRecipe as SessionRecipe
    from voicekit.serve.config import check_bind as check_bind
    from voicekit.serve.config import is_loopback as is_loopback
    from voicekit.serve.metrics import ServerStats as ServerStats
    from voicekit.serve.server import VoiceServer as VoiceServer
    from voicekit.serve.stream import WebSocketSink as WebSocketSink
    from voicekit.serve.stream import WebSocketSource as WebSocketSource
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
