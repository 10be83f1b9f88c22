"""Transcribe recorded audio with any streaming ASR plugin, through the same VAD + ASR path
a live session uses (files are streamed, never loaded whole)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from voicekit import events as ev
from voicekit.asr.base import ASREngine, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.audio.sources import AudioSource
from voicekit.session.session import Session, SessionConfig
from voicekit.vad.base import VADBackend


class _Progress:
    """Wraps a source and reports the audio position of each frame it passes on."""

    def __init__(self, source: AudioSource, report: Callable[[float], None]) -> None:
        self.source = source
        self.sample_rate = source.sample_rate
        self.channels = source.channels
        self.report = report

    async def frames(self) -> AsyncIterator[AudioFrame]:
        async for frame in self.source.frames():
            self.report(frame.end)
            yield frame

    async def aclose(self) -> None:
        await self.source.aclose()


async def transcribe(source: AudioSource, *, asr: ASREngine, vad: VADBackend,
                     config: SessionConfig | None = None,
                     progress: Callable[[float], None] | None = None,
                     on_result: Callable[[TranscriptResult], Any] | None = None) -> list[TranscriptResult]:
    """Final transcript segments of ``source``, in order."""
    src: AudioSource = _Progress(source, progress) if progress is not None else source
    session = Session(src, asr=asr, vad=vad, config=config or SessionConfig())
    finals: list[TranscriptResult] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        async for event in session.events():
            if isinstance(event, ev.Transcript) and event.is_final and event.text.strip():
                result = TranscriptResult(event.text, True, event.utterance_id, event.start, event.end,
                                          event.words, event.language, event.emotion, event.speaker)
                finals.append(result)
                if on_result is not None:
                    on_result(result)
    return finals
