"""Speech recognition: the plugin API."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "ASRCapabilities",
    "ASRConfig",
    "ASREngine",
    "ASRStream",
    "TranscriptResult",
    "Word",
]

_EXPORTS = {
    "ASRCapabilities": "voicekit.asr.base",
    "ASRConfig": "voicekit.asr.base",
    "ASREngine": "voicekit.asr.base",
    "ASRStream": "voicekit.asr.base",
    "TranscriptResult": "voicekit.asr.base",
    "Word": "voicekit.asr.base",
}

if TYPE_CHECKING:
    from voicekit.asr.base import ASRCapabilities as ASRCapabilities
    from voicekit.asr.base import ASRConfig as ASRConfig
    from voicekit.asr.base import ASREngine as ASREngine
    from voicekit.asr.base import ASRStream as ASRStream
    from voicekit.asr.base import TranscriptResult as TranscriptResult
    from voicekit.asr.base import Word as Word
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
