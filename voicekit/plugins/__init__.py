"""Plugin discovery by entry points, and building plugins by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "GROUPS",
    "PluginInfo",
    "list_plugins",
    "load",
    "load_assistant",
    "make_asr",
    "make_tts",
    "make_vad",
    "names",
]

_EXPORTS = {
    "GROUPS": "voicekit.plugins.registry",
    "PluginInfo": "voicekit.plugins.registry",
    "list_plugins": "voicekit.plugins.registry",
    "load": "voicekit.plugins.registry",
    "load_assistant": "voicekit.plugins.build",
    "make_asr": "voicekit.plugins.build",
    "make_tts": "voicekit.plugins.build",
    "make_vad": "voicekit.plugins.build",
    "names": "voicekit.plugins.registry",
}

if TYPE_CHECKING:
    from voicekit.plugins.build import load_assistant as load_assistant
    from voicekit.plugins.build import make_asr as make_asr
    from voicekit.plugins.build import make_tts as make_tts
    from voicekit.plugins.build import make_vad as make_vad
    from voicekit.plugins.registry import GROUPS as GROUPS
    from voicekit.plugins.registry import PluginInfo as PluginInfo
    from voicekit.plugins.registry import list_plugins as list_plugins
    from voicekit.plugins.registry import load as load
    from voicekit.plugins.registry import names as names
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
