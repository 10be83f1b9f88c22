"""The reply player: writes reply audio to the sink in small chunks, so a cancel lands within
one chunk, and counts exactly which samples reached the sink."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable

import trio

from voicekit.audio._clock import sleep_until
from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.audio.sinks import AudioSink

# an input-clocked chunk due this close after a tick is written at that tick
_TICK_SLACK_S = 0.002


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
        # input-clocked pacing: while a paced input flows, the session ticks the player at each
        # input frame, and the player writes what has fallen due then, instead of waking on a
        # timer of its own between two frames (one wake-up per 20 ms instead of two)
        self._input_clock = False
        self._tick: trio.Event | None = None  # set when the player waits for the next tick

    def clock_by_input(self, on: bool) -> None:
        """The session's paced input starts (``True``) or stops (``False``) ticking the player."""
        self._input_clock = on
        self.tick()  # a waiting player re-decides how to wait

    def tick(self) -> None:
        """An input frame arrived (and the policy has seen it)."""
        tick = self._tick
        if tick is not None:
            self._tick = None
            tick.set()

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
        while True:
            if self.paused:
                paused_at = trio.current_time()
                await self._resume.wait()
                self._clock_start += trio.current_time() - paused_at
            if not self.pace:
                break
            # wait until the moment this chunk would start playing on a real device
            due = self._clock_start + self._clock_samples / self.sink.sample_rate
            if self._input_clock:
                if due <= trio.current_time() + _TICK_SLACK_S:
                    break  # due at this tick: the input task ran first, so its decisions are in
                self._tick = tick = trio.Event()
                await tick.wait()
                continue
            await sleep_until(due)  # no Cancelled raised per chunk (see voicekit.audio._clock)
            if not self.paused:  # a pause that came while waiting holds this chunk back too
                break
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
