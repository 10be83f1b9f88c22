"""Helpers of the file-transcription tests: WAV bytes, a loopback file server, a two-speaker recording."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import numpy as np
import trio
from voicekit_dashscope_emulator.http import HttpRequest, HttpResponse, HttpServer

from voicekit.testing.data import librivox_clips, speech


def wav_bytes(pcm: bytes | np.ndarray, rate: int = 16000, channels: int = 1) -> bytes:
    data = pcm.astype("<i2").tobytes() if isinstance(pcm, np.ndarray) else pcm
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
    return buf.getvalue()


def read_pcm(path: object) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def two_speaker_recording(gap_s: float = 1.0) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """LibriVox reader (female), then the pocketsphinx command speaker, alternating twice.

    Returns the 16 kHz samples and the (start, end, who) span of each clip.
    """
    clips = {p.name: p for p, _ in librivox_clips()}
    parts = [("reader", clips["sense_and_sensibility_01_austen_64kb-0880.wav"]), ("commands", speech("goforward")),
             ("reader", clips["sense_and_sensibility_01_austen_64kb-0930.wav"]), ("commands", speech("something"))]
    gap = np.zeros(int(gap_s * 16000), np.int16)
    out: list[np.ndarray] = [gap]
    spans = []
    t = gap_s
    for who, path in parts:
        a = read_pcm(path)
        out += [a, gap]
        spans.append((t, t + a.size / 16000, who))
        t += a.size / 16000 + gap_s
    return np.concatenate(out), spans


@asynccontextmanager
async def serve_files(files: Mapping[str, bytes | HttpResponse]) -> AsyncIterator[str]:
    """Serve ``{path: body}`` over plain HTTP on loopback; yields ``http://127.0.0.1:PORT``."""
    server = HttpServer()

    def handler(body: bytes | HttpResponse):  # type: ignore[no-untyped-def]
        async def h(request: HttpRequest) -> HttpResponse:
            return body if isinstance(body, HttpResponse) else HttpResponse(200, body, "audio/wav")
        return h

    for path, body in files.items():
        server.add_route("GET", path, handler(body))
        server.add_route("POST", path, handler(body))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            nursery.cancel_scope.cancel()


async def closed_port() -> int:
    """A loopback port nobody listens on."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port
