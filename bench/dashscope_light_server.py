"""A scripted DashScope server for client benchmarks: the wire protocols and nothing else.

``bench_dashscope_streams.py --server light`` runs this in separate processes so that what is
measured is the *client*, and so that the server costs little: its WebSocket end is its own
(:class:`RawWebSocket`), which reads an audio append's size without unmasking or decoding it.
It speaks the task protocol (``/api-ws/v1/inference``) and the realtime protocol
(``/api-ws/v1/realtime``) through voicekit's own sans-IO protocol modules, but does no audio work:
it knows the bench's tone script (:func:`script`) and answers by the amount of audio received — a
partial every 0.3 s of a sentence's audio, and the final once the sentence's end plus the
end-of-sentence silence has arrived. The full emulator (``voicekit emulate dashscope --fixtures``)
instead runs a VAD over every frame and looks at each utterance's spectrum, which at hundreds of
streams costs more than the client it serves.

    python bench/dashscope_light_server.py [--port 0] [--seconds 12] [--silence-ms 700]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import struct
import sys
from functools import partial
from typing import Any

import numpy as np
import trio
from voicekit_dashscope.client.frames import mask
from voicekit_dashscope.protocol._util import Violation
from voicekit_dashscope.protocol.realtime import (
    AudioAppend,
    AudioCommitted,
    ServerRealtimeProtocol,
    SessionCreated,
    SessionFinish,
    SessionFinished,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionText,
    get_realtime_model,
)
from voicekit_dashscope.protocol.task import Audio, FinishTask, RunTask, Sentence, ServerTaskProtocol

RATE = 16000
PARTIAL_EVERY = 0.3
APPEND_MARK = b'"type": "input_audio_buffer.append"'
AUDIO_MARK = b'"audio": "'
_APPEND = AudioAppend(audio=b"")  # stands for any append once counted
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Closed(Exception):
    """The client closed the connection (or it broke)."""


class Append:
    """A realtime audio append, read only as far as its size: ``pcm_bytes`` of audio."""

    def __init__(self, pcm_bytes: int) -> None:
        self.pcm_bytes = pcm_bytes


def unmask(data: bytes, key: bytes, offset: int = 0) -> bytes:
    """``data`` (bytes ``offset``... of a masked payload) unmasked with the 4-byte ``key``."""
    return mask(data, key[offset % 4:] + key[:offset % 4])  # masking is its own inverse


class RawWebSocket:
    """The server end of a WebSocket, written for this bench: a client's audio append is not
    unmasked or decoded at all (its size is read from the frame's length, its head and its tail),
    so that hundreds of streams cost the server little next to the client it measures. Messages
    must come unfragmented (as voicekit's clients send them)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.path = ""

    async def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            try:
                data = await self.stream.receive_some(262144)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise Closed from None
            if not data:
                raise Closed
            self.buf += data

    async def accept(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            await self._fill(len(self.buf) + 1)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        self.path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest())
        await self.stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                   b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        try:
            await self.stream.send_all(head + payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise Closed from None

    async def send_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._send_frame(0x1, message.encode())
        else:
            await self._send_frame(0x2, message)

    async def get_message(self) -> str | bytes | Append:
        while True:
            await self._fill(2)
            b0, b1 = self.buf[0], self.buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                await self._fill(4)
                n, at = struct.unpack_from("!H", self.buf, 2)[0], 4
            elif n == 127:
                await self._fill(10)
                n, at = struct.unpack_from("!Q", self.buf, 2)[0], 10
            if not b1 & 0x80 or not b0 & 0x80:
                raise Closed  # unmasked or fragmented: not a client this bench knows
            await self._fill(at + 4 + n)
            key = bytes(self.buf[at:at + 4])
            payload = bytes(self.buf[at + 4:at + 4 + n])
            del self.buf[:at + 4 + n]
            opcode = b0 & 0x0F
            if opcode == 0x1 and n > 256:
                head = unmask(payload[:128], key)
                if APPEND_MARK in head:  # only the size matters: b64 length less its padding
                    start = head.index(AUDIO_MARK) + len(AUDIO_MARK)
                    tail = unmask(payload[-4:], key, n - 4)  # '=="}' or 'xx="}' or 'xxx"}'
                    return Append((n - start - 2) * 3 // 4 - tail[:2].count(b"="))
            data = unmask(payload, key)
            if opcode == 0x1:
                return data.decode()
            if opcode == 0x2:
                return data
            if opcode == 0x9:
                await self._send_frame(0xA, data)
            elif opcode == 0x8:
                await self._send_frame(0x8, data[:2])
                raise Closed


def tone_audio(segments: list[tuple[float, float]], amplitude: float = 0.3) -> bytes:
    """PCM16 mono at RATE from ``(frequency_hz, seconds)`` pairs; 0 Hz is silence; 10 ms fades."""
    parts = []
    for freq, seconds in segments:
        n = round(seconds * RATE)
        t = np.arange(n) / RATE
        env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01) if n else t
        parts.append(np.sin(2 * np.pi * freq * t) * env * amplitude * 32767 if freq > 0 else np.zeros(n))
    return np.concatenate(parts).astype("<i2").tobytes()


def script(seconds: float) -> tuple[bytes, list[tuple[float, float]], dict[str, str]]:
    """The bench's audio: tones (sentences) of 1.0-1.3 s between 1.2 s silences; their spans; their texts."""
    segs: list[tuple[float, float]] = [(0.0, 0.5)]
    spans = []
    t = 0.5
    i = 0
    while t < seconds - 2.5:
        f, dur = 300.0 + 50 * i, 1.0 + 0.1 * (i % 4)
        segs += [(f, dur), (0.0, 1.2)]
        spans.append((t, t + dur))
        t += dur + 1.2
        i += 1
    sentences = {str(300.0 + 50 * k): f"sentence {k}" for k in range(i)}
    return tone_audio(segs), spans, sentences


class Script:
    """What to say after ``t`` seconds of audio — each speech start, partial and final once."""

    def __init__(self, spans: list[tuple[float, float]], silence: float) -> None:
        self.spans = spans
        self.silence = silence
        self.k = 0  # the sentence in progress
        self.partials = -1  # partials sent for it; -1: its start is not announced yet

    def advance(self, t: float, *, flush: bool = False) -> list[tuple[str, int, str, float, float]]:
        """``(kind, sentence index, text, start s, end s)`` due at ``t``; kind is start, partial or final."""
        out: list[tuple[str, int, str, float, float]] = []
        while self.k < len(self.spans):
            start, end = self.spans[self.k]
            if t < start:
                break
            if self.partials < 0:
                self.partials = 0
                out.append(("start", self.k, "", start, end))
            due = int((min(t, end) - start) / PARTIAL_EVERY)
            while self.partials < due:
                self.partials += 1
                out.append(("partial", self.k, f"sentence {self.k}"[:4 + 3 * self.partials], start, end))
            if t < end + self.silence and not (flush and t >= end):
                break
            out.append(("final", self.k, f"sentence {self.k}", start, end))
            self.k += 1
            self.partials = -1
        return out


async def task_connection(ws: RawWebSocket, spans: list[tuple[float, float]],
                          silence: float) -> None:
    proto = ServerTaskProtocol()
    received = 0
    plan = Script(spans, silence)
    while True:
        msg: Any = proto.receive(await ws.get_message())
        if isinstance(msg, Violation):
            await ws.send_message(proto.failed(msg.reply.error_code, msg.reply.error_message))
            return
        if isinstance(msg, RunTask):
            received, plan = 0, Script(spans, silence)
            await ws.send_message(proto.started())
        elif isinstance(msg, (Audio, FinishTask)):
            if isinstance(msg, Audio):
                received += len(msg.data)
            for kind, k, text, start, end in plan.advance(received / 2 / RATE, flush=isinstance(msg, FinishTask)):
                if kind != "start":
                    final = kind == "final"
                    s = Sentence(k, text, round(start * 1000), round(end * 1000) if final else None,
                                 sentence_end=final)
                    await ws.send_message(proto.result(s))
            if isinstance(msg, FinishTask):
                await ws.send_message(proto.finished())


async def realtime_connection(ws: RawWebSocket, model: str,
                              spans: list[tuple[float, float]], silence: float) -> None:
    proto = ServerRealtimeProtocol(get_realtime_model(model))
    await ws.send_message(proto.send(SessionCreated(session=proto.session)))
    received = 0
    plan = Script(spans, silence)
    while True:
        frame = await ws.get_message()
        if isinstance(frame, Append):
            # an audio append: only its length matters here (the client's own tests check these
            # frames; this server is about the client's cost)
            received += frame.pcm_bytes
            event: Any = _APPEND
        else:
            event = proto.receive(frame)
        if isinstance(event, Violation):
            await ws.send_message(proto.send(event.reply))
            continue
        if isinstance(event, SessionUpdate):
            await ws.send_message(proto.send(SessionUpdated(session=proto.session)))
        elif isinstance(event, (AudioAppend, SessionFinish)):
            finish = isinstance(event, SessionFinish)
            for kind, k, text, start, end in plan.advance(received / 2 / RATE, flush=finish):
                item = f"item_{k}"
                if kind == "start":
                    events: list[Any] = [SpeechStarted(audio_start_ms=round(start * 1000), item_id=item)]
                elif kind == "partial":
                    events = [TranscriptionText(item_id=item, text=text)]
                else:
                    events = [SpeechStopped(audio_end_ms=round(end * 1000), item_id=item), AudioCommitted(item_id=item),
                              TranscriptionCompleted(item_id=item, transcript=text)]
                for e in events:
                    await ws.send_message(proto.send(e))
            if finish:
                await ws.send_message(proto.send(SessionFinished()))


async def main(port: int, seconds: float, silence: float) -> None:
    _, spans, _ = script(seconds)

    async def handler(stream: trio.SocketStream) -> None:
        ws = RawWebSocket(stream)
        try:
            await ws.accept()
            if ws.path.startswith("/api-ws/v1/realtime"):
                model = ws.path.split("model=", 1)[1].split("&")[0] if "model=" in ws.path else ""
                await realtime_connection(ws, model or "qwen3-asr-flash-realtime", spans, silence)
            else:
                await task_connection(ws, spans, silence)
        except Closed:
            pass
        finally:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, port, host="127.0.0.1"))
        bound = listeners[0].socket.getsockname()[1]
        print(f"light DashScope server on ws://127.0.0.1:{bound}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--silence-ms", type=float, default=700.0)
    a = ap.parse_args()
    try:
        trio.run(main, a.port, a.seconds, a.silence_ms / 1000)
    except KeyboardInterrupt:
        sys.exit(0)
