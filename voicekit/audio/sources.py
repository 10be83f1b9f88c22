"""Where audio comes from: files (anything FFmpeg decodes) and raw PCM streams such as stdin.

Every source yields :class:`~voicekit.audio.frame.AudioFrame` chunks of about ``chunk_ms``
milliseconds at the source's ``sample_rate``/``channels``, with timestamps in seconds of audio
that are contiguous (each frame starts where the previous one ended). Files are streamed: PyAV
decodes them packet by packet in a worker thread (a batch of about a second of audio per thread
hop) and soxr resamples them on the fly, so memory stays flat whatever the file's length.

With ``realtime=True`` a source releases each frame at the moment a microphone would have finished
recording it, measured on trio's clock — a file then behaves like live input, and under
``trio.testing.MockClock`` the timing is exact.

The parts live in private modules, one concern each (``_probe``: what a file is; ``_file``:
decoding files; ``_pcm``: raw PCM streams; ``_stream``: what the sources share); this module is
where they are imported from.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from voicekit.audio._file import FileSource
from voicekit.audio._pcm import PCMSource
from voicekit.audio._probe import AudioInfo, probe, wav_truncation
from voicekit.audio._stream import (
    BATCH_SECONDS,
    DECODE_THREADS,
    READ_SIZE,
    READ_THREADS,
    decode_limiter,
    read_limiter,
)
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError, UnsupportedAudioError

__all__ = [
    "BATCH_SECONDS",
    "DECODE_THREADS",
    "READ_SIZE",
    "READ_THREADS",
    "AudioInfo",
    "AudioSource",
    "FileSource",
    "PCMSource",
    "decode_limiter",
    "open_source",
    "probe",
    "read_limiter",
]

_wav_truncation = wav_truncation  # its old name here (the fuzz bench and a test reach it)


@runtime_checkable
class AudioSource(Protocol):
    """What a session consumes: an async stream of frames at a known rate."""

    sample_rate: int
    channels: int

    def frames(self) -> AsyncIterator[AudioFrame]:
        """Frames of about ``chunk_ms``; timestamps in audio seconds, contiguous."""
        ...

    async def aclose(self) -> None: ...



_FILE_ONLY = {"start"}
_PCM_ONLY = {"input_rate", "input_channels"}


def open_source(spec: str | os.PathLike[str], **kw: Any) -> AudioSource:
    """Open an audio source from a command-line style spec.

    ``"-"`` reads raw PCM int16 LE from stdin (:class:`PCMSource`; pass ``input_rate`` /
    ``input_channels`` to describe it); anything else is a path to an audio file
    (:class:`FileSource`). Keyword arguments go to the source.
    """
    if isinstance(spec, str) and spec == "-":
        wrong = sorted(set(kw) & _FILE_ONLY)
        if wrong:
            raise ConfigError(f"stdin ('-') is a raw PCM stream; {', '.join(wrong)}= only applies to files")
        stdin = sys.stdin.buffer if sys.stdin is not None else None
        if stdin is None:
            raise ConfigError("no stdin to read from — pass an audio file path instead of '-'")
        if stdin.isatty():
            raise ConfigError(
                "stdin is a terminal, not audio — pipe raw PCM int16 LE into it "
                "(e.g. arecord -f S16_LE -r 16000 -c 1 | ...) or pass an audio file"
            )
        return PCMSource(stdin, **kw)
    path = os.fspath(spec)
    if not path.strip():
        raise ConfigError("empty audio source — pass a file path, or '-' for raw PCM on stdin")
    if "://" in path:
        raise UnsupportedAudioError(
            f"{path!r} looks like a URL; voicekit reads local files and stdin only — download it first"
        )
    wrong = sorted(set(kw) & _PCM_ONLY)
    if wrong:
        raise ConfigError(
            f"{', '.join(wrong)}= describes raw PCM on stdin ('-'); a file declares its own format: {path!r}"
        )
    return FileSource(path, **kw)
