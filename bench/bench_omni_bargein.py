"""Barge-in latency of the Omni voice agent against the DashScope emulator, on real-time paced audio.

The agent talks to the emulator over a real loopback WebSocket (``ws://127.0.0.1``), on the wall
clock. The user (real human speech from the pocketsphinx test data) asks something; the emulated
Omni model answers with espeak-ng speech; about ``--cut-in`` seconds into the reply the user
talks over it. Barge-in latency is measured from the first voiced frame of the interrupting
speech in the input (WebRTC VAD on the input itself) to the last sample of the interrupted reply
written to the sink (the end of the last chunk written).

    python bench/bench_omni_bargein.py                       # server_vad and semantic_vad, 3 trials
    python bench/bench_omni_bargein.py --mode server_vad --trials 5

The figure includes: the input pacing (20 ms frames, 100 ms appends), the emulator's VAD onset
(90 ms of voiced audio), the event over the socket, and the player's chunk (20 ms). In
semantic mode the emulator holds the interruption until it has two words that are not a
backchannel (or 1.2 s of speech) — the price of not stopping for "uh-huh".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import trio
from voicekit_dashscope.agent.omni import AgentConfig, OmniAgent
from voicekit_dashscope_emulator import FixtureEngine, running_emulator
from voicekit_dashscope_emulator.omni import EspeakVoice, OmniScript, RealtimeSettings

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.testing.data import speech
from voicekit.vad.webrtc import WebRTCVAD

RATE = 16000
REPLY = ("Sure. Here is a long answer about the weather this week: on Monday it will be sunny and warm, "
         "on Tuesday cloudy with some rain in the afternoon, and on Wednesday windy and cold.")


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def first_voiced(pcm: np.ndarray) -> float:
    vad = WebRTCVAD(RATE, 30, 2)
    n = RATE * 30 // 1000
    for i in range(0, pcm.size - n, n):
        if vad.is_speech(pcm[i:i + n].tobytes()):
            return i / RATE
    raise ValueError("no voiced frame in the interrupting speech")


class PacedSource:
    sample_rate = RATE
    channels = 1

    def __init__(self, pcm: bytes) -> None:
        self.pcm = pcm
        self.started_at = 0.0

    async def frames(self) -> AsyncIterator[AudioFrame]:
        step = RATE * 20 // 1000 * 2
        self.started_at = trio.current_time()
        t = 0.0
        for i in range(0, len(self.pcm), step):
            await trio.sleep_until(self.started_at + t)
            frame = AudioFrame(self.pcm[i:i + step], RATE, 1, t)
            t += frame.duration
            yield frame

    async def aclose(self) -> None:
        pass


class TimingSink:
    realtime = False
    channels = 1
    sample_rate = RATE

    def __init__(self) -> None:
        self.writes: list[tuple[float, int]] = []

    async def write(self, frame: AudioFrame) -> None:
        self.writes.append((trio.current_time(), frame.samples))

    async def aclose(self) -> None:
        pass


async def trial(mode: str, cut_in: float) -> dict[str, float]:
    question = read_wav(speech("numbers"))
    interruption = read_wav(speech("goforward"))
    # the reply starts ~0.8 s (end-of-turn silence) after the question; the user cuts in cut_in s later
    gap = np.zeros(round((0.8 + 0.3 + cut_in) * RATE), np.int16)
    lead = np.zeros(RATE // 2, np.int16)
    tail = np.zeros(RATE * 4, np.int16)
    audio = np.concatenate([lead, question, gap, interruption, tail])
    voiced_at = (lead.size + question.size + gap.size) / RATE + first_voiced(interruption)
    engine = FixtureEngine(["what is the weather this week", "go forward ten meters"], partial_every=0.3)
    realtime = {"settings": RealtimeSettings(vad="webrtc"), "script": OmniScript(replies=(REPLY,)),
                "voice": EspeakVoice()}
    async with running_emulator(engine, realtime=realtime) as emu:
        agent = OmniAgent.connect(AgentConfig(turn_detection=mode, chunk_ms=20), api_key="sk-bench-0000000000",
                                  base_url=emu.base_url)
        source, sink = PacedSource(audio.tobytes()), TimingSink()
        events: list[ev.Event] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run, source, sink)
            async for e in agent.events:
                events.append(e)
    cut = [e for e in events if isinstance(e, ev.ReplyInterrupted)]
    if not cut:
        raise RuntimeError(f"{mode}: the reply was not interrupted; events: {[e.kind for e in events]}")
    later = [agent.started_at + e.t for e in events if isinstance(e, ev.ReplyStarted) and e.turn_id != cut[0].turn_id]
    next_start = min(later, default=float("inf"))
    reply_writes = [(t, n) for t, n in sink.writes if t < next_start]
    last_t, last_n = reply_writes[-1]
    spoken_at = source.started_at + voiced_at
    signal = [e for e in events if isinstance(e, ev.SpeechStarted)][1]
    return {"latency_ms": (last_t + last_n / RATE - spoken_at) * 1000,
            "last_write_ms": (last_t - spoken_at) * 1000,
            "signal_ms": (agent.started_at + signal.t - spoken_at) * 1000,
            "played_s": cut[0].samples_played / RATE}


async def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("server_vad", "semantic_vad", "both"), default="both")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--cut-in", type=float, default=1.5, help="seconds into the reply the user talks over it")
    args = p.parse_args(argv)
    modes = ("server_vad", "semantic_vad") if args.mode == "both" else (args.mode,)
    print("Omni barge-in latency against the emulator (loopback WebSocket, real-time paced audio, espeak replies)")
    print("latency = first voiced frame of the interrupting speech -> end of the last reply sample written")
    for mode in modes:
        rows = [await trial(mode, args.cut_in) for _ in range(args.trials)]
        for i, r in enumerate(rows, 1):
            print(f"  {mode:13s} trial {i}: latency {r['latency_ms']:6.1f} ms   (server signal after "
                  f"{r['signal_ms']:6.1f} ms, last write after {r['last_write_ms']:6.1f} ms, reply played "
                  f"{r['played_s']:.2f} s)")
        lat = [r["latency_ms"] for r in rows]
        print(f"{mode:13s} barge-in latency: median {statistics.median(lat):.1f} ms, "
              f"min {min(lat):.1f} ms, max {max(lat):.1f} ms over {len(lat)} trials")
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1:]))
