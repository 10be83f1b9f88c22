"""Journeys against ONE long-lived emulator, the way a user meets the cloud side.

One ``voicekit emulate dashscope`` process, started once with its default engine (the embedded
moonshine recognizer), serves every test in this module: each cloud ASR plugin that
``voicekit plugins`` lists, through the command line (configured only by the variables the
emulator prints) and through the Python API (three sessions in a row, then two at once), the Omni
agent with a tool call and a barge-in, file transcription with diarization, a hotword list
created, used and deleted, near-real-time chunks. At the end the emulator must still be running
and must have logged no error: a server that dies on the second call is exactly what a fixture
made fresh for every test cannot see.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from testkit.journey import Emulator, long_lived_emulator, omni_script

from voicekit.plugins.registry import list_plugins
from voicekit.testing.data import speech
from voicekit.testing.wer import wer

pytestmark = pytest.mark.slow

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
KEY = "sk-journey-0123456789abcdef"
SAID = "go forward ten meters"


def _cloud_asr() -> dict[str, tuple[str, ...]]:
    """Every cloud ASR plugin and the regions its model is offered in."""
    out = {}
    for info in list_plugins("asr"):
        caps = info.capabilities if info.error is None else None
        if caps is not None and not getattr(caps, "offline", True):
            out[info.name] = tuple(caps.regions)
    return dict(sorted(out.items()))


CLOUD_ASR = _cloud_asr()


def _region(name: str) -> str | None:
    """Beijing-only models need a Beijing key: say so, as a user must (the default is Singapore)."""
    return None if "ap-southeast-1" in CLOUD_ASR[name] else "beijing"


def _region_args(name: str) -> list[str]:
    region = _region(name)
    return [] if region is None else ["--asr-option", f"region={region}"]


# what a journey's emulator must not log (looser than testkit.journey.ERROR: warnings are allowed)
ERRORS = re.compile(r"Traceback|\[error|\[critical|Error:|exception")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    folder = tmp_path_factory.mktemp("journey-emulator")
    with long_lived_emulator(folder, "--omni-script", str(omni_script(folder)), problems=ERRORS) as emu:
        emu.env["DASHSCOPE_API_KEY"] = KEY
        yield emu


def _cli(emulator: Emulator, *args: str, timeout: float = 120,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env.update(emulator.env)
    return subprocess.run([VOICEKIT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def _clip() -> Path:
    return speech("goforward")


def _close_enough(text: str, said: str = SAID, bound: float = 0.5) -> bool:
    return wer([said], [text]) <= bound


# -- every cloud ASR plugin, through the CLI (configured by the emulator's own banner)


def test_the_plugin_list_has_the_cloud_families() -> None:
    for family in ("fun-asr-realtime", "paraformer-realtime", "qwen3-asr-flash-realtime", "qwen3-asr-flash",
                   "fun-asr", "qwen3.5-omni-plus-realtime", "qwen3.5-omni-flash"):
        assert family in CLOUD_ASR


@pytest.mark.parametrize("name", CLOUD_ASR)
def test_cli_transcribes_with_every_cloud_plugin(emulator: Emulator, name: str) -> None:
    done = _cli(emulator, "transcribe", str(_clip()), "--asr", name, *_region_args(name))
    assert done.returncode == 0, done.stderr
    assert _close_enough(done.stdout), (name, done.stdout)
    assert emulator.alive()


def test_cli_two_transcriptions_at_once(emulator: Emulator) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env.update(emulator.env)
    procs = [subprocess.Popen([VOICEKIT, "transcribe", str(_clip()), "--asr", name], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in ("qwen3-asr-flash-realtime", "qwen3.5-omni-flash-realtime")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert _close_enough(out), out
    assert emulator.alive()


# -- the same through the Python API: three sessions in a row, then two at once


async def _transcribe(name: str, emulator: Emulator) -> str:
    from voicekit import transcribe
    from voicekit.audio.sources import open_source
    from voicekit.plugins.build import make_asr, make_vad

    region = _region(name)
    options = {} if region is None else {"region": region}
    asr = make_asr(name, api_key=KEY, base_url=emulator.base_url, **options)
    source = open_source(str(_clip()))
    try:
        finals = await transcribe(source, asr=asr, vad=make_vad())
    finally:
        await source.aclose()
    return " ".join(r.text for r in finals)


@pytest.mark.parametrize("name", CLOUD_ASR)
async def test_api_three_in_a_row_then_two_at_once(emulator: Emulator, name: str) -> None:
    for _ in range(3):
        assert _close_enough(await _transcribe(name, emulator))
    texts: list[str] = []

    async def one() -> None:
        texts.append(await _transcribe(name, emulator))

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
    assert len(texts) == 2 and all(_close_enough(t) for t in texts), texts
    assert emulator.alive()


# -- file transcription with diarization, results alone on stdout


def _two_speakers(path: Path) -> Path:
    """Two real speakers, one after the other: the robot command, then a LibriVox reader."""

    def read(p: Path) -> np.ndarray:
        with wave.open(str(p)) as w:
            assert w.getframerate() == 16000
            return np.frombuffer(w.readframes(w.getnframes()), "<i2")

    gap = np.zeros(16000, np.int16)
    data = speech("librivox/sense_and_sensibility_01_austen_64kb-0870")
    audio = np.concatenate([read(_clip()), gap, read(data), gap])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio.tobytes())
    return path


def test_file_transcription_with_diarization_to_rttm(emulator: Emulator, tmp_path: Path) -> None:
    clip = _two_speakers(tmp_path / "two.wav")
    done = _cli(emulator, "dashscope", "transcribe", str(clip), "--model", "fun-asr", "--diarize",
                "--speakers", "2", "--format", "rttm")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.startswith("SPEAKER ") for line in lines), done.stdout
    assert len({line.split()[7] for line in lines}) == 2  # two speakers told apart
    assert emulator.alive()


# -- hotwords: create, use, delete


def test_hotword_list_create_use_delete(emulator: Emulator) -> None:
    # the guide: real-time Fun-ASR hotwords are for the Chinese mainland (Beijing) region only
    made = _cli(emulator, "hotwords", "create", "--model", "fun-asr-realtime", "--prefix", "journey",
                "--word", "Dashwood", "--weight", "5", "--region", "beijing")
    assert made.returncode == 0, made.stderr
    vocab = made.stdout.strip().split()[-1]
    assert vocab.startswith("vocab-journey-")
    clip = speech("librivox/sense_and_sensibility_01_austen_64kb-0870")
    used = _cli(emulator, "transcribe", str(clip), "--asr", "fun-asr-realtime",
                "--asr-option", f"vocabulary_id={vocab}", "--asr-option", "region=beijing")
    assert used.returncode == 0, used.stderr
    assert "Dashwood" in used.stdout
    listed = _cli(emulator, "hotwords", "list", "--region", "beijing")
    assert vocab in listed.stdout
    gone = _cli(emulator, "hotwords", "delete", vocab, "--region", "beijing")
    assert gone.returncode == 0, gone.stderr
    assert vocab not in _cli(emulator, "hotwords", "list", "--region", "beijing").stdout
    assert emulator.alive()


# -- near-real-time chunks


def test_near_real_time_chunks_keep_words_whole(emulator: Emulator) -> None:
    clip = speech("librivox/sense_and_sensibility_01_austen_64kb-0870")
    said = (clip.with_suffix(".txt")).read_text().strip() if clip.with_suffix(".txt").exists() else ""
    done = _cli(emulator, "transcribe", str(clip), "--asr", "qwen3-asr-flash")
    assert done.returncode == 0, done.stderr
    assert "prudently" in done.stdout.lower(), done.stdout
    if said:
        assert wer([said], [done.stdout]) < 0.35
    assert emulator.alive()


# -- the Omni agent: a question, a barge-in over its long answer, a tool call


async def test_omni_agent_tool_call_and_barge_in(emulator: Emulator, tmp_path: Path) -> None:
    from voicekit_dashscope.agent.omni import AgentConfig, OmniAgent

    from voicekit import events as ev
    from voicekit.audio.sinks import WavFileSink
    from voicekit.audio.sources import FileSource
    from voicekit.handlers.assistant import Assistant, Turn

    robot = Assistant("robot")
    moves: list[dict[str, Any]] = []

    @robot.intent("go {direction:forward|backward} {distance:number} [meter|meters]")
    async def move(turn: Turn) -> str:
        moves.append(dict(turn.slots))
        return f"Moved {turn.slots.get('direction')} {turn.slots.get('distance')} meters."

    def read(name: str) -> np.ndarray:
        with wave.open(str(speech(name))) as w:
            return np.frombuffer(w.readframes(w.getnframes()), "<i2")

    silence = lambda s: np.zeros(round(s * 16000), np.int16)  # noqa: E731
    audio = np.concatenate([silence(0.5), read("something"), silence(3.0), read("goforward"), silence(8.0)])
    path = tmp_path / "talk.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio.tobytes())
    agent = OmniAgent.connect(AgentConfig(model="qwen3.5-omni-flash-realtime", turn_detection="server_vad"),
                              api_key=KEY, base_url=emulator.base_url, assistant=robot)
    sink = WavFileSink(str(tmp_path / "reply.wav"), 16000)
    events: list[ev.Event] = []
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run, FileSource(path, sample_rate=16000, realtime=True), sink)
            async for event in agent.events:
                events.append(event)
    await sink.aclose()
    assert any(isinstance(e, ev.ReplyInterrupted) for e in events), [e.kind for e in events]
    assert moves and moves[0].get("direction") == "forward"
    assert any(h.role == "assistant" and "Moved forward" in h.text for h in agent.history), agent.history
    assert emulator.alive()


# -- last: the emulator outlived everything above (checked again by the fixture's teardown)


def test_zz_emulator_still_serves(emulator: Emulator) -> None:
    done = _cli(emulator, "transcribe", str(_clip()), "--asr", "qwen3-asr-flash-realtime")
    assert done.returncode == 0 and _close_enough(done.stdout), done.stderr
    assert emulator.alive()
    assert emulator.problems(ERRORS) == []
