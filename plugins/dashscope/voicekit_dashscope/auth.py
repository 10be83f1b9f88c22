"""API keys that never leak: a redacted value type, a scrubber for text, a structlog processor.

The key is read from a setting or from ``DASHSCOPE_API_KEY``. Every :class:`ApiKey` registers
itself with a process-wide scrubber, so a key that ends up inside an exception message, a URL or a
log field is replaced by ``<redacted…xyz1>`` (its last four characters) before it is shown; a part
of it (any 8 characters in a row, say a key cut short by a length limit) by ``<redacted>``. The scrubber
is also installed into voicekit's logging chain (:func:`voicekit.logging.add_redactor`), and
:func:`structlog_processor` is available for applications that build their own chain.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import MutableMapping
from typing import Any

from voicekit.errors import ConfigError

ENV_VAR = "DASHSCOPE_API_KEY"
_lock = threading.Lock()
_secrets: set[str] = set()


MIN_RUN = 8  # any run of this many characters of a secret is hidden, wherever it stands
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)(?!<redacted)[^\s\"',;]{4,}")
_SK = re.compile(r"\bsk-(?!<redacted)[A-Za-z0-9_\-]{2,}")
_grams: dict[str, re.Pattern[str]] = {}


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
        if secret not in _grams:
            n = min(MIN_RUN, len(secret))
            grams = sorted({secret[i:i + n] for i in range(len(secret) - n + 1)})
            _grams[secret] = re.compile("(?=(" + "|".join(re.escape(g) for g in grams) + "))")
    _install_voicekit_redactor()


def _hide_runs(text: str, secret: str, pattern: re.Pattern[str]) -> str:
    """Replace every stretch of ``text`` made of overlapping ``MIN_RUN``-character pieces of
    ``secret`` (a cut, partial or whole copy of it) by ``<redacted>``."""
    n = min(MIN_RUN, len(secret))
    spans: list[list[int]] = []
    for m in pattern.finditer(text):
        start = m.start()
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], start + n)
        else:
            spans.append([start, start + n])
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for start, end in spans:
        out.append(text[pos:start])
        out.append(mask(secret) if text[start:end] == secret else "<redacted>")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def scrub(text: str) -> str:
    """``text`` with every secret hidden: each registered key whole or in part (any run of
    :data:`MIN_RUN` of its characters, so a key cut short by a length limit is still caught),
    and anything shaped like a credential (``Bearer …``, ``sk-…``) whether registered or not.

    This is the one masking step: the DashScope error constructors and voicekit's log redactor
    both call it, and any text is masked *before* it is cut to a length."""
    if not isinstance(text, str):
        text = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
        patterns = [_grams[s] for s in secrets]
    for secret, pattern in zip(secrets, patterns, strict=True):
        text = _hide_runs(text, secret, pattern)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: f"{m[1]}{m[2]}<redacted>", text)
    if "sk-" in text:
        text = _SK.sub("sk-<redacted>", text)
    return text


def excerpt(text: str, limit: int) -> str:
    """``text`` masked, then cut to ``limit`` characters (never the other way round)."""
    if not isinstance(text, str):
        text = str(text)
    # a huge text is cut (with a margin wider than any key) before masking, to keep it cheap;
    # whatever is kept was masked before the final cut
    cleaned = scrub(text[: limit + 256])
    return cleaned if len(cleaned) <= limit else cleaned[: max(0, limit - 1)] + "…"


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


HTTP_BASE_ENV = "DASHSCOPE_HTTP_BASE_URL"
WEBSOCKET_BASE_ENV = "DASHSCOPE_WEBSOCKET_BASE_URL"


def env_base_urls() -> tuple[str | None, str | None]:
    """``(websocket, http)`` base URLs from the official SDK's environment variables, if set.

    ``DASHSCOPE_WEBSOCKET_BASE_URL`` (e.g. ``wss://dashscope.aliyuncs.com/api-ws/v1/inference``)
    points the WebSocket APIs (task protocol, and the realtime API on the same host) elsewhere;
    ``DASHSCOPE_HTTP_BASE_URL`` (e.g. ``https://dashscope.aliyuncs.com/api/v1``) the HTTP ones
    (file transcription, uploads, vocabularies, compatible mode). voicekit takes the scheme and
    host of each (the standard paths are kept). Precedence: an explicit ``base_url`` setting,
    then these variables, then the region's host.
    """
    ws = os.environ.get(WEBSOCKET_BASE_ENV, "").strip() or None
    http = os.environ.get(HTTP_BASE_ENV, "").strip() or None
    return ws, http


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
