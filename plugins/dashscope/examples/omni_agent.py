"""An Omni voice agent: talk to it from an audio file paced in real time, interrupt it, watch it
call a tool.

    python plugins/dashscope/examples/omni_agent.py                 # built-in demo conversation
    python plugins/dashscope/examples/omni_agent.py --input me.wav --output replies.wav

With ``DASHSCOPE_API_KEY`` set it talks to Qwen3.5-Omni on Model Studio (``--region``). Without
a key it starts the local DashScope emulator on a free loopback port and talks to that: the
emulator transcribes with the embedded moonshine engine (``--engine fixtures`` for scripted
transcripts), answers with scripted replies spoken by espeak-ng, and calls the ``move`` tool
when it hears "forward" or "backward".

The built-in demo asks a question, then talks over the (long) answer with "go forward ten
meters": the answer stops within one audio chunk, the model calls ``move`` through the robot
assistant below, and speaks the result. Events are printed as they happen; the agent's audio is
written to ``--output`` (a WAV file).

The same conversation needs no code from the command line, against any emulator or the service::

    voicekit run robot --agent qwen3.5-omni-plus-realtime --input me.wav --output replies.wav
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import trio
from voicekit_dashscope.agent.omni import AgentConfig, OmniAgent
from voicekit_dashscope_emulator import FixtureEngine, running_emulator
from voicekit_dashscope_emulator.omni import EspeakVoice, OmniScript, RealtimeSettings, ToolRule

from voicekit import events as ev
from voicekit.audio.sinks import WavFileSink
from voicekit.audio.sources import FileSource
from voicekit.handlers.assistant import Assistant, Turn

robot = Assistant("robot", description="a robot that moves when told to")


@robot.intent("go {direction:forward|backward} {distance:number} [meter|meters]")
async def move(turn: Turn) -> str:
    return f"Moved {turn.slots.get('direction', 'forward')} {turn.slots.get('distance', 1)} meters."


LONG_REPLY = ("I can move forward or backward by any number of meters. I can also tell you how far I "
              "have travelled today, which so far is twelve meters, mostly in the morning.")


def demo_audio(path: Path) -> None:
    """Question, a pause for the answer to begin, then a command spoken over the answer."""
    from voicekit.testing.data import speech

    def read(name: str) -> np.ndarray:
        with wave.open(str(speech(name))) as w:
            return np.frombuffer(w.readframes(w.getnframes()), "<i2")

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(round(seconds * 16000), np.int16)

    audio = np.concatenate([silence(0.5), read("something"), silence(3.0), read("goforward"), silence(9.0)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio.tobytes())


def show(event: ev.Event) -> None:
    d = event.to_dict()
    if event.kind == "reply_text":
        return
    if event.kind == "transcript" and not d["is_final"]:
        return
    fields = {k: v for k, v in d.items() if k not in ("event", "t", "words") and v not in (None, (), "")}
    print(f"{event.t:7.2f}s  {event.kind:18s} {fields}", flush=True)


async def run(args: argparse.Namespace) -> int:
    config = AgentConfig(model=args.model, turn_detection=args.mode,
                         instructions="You are a small robot. Answer briefly. Use the move tool to move.")
    source_path = Path(args.input) if args.input else Path(tempfile.mkdtemp()) / "demo.wav"
    if not args.input:
        demo_audio(source_path)
    source = FileSource(source_path, sample_rate=16000, realtime=True)
    sink = WavFileSink(args.output, 16000)

    async def talk(agent: OmniAgent) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run, source, sink)
            async for event in agent.events:
                show(event)
        await sink.aclose()
        print("\nconversation as the user heard it:")
        for h in agent.history:
            print(f"  {h.role:9s} {h.text}" + ("   [interrupted]" if h.interrupted else ""))
        print(f"agent audio written to {args.output}")

    if os.environ.get("DASHSCOPE_API_KEY"):
        await talk(OmniAgent.connect(config, region=args.region, assistant=robot))
        return 0
    if args.engine == "fixtures":
        engine: Any = FixtureEngine(["what can you do", "go forward ten meters"], partial_every=0.3)
    else:
        from voicekit_dashscope_emulator.engines import load_plugin_engine

        engine = load_plugin_engine("moonshine")
    realtime = {"settings": RealtimeSettings(),
                "script": OmniScript(replies=(LONG_REPLY,), after_tool="Done. {output}",
                                     tool_rules=(ToolRule("forward", "move", {"direction": "forward", "distance": 10}),
                                                 ToolRule("backward", "move", {"direction": "backward",
                                                                               "distance": 1}))),
                "voice": EspeakVoice()}
    print("no DASHSCOPE_API_KEY: talking to the local emulator", flush=True)
    async with running_emulator(engine, realtime=realtime) as emu:
        await talk(OmniAgent.connect(config, api_key="sk-emulator-0000000000", base_url=emu.base_url,
                                     assistant=robot))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Talk to a Qwen-Omni voice agent from an audio file.")
    p.add_argument("--input", help="audio file to speak to the agent (default: a built-in demo)")
    p.add_argument("--output", default="omni_agent_reply.wav", help="WAV file for the agent's voice")
    p.add_argument("--model", default="qwen3.5-omni-plus-realtime")
    p.add_argument("--mode", choices=("semantic_vad", "server_vad"), default="semantic_vad")
    p.add_argument("--region", default="singapore")
    p.add_argument("--engine", choices=("moonshine", "fixtures"), default="moonshine",
                   help="how the emulator transcribes (no key only)")
    return trio.run(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
