"""structlog set-up: a short chain of processors, session and turn ids from contextvars.

The library is quiet by default: voicekit's modules log through :func:`get_logger`, which writes
only warnings and errors, to stderr, until structlog is configured (by :func:`configure`, which
the command line calls, or by the application). Nothing is ever printed to stdout.

Plugins that hold secrets register a scrubbing function with :func:`add_redactor`. It runs on
every field of every log line before rendering (tracebacks are rendered to text first, so they are
scrubbed too), and once more on the rendered line itself, so nothing reaches the log stream that
has not passed through it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

Processor = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]
_redactors: list[Callable[[str], str]] = []


def add_redactor(scrub: Callable[[str], str]) -> None:
    """Register a function that removes secrets from a string; applied to every log field."""
    if scrub not in _redactors:
        _redactors.append(scrub)


def redact(text: str) -> str:
    for scrub in _redactors:
        text = scrub(text)
    return text


def _redact_processor(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _redactors:
        return event_dict
    if event_dict.get("exc_info") or event_dict.get("stack_info"):
        # render the traceback now, while it can still be scrubbed
        event_dict = structlog.processors.StackInfoRenderer()(logger, name, event_dict)
        event_dict = structlog.processors.format_exc_info(logger, name, event_dict)
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = redact(value)
        elif not isinstance(value, (int, float, bool, type(None))):
            text = repr(value)
            scrubbed = redact(text)
            if scrubbed != text:
                event_dict[key] = scrubbed
    return event_dict


def _redact_rendered(_: Any, __: str, rendered: Any) -> Any:
    """The last step of the chain: scrub the rendered line as a whole."""
    if _redactors and isinstance(rendered, str):
        return redact(rendered)
    return rendered


def configure(level: str = "warning", *, json: bool = False, stream: TextIO | None = None) -> None:
    """Configure structlog for the command line (libraries embedding voicekit may skip this)."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        _redact_processor,
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False),
        _redact_rendered,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # resolve sys.stderr at each call: it may be replaced (by a test runner, say) after set-up
        logger_factory=(lambda *_: structlog.PrintLogger(stream or sys.stderr)),
        cache_logger_on_first_use=False,
    )


def configure_command(verbose: int = 0, *, quiet: str = "warning") -> None:
    """Logging for a plugin's command: ``quiet`` (warnings) by default, ``-v`` info, ``-vv`` debug, on
    stderr — unless the program running the command has set structlog up itself."""
    if not structlog.is_configured():
        configure({0: quiet, 1: "info"}.get(verbose, "debug"))


class _Stderr:
    """A structlog output that writes each line to the *current* ``sys.stderr``."""

    def _write(self, message: str) -> None:
        try:
            print(message, file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr closed: a log line is not worth a crash
            pass

    def __getattr__(self, name: str) -> Callable[[str], None]:
        return self._write


def _quiet_fallback() -> Any:
    return structlog.wrap_logger(
        _Stderr(),
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"), _redact_processor,
                    structlog.dev.ConsoleRenderer(colors=False), _redact_rendered],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


class QuietLogger:
    """voicekit's module loggers: quiet by default, the application's choice once it makes one.

    While nobody has configured structlog, a line goes to stderr only at WARNING or above (so a
    program embedding voicekit sees nothing on stdout, and no debug chatter anywhere). As soon as
    structlog is configured — by :func:`configure`, by the CLI, or by the application itself — every
    call goes through that configuration. voicekit never calls ``structlog.configure`` on its own,
    so an application's set-up is never overwritten.
    """

    __slots__ = ("_fallback", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._fallback: Any = None

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name)
        if self._fallback is None:
            self._fallback = _quiet_fallback()
        return self._fallback

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


def get_logger(name: str) -> Any:
    """A logger for a voicekit module (or plugin): see :class:`QuietLogger`."""
    return QuietLogger(name)


def redaction_processor() -> Processor:
    """The scrubbing processor, for applications that build their own structlog chain."""
    return _redact_processor
