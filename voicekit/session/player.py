"""The reply player: writes reply audio to the sink in small chunks, so a cancel lands within
one chunk, and counts exactly which samples reached the sink."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable

import trio

from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.audio.sinks import AudioSink


class ReplyPlayer:
    """Plays one reply at a time. ``played`` is the number of samples (at the sink's rate)
    written for the current reply; it is exact even when the reply is cancelled mid-way.

    With ``realtime=True`` and a sink that does not block by itself (a file, a socket), writes
    are paced on trio's clock, so the sink receives audio as a speaker would play it.
    """

    def __init__(self, sink: AudioSink, *, chunk_ms: int = 20, realtime: bool = False,
                 on_played: Callable[[AudioFrame], None] | None = None) -> None:
        self.sink = sink
        self.on_played = on_played  # e.g. the echo guard's reference input
        self.chunk_ms = chunk_ms
        self.pace = realtime and not sink.realtime
        self.played = 0
        self._resume = trio.Event()
        self._resume.set()
        self._clock_start = 0.0
        self._clock_samples = 0

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def pause(self) -> None:
        if not self.paused:
            self._resume = trio.Event()

    def resume(self) -> None:
        self._resume.set()

    def start_reply(self) -> None:
        self.played = 0
        self._resume.set()
        self._clock_start = trio.current_time()
        self._clock_samples = 0

    async def play(self, frames: AsyncIterable[AudioFrame]) -> int:
        """Write every frame (resampled to the sink) and return the samples written."""
        resampler: StreamResampler | None = None
        chunk = self.sink.sample_rate * self.chunk_ms // 1000
        if self.pace and isinstance(frames, trio.MemoryReceiveChannel):
            # paced, each write waits for its moment (a checkpoint): frames already buffered are
            # taken without a task switch of their own
            frames = _drain(frames)
        async for frame in frames:
            if frame.sample_rate != self.sink.sample_rate or frame.channels != self.sink.channels:
                if resampler is None:
                    resampler = StreamResampler(frame.sample_rate, self.sink.sample_rate,
                                                frame.channels, self.sink.channels)
                out = resampler.process(frame)
                if out is None:
                    continue
                frame = out
            for piece in frame.split(chunk):
                await self._write(piece)
        if resampler is not None:
            tail = resampler.flush()
            if tail is not None and tail.samples:
                for piece in tail.split(chunk):
                    await self._write(piece)
        return self.played

    async def _write(self, piece: AudioFrame) -> None:
        if self.paused:
            paused_at = trio.current_time()
            await self._resume.wait()
            self._clock_start += trio.current_time() - paused_at
        if self.pace:
            # sleep until the moment this chunk would start playing on a real device
            await trio.sleep_until(self._clock_start + self._clock_samples / self.sink.sample_rate)
        await self.sink.write(piece)
        if self.on_played is not None:
            self.on_played(piece)
        self.played += piece.samples
        self._clock_samples += piece.samples


class _drain:  # used like a function
    """The frames of a channel, taking those already buffered without a task switch."""

    def __init__(self, recv: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        self.recv = recv

    def __aiter__(self) -> _drain:
        return self

    async def __anext__(self) -> AudioFrame:
        try:
            return self.recv.receive_nowait()
        except trio.WouldBlock:
            try:
                return await self.recv.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
