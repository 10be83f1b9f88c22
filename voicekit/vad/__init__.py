"""Voice activity detection and endpointing."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "Endpointer",
    "EndpointerConfig",
    "EnergyVAD",
    "SpeechEnd",
    "SpeechStart",
    "VADBackend",
    "VADCapabilities",
    "WebRTCVAD",
]

_EXPORTS = {
    "Endpointer": "voicekit.vad.endpointer",
    "EndpointerConfig": "voicekit.vad.endpointer",
    "EnergyVAD": "voicekit.vad.energy",
    "SpeechEnd": "voicekit.vad.endpointer",
    "SpeechStart": "voicekit.vad.endpointer",
    "VADBackend": "voicekit.vad.base",
    "VADCapabilities": "voicekit.vad.base",
    "WebRTCVAD": "voicekit.vad.webrtc",
}

if TYPE_CHECKING:
    from voicekit.vad.base import VADBackend as VADBackend
    from voicekit.vad.base import VADCapabilities as VADCapabilities
    from voicekit.vad.endpointer import Endpointer as Endpointer
    from voicekit.vad.endpointer import EndpointerConfig as EndpointerConfig
    from voicekit.vad.endpointer import SpeechEnd as SpeechEnd
    from voicekit.vad.endpointer import SpeechStart as SpeechStart
    from voicekit.vad.energy import EnergyVAD as EnergyVAD
    from voicekit.vad.webrtc import WebRTCVAD as WebRTCVAD
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
