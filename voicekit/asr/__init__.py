"""Speech recognition: the plugin API."""

from voicekit.asr.base import ASRCapabilities, ASRConfig, ASREngine, ASRStream, TranscriptResult, Word

__all__ = ["ASRCapabilities", "ASRConfig", "ASREngine", "ASRStream", "TranscriptResult", "Word"]
