"""The WebSocket as a session's audio source (the browser's microphone) and sink (the replies)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from voicekit.audio.frame import AudioFrame

__all__ = ["BACKLOG_SLACK", "WebSocketSink", "WebSocketSource"]

#: Audio a pipeline may hold back waiting for more (a resampler's delay, a part of a VAD frame).
BACKLOG_SLACK: Final = 0.15


class WebSocketSource:
    """Microphone audio that arrives as binary messages: PCM int16 mono at ``sample_rate``.
    The connection's reader task :meth:`push`-es each message; :meth:`end` ends the input.
    Timestamps count the samples received, so they are contiguous."""

    channels = 1

    def __init__(self, sample_rate: int, *, buffer: int = 100) -> None:
        self.sample_rate = sample_rate
        self._send, self._recv = trio.open_memory_channel[bytes](buffer)
        self._samples = 0
        self.received = 0.0  # seconds of audio received
        # (audio time at the end of a message, when it arrived) for the messages not yet known
        # to be processed; bounded (a stalled session is shed long before it fills)
        self._arrivals: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)

    async def push(self, pcm: bytes) -> bool:
        """Queue audio (waits while ``buffer`` messages are queued); False once the session
        stopped reading."""
        self.received += len(pcm) / 2 / self.sample_rate
        self._arrivals.append((self.received, trio.current_time()))
        try:
            await self._send.send(pcm)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def backlog(self, processed: float) -> float:
        """How far behind real time the session is: the age (seconds) of the oldest audio that
        arrived and is not yet processed, given the audio position ``processed`` the session has
        reached. A client that sends faster than real time is not behind: only waiting counts.
        The last :data:`BACKLOG_SLACK` seconds do not count: the resampler and the VAD may hold
        that much until more audio comes (a client that pauses is not a session that lags)."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= processed + BACKLOG_SLACK:
            arrivals.popleft()
        if not arrivals:
            return 0.0
        return max(0.0, trio.current_time() - arrivals[0][1])

    @property
    def delivered(self) -> float:
        """Seconds of audio the reader has taken so far."""
        return self._samples / self.sample_rate

    def end(self) -> None:
        self._send.close()

    def frames(self) -> WebSocketSource:
        return self

    def __aiter__(self) -> WebSocketSource:
        return self

    async def __anext__(self) -> AudioFrame:
        try:
            pcm = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        frame = AudioFrame(pcm, self.sample_rate, 1, self._samples / self.sample_rate)
        self._samples += len(pcm) // 2
        return frame

    async def aclose(self) -> None:
        self._send.close()
        self._recv.close()


class WebSocketSink:
    """Reply audio out as binary messages. Not realtime: the session's player paces it, so the
    browser receives audio as fast as it plays and a barge-in stops it within one chunk. Writes
    after the browser went away are dropped (the connection's reader cancels the session)."""

    realtime = False
    channels = 1

    def __init__(self, ws: WebSocketConnection, sample_rate: int) -> None:
        self.ws = ws
        self.sample_rate = sample_rate
        self.bytes_sent = 0
        self.closed = False
        self._on_first: Callable[[], None] | None = None

    def on_next_write(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` just before the next piece of audio goes out (the first audio of a reply)."""
        self._on_first = callback

    async def write(self, frame: AudioFrame) -> None:
        if self.closed or not frame.pcm:
            return
        if self._on_first is not None:
            callback, self._on_first = self._on_first, None
            callback()
        try:
            await self.ws.send_message(frame.pcm)
            self.bytes_sent += len(frame.pcm)
        except ConnectionClosed:
            self.closed = True

    async def aclose(self) -> None:
        self.closed = True

