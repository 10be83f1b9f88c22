"""Scripted audio on trio's clock, and a VAD that is exact on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import attrs
import numpy as np
import numpy.typing as npt
import trio

from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError
from voicekit.vad.energy import EnergyVAD as EnergyVAD  # moved to voicekit.vad; re-exported here for old imports


@attrs.frozen
class Silence:
    seconds: float


@attrs.frozen
class Speech:
    """Loud broadband noise standing in for a voice (or real audio if ``clip`` is given)."""

    seconds: float = 0.0
    amplitude: float = 0.3
    clip: AudioFrame | None = None


Segment = Silence | Speech


class ScriptedSource:
    """An :class:`~voicekit.audio.sources.AudioSource` playing a script of segments.

    With ``realtime=True`` (the default) each frame is released at its audio time on trio's
    clock, like a microphone; under ``MockClock(autojump_threshold=0)`` that costs no wall time.
    """

    def __init__(self, script: Iterable[Segment], *, sample_rate: int = 16000, chunk_ms: int = 20,
                 realtime: bool = True, seed: int = 0) -> None:
        self.script = list(script)
        self.sample_rate = sample_rate
        self.channels = 1
        self.chunk_ms = chunk_ms
        self.realtime = realtime
        self._rng = np.random.default_rng(seed)
        self.speech_spans: list[tuple[float, float]] = []
        t = 0.0
        for seg in self.script:
            dur = seg.clip.duration if isinstance(seg, Speech) and seg.clip is not None else seg.seconds
            if isinstance(seg, Speech):
                self.speech_spans.append((t, t + dur))
            t += dur
        self.duration = t

    def _segment_audio(self, seg: Segment) -> np.ndarray:
        if isinstance(seg, Silence):
            return np.zeros(round(seg.seconds * self.sample_rate), np.int16)
        if seg.clip is not None:
            if seg.clip.sample_rate != self.sample_rate or seg.clip.channels != 1:
                raise ConfigError("a scripted clip must be mono at the source's sample rate")
            return seg.clip.to_array()[:, 0]
        n = round(seg.seconds * self.sample_rate)
        noise = self._rng.uniform(-1.0, 1.0, n) * seg.amplitude * 32767
        return noise.astype(np.int16)

    def _pieces(self) -> Iterator[npt.NDArray[np.int16]]:
        """The script cut into chunks: views of the clips' own buffers (a clip is never copied);
        only a chunk that straddles two segments is assembled."""
        chunk = self.sample_rate * self.chunk_ms // 1000
        carry: npt.NDArray[np.int16] = np.zeros(0, np.int16)
        for seg in self.script:
            audio = self._segment_audio(seg)
            i = 0
            if carry.size:
                need = chunk - carry.size
                if audio.size < need:
                    carry = np.concatenate([carry, audio])
                    continue
                yield np.concatenate([carry, audio[:need]])
                i = need
            while audio.size - i >= chunk:
                yield audio[i : i + chunk]
                i += chunk
            carry = audio[i:]
        if carry.size:
            yield carry

    async def frames(self) -> AsyncIterator[AudioFrame]:
        start = trio.current_time()
        pos = 0
        for piece in self._pieces():
            if self.realtime:
                await trio.sleep_until(start + (pos + piece.size) / self.sample_rate)
            else:
                await trio.lowlevel.checkpoint()
            yield AudioFrame(piece.tobytes(), self.sample_rate, 1, pos / self.sample_rate)
            pos += piece.size

    async def aclose(self) -> None:
        pass
