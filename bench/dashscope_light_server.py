"""A scripted DashScope server for client benchmarks: the wire protocols and nothing else.

``bench_dashscope_streams.py --server light`` runs this in separate processes so that what is
measured is the *client*. It speaks the task protocol (``/api-ws/v1/inference``) and the realtime
protocol (``/api-ws/v1/realtime``) through voicekit's own sans-IO protocol modules, but does no
audio work at all: it knows the bench's tone script (:func:`script`) and answers by the amount of
audio received — a partial every 0.3 s of a sentence's audio, and the final once the sentence's
end plus the end-of-sentence silence has arrived. The full emulator (``voicekit emulate dashscope
--fixtures``) instead runs a VAD over every frame and looks at each utterance's spectrum, which at
hundreds of streams costs more than the client it serves.

    python bench/dashscope_light_server.py [--port 0] [--seconds 12] [--silence-ms 700]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketRequest
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
APPEND_MARK = '"type": "input_audio_buffer.append"'
_APPEND = AudioAppend(audio=b"")  # stands for any append once counted


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


async def task_connection(ws: trio_websocket.WebSocketConnection, spans: list[tuple[float, float]],
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


async def realtime_connection(ws: trio_websocket.WebSocketConnection, model: str,
                              spans: list[tuple[float, float]], silence: float) -> None:
    proto = ServerRealtimeProtocol(get_realtime_model(model))
    await ws.send_message(proto.send(SessionCreated(session=proto.session)))
    received = 0
    plan = Script(spans, silence)
    while True:
        frame = await ws.get_message()
        if isinstance(frame, str) and frame.find(APPEND_MARK, 0, 80) > 0:
            # an audio append: only its length matters here, so skip decoding the base64 (the
            # client's own tests check these frames; this server is about the client's cost)
            b64 = frame[frame.index('"audio": "') + 10:frame.rindex('"')]
            received += len(b64) * 3 // 4 - b64.count("=", -2)
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

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            if request.path.startswith("/api-ws/v1/realtime"):
                model = request.path.split("model=", 1)[1].split("&")[0] if "model=" in request.path else ""
                await realtime_connection(ws, model or "qwen3-asr-flash-realtime", spans, silence)
            else:
                await task_connection(ws, spans, silence)
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", port, None)
        bound = listeners.port if hasattr(listeners, "port") else listeners.listeners[0].socket.getsockname()[1]
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
