"""Scripted audio on trio's clock, and a VAD that is exact on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import attrs
import numpy as np
import trio

from voicekit.audio._clock import sleep_until
from voicekit.audio._stream import positive_int
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
        positive_int("ScriptedSource", "sample_rate", sample_rate)
        positive_int("ScriptedSource", "chunk_ms", chunk_ms)
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

    def _segment_pcm(self, seg: Segment) -> bytes:
        """A segment's PCM: a clip's own bytes (shared, never copied), or built once."""
        if isinstance(seg, Silence):
            return bytes(2 * round(seg.seconds * self.sample_rate))
        if seg.clip is not None:
            if seg.clip.sample_rate != self.sample_rate or seg.clip.channels != 1:
                raise ConfigError("a scripted clip must be mono at the source's sample rate")
            return seg.clip.pcm
        n = round(seg.seconds * self.sample_rate)
        noise = self._rng.uniform(-1.0, 1.0, n) * seg.amplitude * 32767
        return noise.astype("<i2").tobytes()

    def _pieces(self) -> Iterator[bytes]:
        """The script cut into chunks of PCM: a clip of exactly one chunk is handed out as it is,
        longer ones are sliced; only a chunk that straddles two segments is assembled."""
        step = 2 * (self.sample_rate * self.chunk_ms // 1000)
        carry = b""
        for seg in self.script:
            pcm = self._segment_pcm(seg)
            i = 0
            if carry:
                need = step - len(carry)
                if len(pcm) < need:
                    carry += pcm
                    continue
                yield carry + pcm[:need]
                i = need
            if i == 0 and len(pcm) == step:
                yield pcm
                carry = b""
                continue
            end = len(pcm) - step
            while i <= end:
                yield pcm[i : i + step]
                i += step
            carry = pcm[i:]
        if carry:
            yield carry

    async def frames(self) -> AsyncIterator[AudioFrame]:
        start = trio.current_time()
        rate = self.sample_rate
        realtime = self.realtime
        frame = AudioFrame.trusted  # whole int16 samples at a checked rate: no validators per frame
        pos = 0
        for pcm in self._pieces():
            n = len(pcm) >> 1
            if realtime:
                await sleep_until(start + (pos + n) / rate)
            else:
                await trio.lowlevel.checkpoint()
            yield frame(pcm, rate, 1, pos / rate)
            pos += n

    async def aclose(self) -> None:
        pass
