"""Entry-point plugin discovery.

Groups: ``voicekit.asr``, ``voicekit.vad``, ``voicekit.tts``, ``voicekit.assistants``,
``voicekit.agents`` (realtime models that hear, answer and speak: ``voicekit run --agent``) and
``voicekit.cli`` (subcommands).
Listing reads only the entry-point metadata; a plugin is imported when first asked for, and a
plugin that fails to import is reported with its error without hiding the others.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs

from voicekit.errors import PluginError

GROUPS = ("asr", "vad", "tts", "assistants", "agents", "cli")


@attrs.frozen
class PluginInfo:
    group: str
    name: str
    target: str
    distribution: str | None
    obj: Any = attrs.field(default=None, repr=False, eq=False)
    error: str | None = None

    @property
    def capabilities(self) -> Any:
        return getattr(self.obj, "capabilities", None)


def _group(group: str) -> str:
    if group not in GROUPS:
        raise PluginError(f"unknown plugin group {group!r}; the groups are {', '.join(GROUPS)}")
    return f"voicekit.{group}"


def _eps(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=_group(group)):
        found.setdefault(ep.name, ep)
    return found


def names(group: str) -> list[str]:
    """Names of the installed plugins of a group, without importing any of them."""
    return sorted(_eps(group))


def _load_ep(group: str, ep: EntryPoint) -> PluginInfo:
    dist = ep.dist.name if ep.dist is not None else None
    try:
        obj = ep.load()
    except Exception as exc:  # a broken plugin must not take the others down
        return PluginInfo(group, ep.name, ep.value, dist, None, f"{type(exc).__name__}: {exc}")
    return PluginInfo(group, ep.name, ep.value, dist, obj, None)


def load(group: str, name: str) -> Any:
    """Import and return the object a plugin's entry point names.

    Raises :class:`PluginError` with the installed names when ``name`` is unknown, and with the
    import error when the plugin is installed but broken.
    """
    eps = _eps(group)
    ep = eps.get(name)
    if ep is None:
        known = sorted(eps)
        hint = difflib.get_close_matches(name, known, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise PluginError(
            f"no {group} plugin named {name!r}{did_you_mean}; installed: {', '.join(known) or 'none'}"
            f" — run 'voicekit plugins' to see them all"
        )
    info = _load_ep(group, ep)
    if info.error is not None:
        raise PluginError(f"{group} plugin {name!r} failed to load: {info.error}")
    return info.obj


def list_plugins(group: str | None = None) -> list[PluginInfo]:
    """Load every plugin of one group (or all groups), keeping load errors as data."""
    groups = GROUPS if group is None else (group,)
    out: list[PluginInfo] = []
    for g in groups:
        for _, ep in sorted(_eps(g).items()):
            out.append(_load_ep(g, ep))
    return out
