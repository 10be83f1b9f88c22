"""The one exception every emulated endpoint refuses with."""

from __future__ import annotations


class Refused(Exception):
    """A request, task or file the service refuses: its error ``code`` and ``message`` as it words them,
    and the HTTP ``status`` it answers with (ignored where the refusal is a ``task-failed`` event)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
