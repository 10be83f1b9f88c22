"""Typed errors of the DashScope plugins. Every message is scrubbed of the API key.

The tree (``ASRError`` and ``ConfigError`` are voicekit's, see :mod:`voicekit.errors`)::

    ASRError
    └── DashScopeError                 the service or the wire failed; ``code``/``message`` are the server's
        ├── ProtocolError              a frame that breaks the wire protocol (retryable)
        │   └── BadResponseError       an HTTP answer that is not the promised JSON
        ├── AuthenticationError        the key was refused (HTTP 401/403)
        ├── ServiceUnavailableError    HTTP 503 or a rate limit (retryable)
        ├── TaskFailedError            ``task-failed`` with a code and message
        ├── ConnectionLostError        the connection dropped mid-task (retryable)
        ├── ServerTimeoutError         the server stopped answering (retryable)
        ├── RetriesExhaustedError      failed again after every allowed retry
        ├── VocabularyError            the vocabulary (hotword) API answered with an error
        ├── UploadError                the temporary file store refused an upload
        └── FileTaskError              a file-transcription task ended without a usable result
            ├── TaskUnknownError       unknown task id (expired, wrong region)
            ├── TaskCanceledError      cancelled before it ran
            ├── WaitTimeoutError       not finished before the client's deadline (retryable)
            └── FileFailedError        every file of the task failed; ``failures`` says why
    ConfigError
    ├── VocabularyValidationError      a hotword list that breaks the service's limits
    ├── FileLimitError                 a local file over the model's size or duration limit
    └── RegionError                    a model not offered in the region asked for

(The realtime protocol's own ``RealtimeProtocolError`` / ``RealtimeStateError`` (ProtocolError)
and ``RealtimeServerError`` (DashScopeError) live with that protocol, in
``voicekit_dashscope.protocol.realtime``.)

:func:`is_retryable` is the one place that decides whether a new connection may help.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from voicekit import errors as core
from voicekit.errors import ASRError, ConfigError
from voicekit_dashscope.auth import excerpt, scrub

MAX_MESSAGE = 1000  # characters of an error message (masked first, then cut): one readable line

if TYPE_CHECKING:
    from voicekit_dashscope.protocol.files import FileOutcome

# --------------------------------------------------------------------------- classification
# The one table that says which server error codes a new connection cannot fix (the request, the
# key or the account is wrong), with what the user should do about each. Every client asks
# :func:`is_retryable`; nothing else decides whether to retry.

PERMANENT_CODES: dict[str, str] = {
    "InvalidParameter": "a request parameter is wrong: check the model name, sample rate, audio format, "
                        "language hints and vocabulary id",
    "invalid_request_error": "the request is wrong: check the model name and session settings",
    "invalid_value": "a setting has a value the model does not take: check the session settings",
    "NO_VALID_AUDIO_ERROR": "the audio could not be decoded: send 16-bit mono PCM or WAV at the declared rate",
    "Arrearage": "the account has an overdue payment: settle it in the Model Studio console",
    "AccessDenied": "the key may not use this model or workspace: check DASHSCOPE_API_KEY and the region",
    "Model.AccessDenied": "the key may not use this model: enable it in the Model Studio console",
    "InvalidApiKey": "check DASHSCOPE_API_KEY and that the key belongs to the selected region",
    "ModelNotFound": "check the model name and that the model is offered in the selected region",
    "DataInspectionFailed": "the input was refused by the content inspection; it will be refused again",
}
TRANSIENT_CODES = frozenset({"InternalError", "InternalError.Algo", "ServiceUnavailable", "Throttling",
                             "Throttling.RateQuota", "Throttling.AllocationQuota", "RequestTimeOut",
                             "CLIENT_ERROR", "server_error", "rate_limit_exceeded"})


class DashScopeError(ASRError):
    """A DashScope service or protocol failure. ``code`` and ``message`` are the server's words."""

    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, server_message: str | None = None,
                 task_id: str | None = None, status: int | None = None) -> None:
        fix = PERMANENT_CODES.get(code) if isinstance(code, str) else None
        if fix and " — " not in message:
            message = f"{message} — {fix}"  # a permanent error says what to do about it
        super().__init__(excerpt(message, MAX_MESSAGE))
        self.code = excerpt(code, 200) if code is not None else None
        self.server_message = excerpt(server_message, 4 * MAX_MESSAGE) if server_message is not None else None
        self.task_id = task_id
        self.status = status


class ProtocolError(DashScopeError, core.ProtocolError):
    """A frame that breaks the wire protocol: not JSON, wrong shape, or out of order (also a
    :class:`voicekit.errors.ProtocolError`, the base of every protocol's error)."""

    retryable = True  # a garbled frame from the server: a new connection may do better


class AuthenticationError(DashScopeError):
    """The server refused the API key (HTTP 401/403 at the handshake)."""


class ServiceUnavailableError(DashScopeError):
    """HTTP 503 or a rate limit: try again later."""

    retryable = True


def fix_for(code: str | None) -> str | None:
    """What to do about a permanent error code, or ``None`` for a code that is not permanent."""
    return PERMANENT_CODES.get(code) if code else None


def is_retryable(exc: BaseException) -> bool:
    """Whether a new connection may fix ``exc``: permanent codes never, known transient codes
    always, otherwise the error type's own ``retryable``. Non-DashScope errors are not retried."""
    if not isinstance(exc, DashScopeError):
        return False
    if exc.code in PERMANENT_CODES:
        return False
    if exc.code in TRANSIENT_CODES or getattr(exc, "error_type", None) == "server_error":
        return True
    return exc.retryable


class TaskFailedError(DashScopeError):
    """The server sent ``task-failed`` with an error code and message."""

    PERMANENT = frozenset(PERMANENT_CODES)  # kept for callers of the earlier name

    def __init__(self, code: str, server_message: str, *, task_id: str | None = None) -> None:
        super().__init__(f"DashScope task failed: {code}: {server_message}",
                         code=code, server_message=server_message, task_id=task_id)
        self.retryable = fix_for(code) is None


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


class UploadError(DashScopeError):
    """The temporary store refused an upload (expired policy, file too large, …)."""


class RegionError(ConfigError):
    """A model is not offered in the region asked for (checked before any network work)."""


class FileLimitError(ConfigError):
    """A local file breaks the model's documented size or duration limit (checked before upload)."""


class BadResponseError(ProtocolError):
    """The server's answer is not the JSON the protocol promises (e.g. an HTML error page)."""


class FileTaskError(DashScopeError):
    """A file-transcription task ended without a usable result."""


class TaskUnknownError(FileTaskError):
    """The task id is unknown to the server (expired after 24 h, wrong region, or never existed)."""


class TaskCanceledError(FileTaskError):
    """The task was cancelled before it ran."""


class WaitTimeoutError(FileTaskError):
    """The task did not finish before the client's deadline (it may still finish on the server)."""

    retryable = True


class FileFailedError(FileTaskError):
    """Every file of the task failed; ``failures`` holds each file's code and message."""

    def __init__(self, message: str, failures: Sequence[FileOutcome], *, task_id: str | None = None) -> None:
        first = failures[0] if failures else None
        super().__init__(message, code=first.code if first else None,
                         server_message=first.message if first else None, task_id=task_id)
        self.failures = tuple(failures)


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


def transport_problem(exc: Exception) -> str:
    """What went wrong on the wire, in words, for an httpx ``TransportError`` (httpx's timeouts have
    no message of their own)."""
    import httpx  # loaded already by every caller; not at this module's import

    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__}); check the network or raise the timeout"
    return scrub(str(exc)) or type(exc).__name__
