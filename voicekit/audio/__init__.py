"""Audio in and out: the frame type, sources (files, raw PCM, devices), sinks and the streaming resampler."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "SAMPLE_WIDTH",
    "AudioFrame",
    "AudioInfo",
    "AudioSink",
    "AudioSource",
    "FileSource",
    "MemorySink",
    "MicrophoneSource",
    "NullSink",
    "PCMSource",
    "SpeakerSink",
    "StreamResampler",
    "WavFileSink",
    "open_source",
    "probe",
]

_EXPORTS = {
    "AudioFrame": "voicekit.audio.frame",
    "AudioInfo": "voicekit.audio.sources",
    "AudioSink": "voicekit.audio.sinks",
    "AudioSource": "voicekit.audio.sources",
    "FileSource": "voicekit.audio.sources",
    "MemorySink": "voicekit.audio.sinks",
    "MicrophoneSource": "voicekit.audio.device",
    "NullSink": "voicekit.audio.sinks",
    "PCMSource": "voicekit.audio.sources",
    "SAMPLE_WIDTH": "voicekit.audio.frame",
    "SpeakerSink": "voicekit.audio.device",
    "StreamResampler": "voicekit.audio.resample",
    "WavFileSink": "voicekit.audio.sinks",
    "open_source": "voicekit.audio.sources",
    "probe": "voicekit.audio.sources",
}

if TYPE_CHECKING:
    from voicekit.audio.device import MicrophoneSource as MicrophoneSource
    from voicekit.audio.device import SpeakerSink as SpeakerSink
    from voicekit.audio.frame import SAMPLE_WIDTH as SAMPLE_WIDTH
    from voicekit.audio.frame import AudioFrame as AudioFrame
    from voicekit.audio.resample import StreamResampler as StreamResampler
    from voicekit.audio.sinks import AudioSink as AudioSink
    from voicekit.audio.sinks import MemorySink as MemorySink
    from voicekit.audio.sinks import NullSink as NullSink
    from voicekit.audio.sinks import WavFileSink as WavFileSink
    from voicekit.audio.sources import AudioInfo as AudioInfo
    from voicekit.audio.sources import AudioSource as AudioSource
    from voicekit.audio.sources import FileSource as FileSource
    from voicekit.audio.sources import PCMSource as PCMSource
    from voicekit.audio.sources import open_source as open_source
    from voicekit.audio.sources import probe as probe
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
