"""What every DashScope protocol module shares: the one error, the one refusal, the field readers.

* :class:`ProtocolError` — the single error for traffic that breaks a DashScope protocol (a frame
  that is not JSON, a field of the wrong type, an event out of order). It lives in
  :mod:`voicekit_dashscope.errors` with the plugin's other errors and is re-exported here.
  Its one subclass, ``BadResponseError``, is an HTTP answer that is not the JSON promised.
* :class:`Violation` — what a *server* state machine returns instead of raising when a client
  breaks the protocol: the reply to send and whether to close the connection afterwards.
* :class:`Fields` — readers of JSON objects that check each field's type and name the field
  (with its full path) in the error.

Nothing here does I/O; the module imports only the standard library, attrs and the error module.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from voicekit_dashscope.errors import ProtocolError

__all__ = ["Fields", "ProtocolError", "Violation", "dict_of", "shorten", "tuple_or_none"]

R = TypeVar("R")


@attrs.frozen
class Violation(Generic[R]):
    """A client frame the server refuses: ``reply`` is the event to send back (a ``task-failed``
    or an ``error``); ``close`` says whether the connection ends after it."""

    reply: R
    close: bool = False


def dict_of(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """An attrs converter: a mapping (or ``None``) as a fresh ``dict``."""
    return dict(value or {})


def tuple_or_none(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    """An attrs converter: an iterable as a tuple, ``None`` kept."""
    return None if value is None else tuple(value)


def shorten(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


@attrs.frozen
class Fields:
    """Typed readers over JSON objects, for one kind of message.

    ``what`` names the message in errors (``"realtime event"``, ``"task event"``, ``"result
    file"``); ``error`` is the exception raised. Each reader takes the mapping, the key and the
    field's full path (for the message); ``None`` and a missing key are the same, and a required
    field that is absent raises.
    """

    what: str
    error: type[ProtocolError] = ProtocolError

    def fail(self, path: str, expected: str, value: Any) -> ProtocolError:
        return self.error(f"{self.what} field {path!r} must be {expected}, got {shorten(value)}")

    def _missing(self, path: str, kind: str) -> ProtocolError:
        return self.error(f"{self.what} is missing the {kind} field {path!r}")

    def text(self, d: Mapping[str, Any], key: str, path: str | None = None, *,
            required: bool = False) -> str | None:
        v = d.get(key)
        if v is None:
            if required:
                raise self._missing(path or key, "string")
            return None
        if not isinstance(v, str):
            raise self.fail(path or key, "a string", v)
        return v

    def integer(self, d: Mapping[str, Any], key: str, path: str | None = None, *,
            required: bool = False) -> int | None:
        """An integer; a float with no fractional part (``3.0``, as some peers send) is accepted."""
        v = d.get(key)
        if v is None:
            if required:
                raise self._missing(path or key, "integer")
            return None
        return self.as_int(v, path or key)

    def as_int(self, v: Any, path: str) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(path, "an integer", v)
        if isinstance(v, float):
            if not (math.isfinite(v) and v.is_integer() and abs(v) < 2**53):
                raise self.fail(path, "an integer", v)
            return int(v)
        return v

    def as_whole(self, v: Any, path: str) -> int:
        """A finite number, truncated to an integer (times in ms that a peer may send as floats)."""
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(path, "a number", v)
        return int(v)

    def number(self, d: Mapping[str, Any], key: str, path: str | None = None) -> float | None:
        v = d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(path or key, "a number", v)
        return float(v)

    def flag(self, d: Mapping[str, Any], key: str, path: str | None = None) -> bool | None:
        v = d.get(key)
        if v is None:
            return None
        if not isinstance(v, bool):
            raise self.fail(path or key, "true or false", v)
        return v

    def mapping(self, d: Mapping[str, Any], key: str, path: str | None = None, *,
             required: bool = False) -> dict[str, Any] | None:
        v = d.get(key)
        if v is None:
            if required:
                raise self._missing(path or key, "object")
            return None
        if not isinstance(v, dict):
            raise self.fail(path or key, "an object", v)
        return v

    def array(self, d: Mapping[str, Any], key: str, path: str | None = None) -> list[Any] | None:
        v = d.get(key)
        if v is None:
            return None
        if not isinstance(v, list):
            raise self.fail(path or key, "a list", v)
        return v

    def strings(self, d: Mapping[str, Any], key: str, path: str | None = None) -> tuple[str, ...] | None:
        """A list of strings, as a tuple."""
        v = self.array(d, key, path)
        if v is not None and not all(isinstance(x, str) for x in v):
            raise self.fail(path or key, "a list of strings", v)
        return None if v is None else tuple(v)

    def b64(self, d: Mapping[str, Any], key: str, path: str | None = None) -> bytes:
        """A required Base64 string field, decoded."""
        text = self.text(d, key, path, required=True) or ""
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise self.error(f"{self.what} field {path or key!r} is not valid base64") from None
