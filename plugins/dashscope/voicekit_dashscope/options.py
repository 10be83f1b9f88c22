"""The option declarations shared by the DashScope plugins (see :mod:`voicekit.plugins.options`).

Each plugin class lists its settings as ``options = (...)``; the core checks ``--asr-option
KEY=VALUE`` and ``make_asr(name, KEY=VALUE)`` against them. The connection settings are the same
for every family: the key, the region, a workspace, and a base URL (explicit option, then the
official SDK's environment variables, then the region's host; see :mod:`voicekit_dashscope.auth`).
"""

from __future__ import annotations

from voicekit.plugins.options import Option
from voicekit_dashscope.regions import DEFAULT_REGION


def connection(region: str = DEFAULT_REGION) -> tuple[Option, ...]:
    """``api_key``, ``region``, ``workspace`` and ``base_url``."""
    return (
        Option("api_key", "secret", None, "API key (default: $DASHSCOPE_API_KEY)"),
        Option("region", "str", region, "singapore, beijing or us (or ap-southeast-1, cn-beijing, us-east-1)"),
        Option("workspace", "str", None, "workspace id (workspace-dedicated domain)"),
        Option("base_url", "str", None, "override the host, e.g. ws://127.0.0.1:8765 for the emulator "
                                        "(default: $DASHSCOPE_WEBSOCKET_BASE_URL / $DASHSCOPE_HTTP_BASE_URL)"),
    )


def model_option(default: str, choices: tuple[str, ...], text: str = "model (snapshot) to use") -> Option:
    return Option("model", "enum", default, text, choices=choices)


def without(options: tuple[Option, ...], *names: str) -> tuple[Option, ...]:
    return tuple(o for o in options if o.name not in names)
