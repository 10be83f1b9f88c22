"""What a file is, before it is decoded: cheap checks with clear messages (missing, a directory,
empty, text rather than audio), the container's audio stream and header, and WAV truncation."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Final

import attrs
import av
import av.error

from voicekit.errors import AudioError, EmptyAudioError, UnsupportedAudioError

FORMATS_HINT = "WAV, MP3, M4A/AAC, FLAC, Ogg/Opus, WebM"


@attrs.frozen
class AudioInfo:
    """What a file holds, read from its header."""

    path: str
    container: str
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # seconds, as declared by the file (None if unknown)



def wav_truncation(path: str, file_size: int) -> float | None:
    """Seconds a RIFF/WAVE header promises, if the file is shorter than its data chunk says."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"fmt " and pos + 20 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]
        if cid == b"data":
            if size in (0, 0xFFFFFFFF) or not byte_rate:  # written by a streaming writer
                return None
            if pos + 8 + size > file_size:
                return float(size / byte_rate)
            return None
        pos += 8 + size + (size & 1)
    return None


def av_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__



def open_container(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, mode="r")
    except av.error.FileNotFoundError as exc:
        raise AudioError(f"audio file not found: {path!r} — check the path") from exc
    except (av.error.PermissionError, PermissionError) as exc:
        raise AudioError(f"cannot read audio file {path!r}: permission denied — fix its permissions") from exc
    except av.error.IsADirectoryError as exc:
        raise AudioError(f"{path!r} is a directory, not an audio file — pass a file") from exc
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        ext = Path(path).suffix.lower()
        damaged = ext in {".wav", ".mp3", ".m4a", ".aac", ".mp4", ".flac", ".ogg", ".opus", ".oga",
                          ".webm", ".mka", ".wma", ".aiff", ".aif"}
        hint = (f"if it really is {ext[1:].upper()} audio, it is damaged or truncated; re-export it"
                if damaged else f"pass an audio file ({FORMATS_HINT})")
        raise UnsupportedAudioError(
            f"not a readable audio file: {path!r} ({av_reason(exc)}) — {hint}"
        ) from exc


def audio_stream(container: av.container.InputContainer, path: str) -> av.AudioStream:
    if not container.streams.audio:
        fmt = container.format.name
        if fmt == "tty":
            raise UnsupportedAudioError(
                f"{path!r} is a text file, not audio — pass an audio file ({FORMATS_HINT})"
            )
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise UnsupportedAudioError(
                f"{path!r} is an image ({fmt.removesuffix('_pipe')}), not audio — pass an audio file "
                f"({FORMATS_HINT})"
            )
        kinds = ", ".join(
            f"{s.type}/{s.codec_context.name if s.codec_context else '?'}" for s in container.streams
        ) or "none"
        raise UnsupportedAudioError(
            f"{path!r} has no audio stream (streams: {kinds}) — pass a file with an audio track "
            "or extract it first (e.g. ffmpeg -i in.mp4 -vn out.wav)"
        )
    stream: av.AudioStream = container.streams.audio[0]
    best = container.streams.best("audio")
    if isinstance(best, av.AudioStream):
        stream = best
    if stream.codec_context is None:
        raise UnsupportedAudioError(
            f"{path!r} uses an audio codec this FFmpeg build cannot decode — convert it to "
            "WAV (PCM), FLAC or MP3 first"
        )
    return stream


def read_info(container: av.container.InputContainer, stream: av.AudioStream, path: str) -> AudioInfo:
    ctx = stream.codec_context
    rate = ctx.sample_rate or stream.rate or 0
    channels = ctx.layout.nb_channels if ctx.layout else 0
    if rate <= 0 or channels <= 0:
        raise UnsupportedAudioError(
            f"{path!r} does not declare a sample rate and channel count FFmpeg can use — "
            "convert it to WAV or FLAC first"
        )
    duration: float | None = None
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    return AudioInfo(path, container.format.name, ctx.name, rate, channels, duration)


def is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


#: Bytes looked at to tell a text file from audio.
_SNIFF_BYTES: Final = 4096
_TEXT_CONTROLS: Final = frozenset(b"\t\n\r\f\v\x1b\x08")


def _looks_like_text(head: bytes) -> bool:
    """True if ``head`` is plain text: every audio container has binary bytes in its first kilobytes."""
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end is still text
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ord(ch) in _TEXT_CONTROLS for ch in text)


def check_file(path: str) -> bool:
    """Cheap, synchronous checks with clear messages (before FFmpeg sees the file).

    Returns True for a regular file, False for a pipe or device (read once, as a stream).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"audio file not found: {path!r} — check the path") from None
    except OSError as exc:
        raise AudioError(f"cannot read audio file {path!r}: {exc.strerror} — check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{path!r} is a directory, not an audio file — pass a file")
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            return False  # a named pipe, /dev/stdin, process substitution: decoded as a stream
        raise AudioError(f"{path!r} is not a regular file, pipe or audio device — pass an audio file")
    if st.st_size == 0:
        raise EmptyAudioError(f"audio file is empty (0 bytes): {path!r} — record or export the audio again")
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise AudioError(f"cannot read audio file {path!r}: {exc.strerror} — fix its permissions") from None
    if _looks_like_text(head):
        raise UnsupportedAudioError(
            f"{path!r} is a text file, not audio — pass an audio file ({FORMATS_HINT})"
        )
    return True


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header (blocking, a few kilobytes) and describe its audio stream.

    A named pipe cannot be probed (that would use up its data): open it with :class:`FileSource`.
    """
    p = os.fspath(path)
    if not check_file(p):
        raise AudioError(
            f"{p!r} is a pipe, not a file: probing it would use up its audio — open it with FileSource "
            "(or open_source) and read it once"
        )
    container = open_container(p)
    try:
        return read_info(container, audio_stream(container, p), p)
    finally:
        container.close()
