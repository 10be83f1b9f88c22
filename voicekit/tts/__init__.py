"""Text to speech: the plugin API (:mod:`voicekit.tts.base`) and the built-in espeak-ng engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "EspeakTTS",
    "TTSCapabilities",
    "TTSEngine",
]

_EXPORTS = {
    "EspeakTTS": "voicekit.tts.espeak",
    "TTSCapabilities": "voicekit.tts.base",
    "TTSEngine": "voicekit.tts.base",
}

if TYPE_CHECKING:
    from voicekit.tts.base import TTSCapabilities as TTSCapabilities
    from voicekit.tts.base import TTSEngine as TTSEngine
    from voicekit.tts.espeak import EspeakTTS as EspeakTTS
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
