"""Talk to an assistant from a web browser: ``voicekit serve`` (see docs/browser.md)."""

from voicekit.serve.server import (
    ServeConfig,
    ServerStats,
    SessionRecipe,
    VoiceServer,
    WebSocketSink,
    WebSocketSource,
    check_bind,
    is_loopback,
)

__all__ = ["ServeConfig", "ServerStats", "SessionRecipe", "VoiceServer", "WebSocketSink", "WebSocketSource",
           "check_bind", "is_loopback"]
