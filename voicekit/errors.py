"""Every error voicekit raises on purpose, and the helpers that read exception groups.

Each message names the thing that went wrong and the fix. The tree::

    VoicekitError
    ├── AudioError                  audio that cannot be read, decoded, played or written
    │   ├── UnsupportedAudioError   not audio, or a format we cannot decode
    │   ├── EmptyAudioError         decodes to no samples at all
    │   └── DeviceNotFoundError     no such microphone / speaker
    ├── ConfigError                 a setting with a bad value
    │   ├── OutputError             an output path that cannot or must not be written
    │   └── NoEngineError           no installed engine meets the requirements
    ├── PluginError                 a plugin that is unknown or failed to load
    ├── ASRError                    a speech recognizer failed (plugins subclass it)
    ├── TTSError                    a speech synthesizer failed
    ├── HandlerError                an intent handler raised or timed out
    ├── TranscriptionFailed         recognition stopped part-way; what was recognised is kept
    └── ProtocolError               a peer broke a wire protocol (malformed, out of order, over a limit)

Each wire protocol specializes :class:`ProtocolError` where it is spoken: ``voicekit.serve.protocol``
for browser messages (with the WebSocket close code to answer), ``voicekit_dashscope.errors`` for
the DashScope services. ``except voicekit.ProtocolError`` catches them all.

A session is a tree of trio nurseries, so what reaches the caller is often an exception group
holding the real error next to the cancellations it caused. :func:`leaves`,
:func:`only_cancelled`, :func:`sole_error`, :func:`first_error` and :func:`one_line` are the one
place that reads those groups and turns an error into the one line a person sees.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from voicekit.asr.base import TranscriptResult

__all__ = [
    "ASRError",
    "AudioError",
    "ConfigError",
    "DeviceNotFoundError",
    "EmptyAudioError",
    "HandlerError",
    "NoEngineError",
    "OutputError",
    "PluginError",
    "ProtocolError",
    "TTSError",
    "TranscriptionFailed",
    "UnsupportedAudioError",
    "VoicekitError",
    "first_error",
    "leaves",
    "one_line",
    "only_cancelled",
    "sole_error",
]

E = TypeVar("E", bound=BaseException)


class VoicekitError(Exception):
    """Base class of every error voicekit raises on purpose."""


class AudioError(VoicekitError):
    """Audio that cannot be read, decoded or written."""


class UnsupportedAudioError(AudioError):
    """A file that is not audio, or in a format we cannot decode."""


class EmptyAudioError(AudioError):
    """A file that decodes to no samples at all."""


class DeviceNotFoundError(AudioError):
    """The device asked for (by index or name) does not exist or cannot play/record."""


class PluginError(VoicekitError):
    """A plugin that is unknown or failed to load."""


class ConfigError(VoicekitError):
    """A setting with a bad value."""


class OutputError(ConfigError):
    """An output path that cannot or must not be written."""


class NoEngineError(ConfigError):
    """No installed engine meets the requirements; the message lists why each one was dropped."""


class ASRError(VoicekitError):
    """A speech recognizer failed."""


class TTSError(VoicekitError):
    """A speech synthesizer failed."""


class HandlerError(VoicekitError):
    """An intent handler raised or timed out."""


class ProtocolError(VoicekitError):
    """A peer broke a wire protocol: a message that is malformed, out of order or over a limit.

    The base of every protocol's own error (see the module's tree); raise a protocol's subclass.
    """


class TranscriptionFailed(VoicekitError):
    """Recognition stopped part-way; what was recognised before is kept.

    ``segments`` are the final segments received before the failure, ``position`` the seconds of
    audio handed to the recognizer when it failed, ``error`` the typed error that stopped it (also
    the ``__cause__``).
    """

    def __init__(self, error: BaseException, segments: list[TranscriptResult], position: float) -> None:
        self.error = error
        self.segments = segments
        self.position = position
        super().__init__(f"recognition stopped at {position:.1f} s of audio after {len(segments)} "
                         f"segment(s): {one_line(error)}")

    @property
    def recognised_until(self) -> float:
        """End of the last segment received, in seconds of audio (0 if none)."""
        ends = [s.end for s in self.segments if s.end is not None]
        return max(ends) if ends else 0.0


# -- exception groups -------------------------------------------------------------------------


def _is_cancelled(exc: BaseException) -> bool:
    # no trio loaded means no trio.Cancelled can exist: this module stays importable without trio
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, nested groups flattened, in order (``[exc]`` for a plain one)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def only_cancelled(exc: BaseException) -> bool:
    """True if ``exc`` is a ``trio.Cancelled``, or a group of nothing but cancellations."""
    return all(_is_cancelled(leaf) for leaf in leaves(exc))


def sole_error(exc: BaseException) -> BaseException:
    """The one exception in ``exc`` that is not a cancellation; ``exc`` itself when there are
    several (or none). A nursery wraps a failing task's error in a group, next to the
    cancellations it caused: this gets the typed error back to re-raise it."""
    real = [leaf for leaf in leaves(exc) if not _is_cancelled(leaf)]
    return real[0] if len(real) == 1 else exc


def first_error(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``exc`` (``exc`` itself included) that is not a
    cancellation, or None. ``first_error(group, VoicekitError)`` finds the error to show a person."""
    for leaf in leaves(exc):
        if isinstance(leaf, kind) and not _is_cancelled(leaf):
            return leaf
    return None


def one_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of ``exc``'s message with secrets redacted, or its type name if it has no
    message; ``with_type=True`` puts the type name in front (``"OSError: disk full"``)."""
    from voicekit.logging import redact  # structlog is loaded only once an error is shown

    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not lines:
        return name
    text = redact(lines[0])
    return f"{name}: {text}" if with_type else text
