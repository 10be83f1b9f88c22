"""Typed exceptions. Every message names the thing that went wrong and the fix."""

from __future__ import annotations


class VoicekitError(Exception):
    """Base class of every error voicekit raises on purpose."""


class AudioError(VoicekitError):
    """Audio that cannot be read, decoded or written."""


class UnsupportedAudioError(AudioError):
    """A file that is not audio, or in a format we cannot decode."""


class EmptyAudioError(AudioError):
    """A file that decodes to no samples at all."""


class PluginError(VoicekitError):
    """A plugin that is unknown or failed to load."""


class ConfigError(VoicekitError):
    """A setting with a bad value."""


class ASRError(VoicekitError):
    """A speech recognizer failed."""


class TTSError(VoicekitError):
    """A speech synthesizer failed."""


class HandlerError(VoicekitError):
    """An intent handler raised or timed out."""
