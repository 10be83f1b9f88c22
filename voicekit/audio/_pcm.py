"""Raw PCM streams (stdin, a socket, a trio stream) as audio sources: :class:`PCMSource`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import IO, BinaryIO

import numpy as np
import trio

from voicekit.audio._stream import READ_SIZE, Chunker, GeneratorOwner, positive_int, read_limiter
from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.errors import AudioError, ConfigError, EmptyAudioError
from voicekit.logging import get_logger

log = get_logger("voicekit.audio")


class PCMSource:
    """Raw PCM int16 little-endian from a binary stream, e.g. ``sys.stdin.buffer`` or a socket.

    ``stream`` is either a blocking binary file object (read in a worker thread; reads that are
    waiting when the source is cancelled are abandoned, as trio does for blocking reads) or a
    :class:`trio.abc.ReceiveStream`. The input format is ``input_rate``/``input_channels``; frames
    come out at ``sample_rate`` (``None`` keeps ``input_rate``) and ``channels``. The source does
    not close ``stream``.
    """

    def __init__(self, stream: BinaryIO | IO[bytes] | trio.abc.ReceiveStream, *, input_rate: int = 16000,
                 input_channels: int = 1, sample_rate: int | None = 16000, channels: int = 1,
                 chunk_ms: int = 20, realtime: bool = False) -> None:
        positive_int("PCMSource", "input_rate", input_rate)
        positive_int("PCMSource", "input_channels", input_channels)
        positive_int("PCMSource", "sample_rate", sample_rate, allow_none=True)
        positive_int("PCMSource", "channels", channels)
        positive_int("PCMSource", "chunk_ms", chunk_ms)
        if not isinstance(stream, trio.abc.ReceiveStream) and not hasattr(stream, "read"):
            raise ConfigError(
                "PCMSource needs a binary stream with .read() or a trio ReceiveStream, "
                f"got {type(stream).__name__}"
            )
        self.stream = stream
        self.input_rate = input_rate
        self.input_channels = input_channels
        self.sample_rate: int = sample_rate or input_rate
        self.channels = channels
        self.chunk_ms = chunk_ms
        self.realtime = realtime
        self._owner = GeneratorOwner()

    def _reader(self) -> Callable[[], Awaitable[bytes | None]]:
        stream = self.stream
        if isinstance(stream, trio.abc.ReceiveStream):
            receive = stream

            async def read_trio() -> bytes | None:
                return bytes(await receive.receive_some(READ_SIZE))

            return read_trio
        read: Callable[[int], bytes] = getattr(stream, "read1", None) or stream.read

        async def read_blocking() -> bytes | None:
            data = await trio.to_thread.run_sync(read, READ_SIZE, limiter=read_limiter(),
                                                 abandon_on_cancel=True)
            if data is None:  # a non-blocking file object with nothing to read yet
                await trio.sleep(0.005)
                return None
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ConfigError(
                    f"PCMSource stream returned {type(data).__name__}, not bytes — open it in binary mode "
                    "(e.g. sys.stdin.buffer)"
                )
            return bytes(data)

        return read_blocking

    def frames(self) -> AsyncGenerator[AudioFrame, None]:
        if self._owner.closed:
            raise AudioError("this PCMSource is closed — make a new one")
        return self._owner.track(self._frames())

    async def _frames(self) -> AsyncGenerator[AudioFrame, None]:
        read = self._reader()
        width = SAMPLE_WIDTH * self.input_channels
        convert: StreamResampler | None = None
        if self.sample_rate != self.input_rate or self.channels != self.input_channels:
            convert = StreamResampler(self.input_rate, self.sample_rate, self.input_channels, self.channels)
        chunker = Chunker(self.sample_rate, self.channels, self.chunk_ms, self.realtime)
        rest = b""
        while not self._owner.closed:
            data = await read()
            if data is None:
                continue
            eof = not data
            data = rest + data
            usable = len(data) - len(data) % width
            rest = data[usable:]
            samples = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self.input_channels)
            if convert is not None:
                fl = samples.astype(np.float32) * np.float32(1.0 / 32768.0)
                if eof:
                    out = convert.process_array(fl, last=True)
                else:
                    out = convert.process_array(fl)
            else:
                out = samples.astype(np.int16, copy=False)
            for frame in chunker.cut(out, final=eof):
                await chunker.pace(frame)
                yield frame
                if self._owner.closed:
                    return
            if eof:
                if rest:
                    log.warning("PCM stream ended in the middle of a sample; dropped the odd bytes",
                                dropped_bytes=len(rest), sample_bytes=width)
                if chunker.emitted == 0:
                    raise EmptyAudioError(
                        "the PCM stream ended before any audio arrived — check what is piped into it"
                    )
                return

    async def aclose(self) -> None:
        await self._owner.aclose()
