"""The voice-activity-detection plugin API (entry-point group ``voicekit.vad``).

A VAD backend classifies one fixed-size frame of 16-bit mono PCM as speech or not. Everything
stateful about endpointing (pre-roll, start and end thresholds) lives in
:class:`voicekit.vad.endpointer.Endpointer`, which works with any backend.

A backend may also offer ``async def prepare(self, pcm: bytes) -> None``: the session awaits it
with each input frame (at the VAD's rate, in order) before the endpointer cuts that frame, so the
backend can score ahead — the Silero plugin evaluates the windows of every session due at the same
moment in one batched call. ``is_speech`` must give the same answers with or without it.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import attrs


@attrs.frozen
class VADCapabilities:
    name: str
    sample_rates: tuple[int, ...]
    frame_ms: tuple[int, ...]
    notes: str = ""


@runtime_checkable
class VADBackend(Protocol):
    capabilities: ClassVar[VADCapabilities]
    sample_rate: int
    frame_ms: int

    def is_speech(self, pcm: bytes) -> bool:
        """Classify exactly ``frame_ms`` of mono int16 PCM at ``sample_rate``."""
        ...

    def reset(self) -> None: ...
