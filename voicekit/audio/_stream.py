"""What the audio sources share: thread limiters per trio run, cutting samples into frames on a
contiguous timeline (with real-time pacing), and closing the generators a source handed out."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Final

import numpy as np
import numpy.typing as npt
import trio

from voicekit.audio._clock import sleep_until
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError

#: Decoding threads running at once, over every FileSource of one trio run.
DECODE_THREADS: Final = max(2, min(8, os.cpu_count() or 2))
#: Threads blocked reading a PCM stream (stdin and the like), per trio run.
READ_THREADS: Final = 16

# A CapacityLimiter belongs to one trio run: a module-level one breaks a program that runs trio in
# two threads at once (``task._runner is self``). One limiter of each kind per run instead.
_DECODE_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("voicekit_decode_limiter")
_READ_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("voicekit_read_limiter")


def _run_limiter(var: trio.lowlevel.RunVar[trio.CapacityLimiter], size: int) -> trio.CapacityLimiter:
    try:
        return var.get()
    except LookupError:
        limiter = trio.CapacityLimiter(size)
        var.set(limiter)
        return limiter


def decode_limiter() -> trio.CapacityLimiter:
    """The limiter of decoding threads for the current trio run."""
    return _run_limiter(_DECODE_LIMITER, DECODE_THREADS)


def read_limiter() -> trio.CapacityLimiter:
    """The limiter of threads reading PCM streams for the current trio run."""
    return _run_limiter(_READ_LIMITER, READ_THREADS)


#: Seconds of audio decoded per worker-thread hop.
BATCH_SECONDS: Final = 1.0
#: Bytes read from a PCM stream per call.
READ_SIZE: Final = 65536


def positive_int(owner: str, name: str, value: object, *, allow_none: bool = False) -> None:
    """Refuse (with a ConfigError naming ``owner`` and ``name``) anything but a positive int."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{owner} {name} must be a positive integer, got {value!r}")


class Chunker:
    """Cuts arrays of samples into fixed-size frames on a contiguous timeline, with optional pacing."""

    def __init__(self, sample_rate: int, channels: int, chunk_ms: int, realtime: bool,
                 t0: float = 0.0) -> None:
        self.rate = sample_rate
        self.channels = channels
        self.chunk = max(1, sample_rate * chunk_ms // 1000)
        self.realtime = realtime
        self.t0 = t0
        self.emitted = 0  # samples per channel handed out
        self._leftover = np.zeros((0, channels), np.int16)
        self._clock_start: float | None = None

    def cut(self, samples: npt.NDArray[np.int16], *, final: bool = False) -> list[AudioFrame]:
        buf = samples if not len(self._leftover) else np.concatenate([self._leftover, samples])
        whole = len(buf) - len(buf) % self.chunk
        if final:
            whole = len(buf)
        out: list[AudioFrame] = []
        for i in range(0, whole, self.chunk):
            piece = buf[i : i + self.chunk]
            ts = self.t0 + (self.emitted + i) / self.rate
            out.append(AudioFrame.trusted(piece.tobytes(), self.rate, self.channels, ts))  # whole samples
        self.emitted += whole
        self._leftover = buf[whole:].copy() if whole < len(buf) else np.zeros((0, self.channels), np.int16)
        return out

    async def pace(self, frame: AudioFrame) -> None:
        """In realtime mode, wait until ``frame`` would have been fully recorded."""
        if not self.realtime:
            return
        if self._clock_start is None:
            self._clock_start = trio.current_time()
        end = (frame.timestamp - self.t0) + frame.duration
        await sleep_until(self._clock_start + end)


class GeneratorOwner:
    """Keeps the generators handed out by ``frames()`` so ``aclose()`` can finish them."""

    def __init__(self) -> None:
        self._gens: list[AsyncGenerator[AudioFrame, None]] = []
        self.closed = False

    def track(self, gen: AsyncGenerator[AudioFrame, None]) -> AsyncGenerator[AudioFrame, None]:
        self._gens.append(gen)
        return gen

    async def aclose(self) -> None:
        self.closed = True
        gens, self._gens = self._gens, []
        for gen in gens:
            try:
                await gen.aclose()
            except RuntimeError:  # still running in another task; it sees `closed` and stops
                pass
