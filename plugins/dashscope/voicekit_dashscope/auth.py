"""API keys that never leak: a redacted value type, a scrubber for text, a structlog processor.

The key is read from a setting or from ``DASHSCOPE_API_KEY``. Every :class:`ApiKey` registers
itself with a process-wide scrubber, so a key that ends up inside an exception message, a URL or a
log field is replaced by ``sk-…xyz1`` (its last four characters) before it is shown. The scrubber
is also installed into voicekit's logging chain (:func:`voicekit.logging.add_redactor`), and
:func:`structlog_processor` is available for applications that build their own chain.
"""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping
from typing import Any

from voicekit.errors import ConfigError

ENV_VAR = "DASHSCOPE_API_KEY"
_lock = threading.Lock()
_secrets: set[str] = set()


def mask(secret: str) -> str:
    """A short, non-reversible stand-in for a secret: the last four characters only."""
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"<redacted…{tail}>" if tail else "<redacted>"


def register_secret(secret: str) -> None:
    """Make :func:`scrub` hide ``secret`` from now on (secrets shorter than 6 chars are refused)."""
    if len(secret) < 6:
        return
    with _lock:
        _secrets.add(secret)
    _install_voicekit_redactor()


def scrub(text: str) -> str:
    """Replace every registered secret inside ``text`` by its masked form."""
    if not _secrets:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (int, float, bool, type(None))):
        return value
    text = repr(value)
    cleaned = scrub(text)
    return cleaned if cleaned != text else value


def structlog_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor that removes every registered secret from every field."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _scrub_value(value)
    return event_dict


_installed = False


def _install_voicekit_redactor() -> None:
    global _installed
    if _installed:
        return
    try:
        from voicekit.logging import add_redactor
    except ImportError:  # pragma: no cover - older core without the hook
        return
    add_redactor(scrub)
    _installed = True


class ApiKey:
    """A DashScope API key. ``str()`` and ``repr()`` are redacted; use :meth:`reveal` to send it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise ConfigError(
                f"the DashScope API key is empty; set {ENV_VAR} or the plugin's api_key setting"
            )
        if any(c.isspace() for c in value):
            raise ConfigError("the DashScope API key contains whitespace; copy it again from the console")
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The real key, for the Authorization header only."""
        return self._value

    def bearer(self) -> str:
        return f"Bearer {self._value}"

    def __repr__(self) -> str:
        return f"ApiKey({mask(self._value)})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> Any:  # pickling would write the key to disk: refuse
        raise TypeError("ApiKey cannot be pickled")


def resolve_api_key(value: str | ApiKey | None = None, *, required: bool = True) -> ApiKey | None:
    """The key from an explicit setting, else from ``DASHSCOPE_API_KEY``.

    Raises :class:`ConfigError` naming both places when no key is found and ``required``.
    """
    if isinstance(value, ApiKey):
        return value
    if value:
        return ApiKey(value)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return ApiKey(env)
    if required:
        raise ConfigError(
            f"no DashScope API key: set the {ENV_VAR} environment variable or pass api_key=... "
            "(keys are per region: a Beijing key does not work in Singapore)"
        )
    return None
