"""A simulated room: what the speaker plays comes back into the microphone.

:class:`Room` is both the session's sink (the speaker) and its source (the microphone). The
microphone hears the scripted user plus the speaker's output, attenuated by ``echo_gain`` and
``delay_ms`` late (plus an optional weaker reflection), so the self-hearing problem and the
guards against it can be tested on trio's virtual clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import numpy as np
import trio

from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.testing.scripted import ScriptedSource, Segment


class Room:
    def __init__(self, script: Iterable[Segment], *, echo_gain: float = 0.6, delay_ms: int = 40,
                 reflection_gain: float = 0.2, reflection_ms: int = 25, sample_rate: int = 16000,
                 chunk_ms: int = 20, speaker_rate: int = 16000) -> None:
        self.user = ScriptedSource(script, sample_rate=sample_rate, chunk_ms=chunk_ms, realtime=True)
        self.rate = sample_rate
        self.echo_gain = echo_gain
        self.reflection_gain = reflection_gain
        self.delay = round(delay_ms * sample_rate / 1000)
        self.reflection = round(reflection_ms * sample_rate / 1000)
        self.echo = np.zeros(round((self.user.duration + 60) * sample_rate), np.float32)
        self._t0: float | None = None
        self._resampler: StreamResampler | None = None
        # the AudioSink side (the speaker)
        self.sample_rate = speaker_rate
        self.channels = 1
        self.realtime = False
        self.played_samples = 0

    # -- the speaker -------------------------------------------------------------------------

    async def write(self, frame: AudioFrame) -> None:
        await trio.lowlevel.checkpoint()
        self.played_samples += frame.samples
        if self._t0 is None:
            return
        if frame.sample_rate != self.rate:
            if self._resampler is None:
                self._resampler = StreamResampler(frame.sample_rate, self.rate)
            out = self._resampler.process(frame)
            if out is None:
                return
            frame = out
        audio = frame.to_float_mono() * 32768.0
        start = round((trio.current_time() - self._t0) * self.rate) + self.delay
        for offset, gain in ((0, self.echo_gain), (self.reflection, self.reflection_gain)):
            a = start + offset
            b = min(a + len(audio), len(self.echo))
            if a < b:
                self.echo[a:b] += audio[: b - a] * gain

    async def aclose(self) -> None:
        pass

    # -- the microphone ----------------------------------------------------------------------

    def frames(self) -> AsyncIterator[AudioFrame]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[AudioFrame]:
        self._t0 = trio.current_time()
        async for frame in self.user.frames():
            a = round(frame.timestamp * self.rate)
            echo = self.echo[a : a + frame.samples]
            mixed = frame.to_array()[:, 0].astype(np.float32) + echo
            yield AudioFrame(np.clip(mixed, -32768, 32767).astype("<i2").tobytes(), self.rate, 1, frame.timestamp)


class RoomMicrophone:
    """The microphone side of a :class:`Room`, as an AudioSource."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.sample_rate = room.rate
        self.channels = 1

    def frames(self) -> AsyncIterator[AudioFrame]:
        return self.room.frames()

    async def aclose(self) -> None:
        pass
