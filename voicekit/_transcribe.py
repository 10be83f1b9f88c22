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
from voicekit.errors import TranscriptionFailed, VoicekitError, sole_error
from voicekit.session.session import Session, SessionConfig
from voicekit.vad.base import VADBackend

__all__ = ["TranscriptionFailed", "transcribe"]


class _Progress:
    """Wraps a source and records (and reports) the audio position of each frame it passes on."""

    def __init__(self, source: AudioSource, report: Callable[[float], None] | None) -> None:
        self.source = source
        self.sample_rate = source.sample_rate
        self.channels = source.channels
        self.report = report
        self.position = 0.0
        self.started = False

    async def frames(self) -> AsyncIterator[AudioFrame]:
        async for frame in self.source.frames():
            self.started = True
            self.position = frame.end
            if self.report is not None:
                self.report(frame.end)
            yield frame

    async def aclose(self) -> None:
        await self.source.aclose()


async def transcribe(source: AudioSource, *, asr: ASREngine, vad: VADBackend,
                     config: SessionConfig | None = None,
                     progress: Callable[[float], None] | None = None,
                     on_result: Callable[[TranscriptResult], Any] | None = None) -> list[TranscriptResult]:
    """Final transcript segments of ``source``, in order.

    If recognition fails after audio started flowing (a cloud task fails, a connection is lost for
    good), :class:`TranscriptionFailed` is raised carrying the segments recognised so far and the
    position where it stopped. A failure before any audio (an unreadable file) raises the original
    typed error.
    """
    src = _Progress(source, progress)
    session = Session(src, asr=asr, vad=vad, config=config or SessionConfig())
    finals: list[TranscriptResult] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            async for event in session.events():
                if isinstance(event, ev.Transcript) and event.is_final and event.text.strip():
                    result = TranscriptResult(event.text, True, event.utterance_id, event.start, event.end,
                                              event.words, event.language, event.emotion, event.speaker)
                    finals.append(result)
                    if on_result is not None:
                        on_result(result)
    except BaseException as exc:
        leaf = sole_error(exc)
        if isinstance(leaf, VoicekitError) and (src.started or finals):
            raise TranscriptionFailed(leaf, finals, src.position) from leaf
        if leaf is not exc and isinstance(leaf, VoicekitError):
            raise leaf from None
        raise
    return finals
