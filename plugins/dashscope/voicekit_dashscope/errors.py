"""Typed errors of the DashScope plugins. Every message is scrubbed of the API key."""

from __future__ import annotations

from voicekit.errors import ASRError, ConfigError
from voicekit_dashscope.auth import scrub


class DashScopeError(ASRError):
    """A DashScope service or protocol failure. ``code`` and ``message`` are the server's words."""

    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, server_message: str | None = None,
                 task_id: str | None = None, status: int | None = None) -> None:
        super().__init__(scrub(message))
        self.code = scrub(code) if code is not None else None
        self.server_message = scrub(server_message) if server_message is not None else None
        self.task_id = task_id
        self.status = status


class ProtocolError(DashScopeError):
    """A frame that breaks the wire protocol: not JSON, wrong shape, or out of order."""

    retryable = True  # a garbled frame from the server: a new connection may do better


class AuthenticationError(DashScopeError):
    """The server refused the API key (HTTP 401/403 at the handshake)."""


class ServiceUnavailableError(DashScopeError):
    """HTTP 503 or a rate limit: try again later."""

    retryable = True


class TaskFailedError(DashScopeError):
    """The server sent ``task-failed`` with an error code and message."""

    # error codes that a new task will not fix (the request itself is wrong)
    PERMANENT = frozenset({"InvalidParameter", "NO_VALID_AUDIO_ERROR", "Arrearage", "AccessDenied",
                           "InvalidApiKey", "ModelNotFound", "Model.AccessDenied", "DataInspectionFailed"})

    def __init__(self, code: str, server_message: str, *, task_id: str | None = None) -> None:
        super().__init__(f"DashScope task failed: {code}: {server_message}", code=code,
                         server_message=server_message, task_id=task_id)
        self.retryable = code not in self.PERMANENT


class ConnectionLostError(DashScopeError):
    """The connection dropped or closed abnormally in the middle of a task."""

    retryable = True


class ServerTimeoutError(DashScopeError):
    """The server stopped answering (no pong, no task-started, no task-finished in time)."""

    retryable = True


class RetriesExhaustedError(DashScopeError):
    """The stream failed again after every allowed retry; ``__cause__`` is the last failure."""


class VocabularyError(DashScopeError):
    """The vocabulary (hotword) API answered with an error body."""


class VocabularyValidationError(ConfigError):
    """A hotword list that breaks the service's limits, caught before anything is sent."""


def http_error(status: int, code: str | None, message: str | None, what: str, *,
               auth_codes: tuple[str | None, ...] | None = None) -> DashScopeError:
    """The typed error for an HTTP error answer: 401/403 (with one of ``auth_codes``, if given)
    → :class:`AuthenticationError`, 429 and 5xx → :class:`ServiceUnavailableError`, the rest →
    :class:`DashScopeError`, each carrying the server's code and message."""
    text = f"{what}: HTTP {status} {code or ''}: {message or ''}".strip()
    if status in (401, 403) and (auth_codes is None or code in auth_codes):
        return AuthenticationError(text + " — check DASHSCOPE_API_KEY and that it belongs to this region",
                                   code=code, server_message=message, status=status)
    if status in (429, 500, 502, 503, 504):
        return ServiceUnavailableError(text, code=code, server_message=message, status=status)
    return DashScopeError(text, code=code, server_message=message, status=status)
