"""Voice activity detection and endpointing."""

from voicekit.vad.base import VADBackend, VADCapabilities
from voicekit.vad.endpointer import Endpointer, EndpointerConfig, SpeechEnd, SpeechStart

__all__ = ["Endpointer", "EndpointerConfig", "SpeechEnd", "SpeechStart", "VADBackend", "VADCapabilities"]
