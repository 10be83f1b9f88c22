"""Audio the emulator's synchronous and file APIs are given: WAV decoding, resampling to the
engine's rate, and one channel endpointed and transcribed into final results.
"""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
import trio

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.asr.feed import forward
from voicekit.audio.frame import AudioFrame
from voicekit.vad.endpointer import Endpointer, EndpointerConfig
from voicekit_dashscope_emulator.errors import Refused
from voicekit_dashscope_emulator.task import ENGINE_RATE, make_engine_vad


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(samples × channels int16 array, rate) of a PCM16 WAV file."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2:
                raise Refused("DECODE_ERROR", f"only 16-bit PCM WAV is decoded (got {8 * w.getsampwidth()}-bit)")
            rate, ch = w.getframerate(), w.getnchannels()
            pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise Refused("DECODE_ERROR", f"the audio could not be decoded: {exc}") from None
    return np.frombuffer(pcm, "<i2").reshape(-1, ch), rate



def resample_to_engine(a: np.ndarray, rate: int) -> np.ndarray:
    if rate == ENGINE_RATE:
        return a
    import soxr

    return np.asarray(soxr.resample(a.astype(np.float32) / 32768.0, rate, ENGINE_RATE) * 32767.0).clip(
        -32768, 32767).astype("<i2")



async def transcribe_channel(engine: Any, samples: np.ndarray, *, vad: str = "webrtc", end_silence_ms: int = 500,
                             language: str | None = None, hotwords: tuple[str, ...] = (),
                             context: str | None = None) -> list[TranscriptResult]:
    """Endpoint 16 kHz mono int16 ``samples`` and transcribe them with ``engine``; final results."""
    endpointer = Endpointer(make_engine_vad(vad),
                            EndpointerConfig(pre_roll_ms=200, end_silence_ms=end_silence_ms, max_speech_ms=20000))
    finals: list[TranscriptResult] = []
    config = ASRConfig(sample_rate=ENGINE_RATE, language=language, hotwords=hotwords, context=context)
    async with engine.open_stream(config) as stream, trio.open_nursery() as nursery:
        async def pump() -> None:
            async for r in stream:
                if r.is_final and r.text.strip():
                    finals.append(r)

        nursery.start_soon(pump)
        frame = AudioFrame(samples.astype("<i2").tobytes(), ENGINE_RATE)
        chunks = frame.split(ENGINE_RATE // 10)
        for i, chunk in enumerate(chunks):
            items = list(endpointer.push(chunk))
            if i == len(chunks) - 1:
                items += list(endpointer.flush())
            await forward(stream, items)
            if i % 50 == 0:
                await trio.sleep(0)
        await stream.finish()
    return finals
