"""``voicekit serve`` latency with several browsers talking at once (simulated over loopback).

Starts the server in this process (moonshine, webrtc VAD, espeak, the robot) and opens N WebSocket
clients at the same time. Each streams "go forward ten meters" (a real recording) in 20 ms chunks
at real-time pace, as a browser does, followed by silence. Times are taken in this process:

* **final** — from the last voiced 20 ms chunk of the request leaving the client to the final
  transcript arriving. It includes the endpointer's end-of-speech silence (600 ms by default).
* **first audio** — from the same moment to the first byte of reply audio arriving.
* **correct** — clients whose final transcript was "go forward ten meters".

    .venv/bin/python bench/bench_serve.py                 # 1, 2 and 4 concurrent clients
    .venv/bin/python bench/bench_serve.py --clients 1 8

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
import wave

import trio
import webrtcvad
from trio_websocket import ConnectionClosed, open_websocket_url

from voicekit.logging import configure
from voicekit.plugins.build import load_assistant, make_asr, make_tts, make_vad
from voicekit.serve import ServeConfig, SessionRecipe, VoiceServer
from voicekit.testing.data import speech

CHUNK = 640  # 20 ms at 16 kHz, int16


def clip() -> tuple[bytes, int]:
    """The request audio (0.5 s silence, speech, 1.5 s silence) and the index of the chunk after
    its last voiced chunk."""
    with wave.open(str(speech("goforward"))) as w:
        pcm = b"\x00" * 16000 + w.readframes(w.getnframes()) + b"\x00" * 48000
    vad = webrtcvad.Vad(2)
    chunks = [pcm[i:i + CHUNK] for i in range(0, len(pcm) - CHUNK + 1, CHUNK)]
    last = max(i for i, c in enumerate(chunks) if vad.is_speech(c, 16000))
    return pcm, last + 1


async def client(url: str, pcm: bytes, voiced_end: int, out: list[dict[str, float | bool]]) -> None:
    result: dict[str, float | bool] = {}
    spoken_at = 0.0
    async with open_websocket_url(url) as ws:
        await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000}))

        async def send() -> None:
            nonlocal spoken_at
            start = trio.current_time()
            for n, i in enumerate(range(0, len(pcm), CHUNK)):
                await trio.sleep_until(start + n * 0.02)
                await ws.send_message(pcm[i:i + CHUNK])
                if n + 1 == voiced_end:
                    spoken_at = time.monotonic()
            await ws.send_message(json.dumps({"type": "end"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while True:
                    message = await ws.get_message()
                    now = time.monotonic()
                    if isinstance(message, bytes):
                        result.setdefault("first_audio", now - spoken_at)
                        continue
                    event = json.loads(message).get("event") or {}
                    if event.get("event") == "transcript" and event["is_final"] and "final" not in result:
                        result["final"] = now - spoken_at
                        text = re.sub(r"[^a-z ]", "", event["text"].lower())
                        result["correct"] = bool(re.fullmatch(r"go forward ten met(er|re)s", text))
            except ConnectionClosed:
                pass
    out.append(result)


async def run(counts: list[int]) -> None:
    recipe = SessionRecipe(asr=make_asr("moonshine"), vad_factory=lambda: make_vad("webrtc", sample_rate=16000),
                           assistant=load_assistant("robot"), tts=make_tts("espeak"))
    pcm, voiced_end = clip()
    print(f"{'clients':>7}  {'final median':>12}  {'final max':>9}  {'1st audio median':>16}  "
          f"{'1st audio max':>13}  correct")
    for count in counts:
        server = VoiceServer(recipe, ServeConfig(port=0, max_sessions=max(counts)))
        async with trio.open_nursery() as nursery:
            url = (await nursery.start(server.serve)).replace("http://", "ws://") + "ws"
            results: list[dict[str, float | bool]] = []
            async with trio.open_nursery() as clients:
                for _ in range(count):
                    clients.start_soon(client, url, pcm, voiced_end, results)
            nursery.cancel_scope.cancel()
        finals = [float(r["final"]) for r in results if "final" in r]
        audio = [float(r["first_audio"]) for r in results if "first_audio" in r]
        correct = sum(1 for r in results if r.get("correct"))
        if not finals or not audio:
            print(f"{count:>7}  no transcript or no reply audio: {results}")
            continue
        print(f"{count:>7}  {statistics.median(finals):>11.3f}s  {max(finals):>8.3f}s  "
              f"{statistics.median(audio):>15.3f}s  {max(audio):>12.3f}s  {correct}/{count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    configure("warning")
    trio.run(run, args.clients)


if __name__ == "__main__":
    main()
