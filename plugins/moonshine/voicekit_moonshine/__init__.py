"""Moonshine: voicekit's embedded, offline default speech recognizer."""

from voicekit_moonshine.engine import MoonshineASR

__all__ = ["MoonshineASR"]
