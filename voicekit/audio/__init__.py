"""Audio in and out: the frame type, sources (files, raw PCM), sinks and the streaming resampler."""

from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.audio.sinks import AudioSink, MemorySink, NullSink, WavFileSink
from voicekit.audio.sources import AudioInfo, AudioSource, FileSource, PCMSource, open_source, probe

__all__ = [
    "SAMPLE_WIDTH",
    "AudioFrame",
    "AudioInfo",
    "AudioSink",
    "AudioSource",
    "FileSource",
    "MemorySink",
    "NullSink",
    "PCMSource",
    "StreamResampler",
    "WavFileSink",
    "open_source",
    "probe",
]
