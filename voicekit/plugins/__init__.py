"""Plugin discovery by entry points."""

from voicekit.plugins.registry import GROUPS, PluginInfo, list_plugins, load, names

__all__ = ["GROUPS", "PluginInfo", "list_plugins", "load", "names"]
