"""Driving an ASR stream from the endpointer, the way the session does."""

from __future__ import annotations

from collections.abc import Iterable

from voicekit.asr.base import ASRStream
from voicekit.audio.frame import AudioFrame
from voicekit.vad.endpointer import SpeechEnd, SpeechStart


async def forward(stream: ASRStream, items: Iterable[AudioFrame | SpeechStart | SpeechEnd]) -> None:
    """Send the endpointer's output to ``stream``: audio frames as audio, markers as markers."""
    for item in items:
        if isinstance(item, SpeechStart):
            await stream.speech_started(item.t)
        elif isinstance(item, SpeechEnd):
            await stream.speech_ended(item.t)
        else:
            await stream.send_audio(item)
