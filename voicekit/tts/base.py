"""The text-to-speech plugin API (entry-point group ``voicekit.tts``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:  # annotations only: importing the plugin API does not load numpy
    from voicekit.audio.frame import AudioFrame


@attrs.frozen
class TTSCapabilities:
    name: str
    languages: tuple[str, ...] = ("en",)
    sample_rate: int = 22050
    streaming: bool = True
    offline: bool = True
    notes: str = ""


@runtime_checkable
class TTSEngine(Protocol):
    capabilities: ClassVar[TTSCapabilities]

    def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioFrame]:
        """Yield audio chunks of the spoken text as soon as they are made."""
        ...
