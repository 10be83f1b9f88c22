"""Silero neural voice activity detection for voicekit (entry point ``silero`` in ``voicekit.vad``)."""

from voicekit_silero.vad import FrameSizeError, SileroVAD

__all__ = ["FrameSizeError", "SileroVAD"]
