"""Encode test audio with FFmpeg's encoders (through PyAV), for decoder and hostile-file tests.

One helper instead of a copy per test file: it picks a sample format the encoder takes, feeds it in
1,024-sample blocks (what AAC and friends want), flushes, and says plainly when this FFmpeg build
lacks the encoder (:class:`EncoderUnavailable`), so a caller can skip that codec.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

__all__ = ["EncoderUnavailable", "encode_audio"]

_BLOCK = 1024
_PREFERRED = ("fltp", "flt", "s16", "s16p")


class EncoderUnavailable(RuntimeError):
    """This FFmpeg build cannot encode the requested codec (or not at that rate / layout)."""


def encode_audio(samples: npt.ArrayLike, rate: int, codec: str, *, container_format: str | None = None,
                 dest: str | Path | IO[bytes] | None = None) -> bytes:
    """Encode float samples in [-1, 1] (shape ``(n,)`` or ``(n, channels)``) and return the file's bytes.

    ``codec`` is an FFmpeg encoder name (``flac``, ``libmp3lame``, ``libopus``, ``aac``, ...);
    ``container_format`` an FFmpeg muxer (``ogg``, ``adts``, ...), else guessed from ``dest``'s
    suffix. With ``dest`` a path, the file is written there as well.
    """
    import av

    block = np.asarray(samples, dtype=np.float32)
    if block.ndim == 1:
        block = block.reshape(-1, 1)
    channels = block.shape[1]
    layout = {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:
        raise ValueError(f"encode_audio takes 1 or 2 channels, not {channels}")
    target: str | IO[bytes] = str(dest) if isinstance(dest, (str, Path)) else (dest or io.BytesIO())
    try:
        with av.open(target, "w", format=container_format) as out:
            stream = cast("av.AudioStream", out.add_stream(codec, rate=rate, layout=layout))
            names = [f.name for f in stream.codec_context.codec.audio_formats or ()]
            fmt = next((f for f in _PREFERRED if f in names), None)
            if fmt is None:
                raise EncoderUnavailable(f"{codec} takes none of the sample formats {_PREFERRED}")
            for start in range(0, len(block), _BLOCK):
                frame = av.AudioFrame.from_ndarray(_as_format(block[start:start + _BLOCK], fmt),
                                                   format=fmt, layout=layout)
                frame.sample_rate = rate
                frame.pts = start
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except (av.error.FFmpegError, ValueError) as exc:  # unknown encoder, unsupported rate or layout
        raise EncoderUnavailable(f"cannot encode {codec} at {rate} Hz {layout}: {exc}") from exc
    if isinstance(target, str):
        return Path(target).read_bytes()
    if isinstance(target, io.BytesIO):
        return target.getvalue()
    return b""


def _as_format(block: npt.NDArray[np.float32], fmt: str) -> npt.NDArray[Any]:
    planar = np.ascontiguousarray(block.T)
    if fmt == "fltp":
        return planar
    if fmt == "flt":
        return np.ascontiguousarray(block.reshape(1, -1))
    if fmt == "s16":
        return np.ascontiguousarray((block.reshape(1, -1) * 32767).astype(np.int16))
    return np.ascontiguousarray((planar * 32767).astype(np.int16))
