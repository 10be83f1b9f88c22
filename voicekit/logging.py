"""structlog set-up: a short chain of processors, session and turn ids from contextvars.

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


def redaction_processor() -> Processor:
    """The scrubbing processor, for applications that build their own structlog chain."""
    return _redact_processor
