"""The emulator's realtime endpoint outlives its sessions (issue 9, item 1).

ONE ``voicekit emulate dashscope`` process with its default engine (the embedded moonshine
recognizer) serves several realtime sessions in a row and two at once, all through the command
line, for Qwen3-ASR realtime and the Omni realtime models. Before the fix the engine stream was
entered in one task and closed in another: trio detected the nursery misnesting and the whole
emulator exited after the first session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.journey import (
    KEY,
    LONG_REPLY,
    VOICEKIT,
    Emulator,
    clean_env,
    conversation,
    long_lived_emulator,
    omni_script,
)

from voicekit.testing.data import speech
from voicekit.testing.wer import wer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    folder = tmp_path_factory.mktemp("realtime-emulator")
    with long_lived_emulator(folder, "--omni-script", str(omni_script(folder))) as emu:
        yield emu


def _command(emu: Emulator, model: str, clip: Path) -> list[str]:
    return [VOICEKIT, "transcribe", str(clip), "--asr", model,
            "--asr-option", f"base_url={emu.base_url}", "--asr-option", f"api_key={KEY}"]


MODELS = ["qwen3-asr-flash-realtime", "qwen3.5-omni-flash-realtime", "qwen3-omni-flash-realtime"]


@pytest.mark.parametrize("model", MODELS)
def test_three_realtime_sessions_in_a_row(emulator: Emulator, model: str) -> None:
    for i in range(3):
        done = subprocess.run(_command(emulator, model, speech("goforward")), capture_output=True, text=True,
                              timeout=120, env=clean_env())
        assert done.returncode == 0, (i, done.stderr)
        assert wer(["go forward ten meters"], [done.stdout]) <= 0.25, (i, done.stdout)
        time.sleep(0.5)  # the emulator's side of the connection closes after the client's
        assert emulator.alive(), f"emulator died after session {i + 1} of {model}:\n{emulator.log.read_text()}"
        assert emulator.problems() == [], emulator.problems()


def test_two_realtime_sessions_at_once(emulator: Emulator) -> None:
    clips = {"qwen3-asr-flash-realtime": (speech("goforward"), "go forward ten meters"),
             "qwen3.5-omni-plus-realtime": (speech("goforward"), "go forward ten meters")}
    procs = {m: subprocess.Popen(_command(emulator, m, clip), text=True, env=clean_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for m, (clip, _) in clips.items()}
    for m, p in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, (m, err)
        assert wer([clips[m][1]], [out]) <= 0.25, (m, out)
    time.sleep(0.5)
    assert emulator.alive(), emulator.log.read_text()
    assert emulator.problems() == [], emulator.problems()


# -- the Omni agent from the command line (issue 9, item 16)


def agent_env(emu: Emulator) -> dict[str, str]:
    """Configured the way the emulator's banner says: the SDK's variables, nothing else."""
    env = clean_env()
    env["DASHSCOPE_WEBSOCKET_BASE_URL"] = f"{emu.base_url}/api-ws/v1/inference"
    env["DASHSCOPE_API_KEY"] = KEY
    return env


def events_of(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def kinds(events: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [e for e in events if e.get("event") == kind]


def test_voicekit_run_agent_with_a_tool_call_and_a_barge_in(emulator: Emulator, tmp_path: Path) -> None:
    """A question, then "go forward ten meters" (real speech) over the long answer: the answer is
    cut, the model calls the robot's ``move`` intent as a tool, and speaks its result."""
    talk = conversation(tmp_path / "talk.wav", (0.5, speech("something")), (2.5, speech("goforward")))
    out = tmp_path / "replies.wav"
    done = subprocess.run([VOICEKIT, "run", "robot", "--agent", "qwen3.5-omni-plus-realtime", "--input", str(talk),
                           "--output", str(out), "--json"], capture_output=True, text=True, timeout=180,
                          env=agent_env(emulator))
    assert done.returncode == 0, done.stderr
    events = events_of(done.stdout)
    finals = [e["text"] for e in kinds(events, "transcript") if e["is_final"]]
    assert len(finals) == 2 and wer(["go forward ten meters"], [str(finals[1])]) <= 0.25, finals
    cut = kinds(events, "reply_interrupted")
    assert len(cut) == 1 and str(cut[0]["text"]).startswith("I can move forward"), cut
    assert len(str(cut[0]["heard_text"])) < len(LONG_REPLY)
    (call,) = kinds(events, "intent_matched")
    assert call["intent"] == "move" and "Moving forward 10 meters" in str(call["slots"]), call
    assert [e["text"] for e in kinds(events, "reply_finished")] == ["Done. Moving forward 10 meters."]
    with wave.open(str(out)) as w:  # the agent's voice, as played (24 kHz from the service)
        assert w.getframerate() == 24000 and w.getnframes() / 24000 > 2.0
    assert emulator.alive() and emulator.problems() == [], emulator.problems()


def test_voicekit_run_agent_plain_text_output(emulator: Emulator, tmp_path: Path) -> None:
    """Without --json: what was said, by whom, one line each; options on the command line."""
    talk = conversation(tmp_path / "talk.wav", (0.5, speech("goforward")))
    done = subprocess.run([VOICEKIT, "run", "robot", "--agent", "qwen3-omni-flash-realtime", "--input", str(talk),
                           "--output", "none", "--agent-option", f"base_url={emulator.base_url}",
                           "--agent-option", f"api_key={KEY}", "--agent-option", "voice=Cherry"],
                          capture_output=True, text=True, timeout=180, env=clean_env())
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if not line.startswith("…")]
    assert lines[0].startswith("you: ") and wer(["go forward ten meters"], [lines[0][5:]]) <= 0.25, lines
    assert lines[1].startswith("   intent: move")
    assert lines[2] == "robot: Done. Moving forward 10 meters."
    assert KEY not in done.stdout + done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--agent", "no-such-agent"], "no agents plugin named 'no-such-agent'"),
    (["--agent", "qwen3.5-omni-plus-realtime", "--asr", "moonshine"], "--asr has no effect with --agent"),
    (["--agent", "qwen3.5-omni-plus-realtime", "--agent-option", "colour=red"], "has no option 'colour'"),
    (["--agent", "qwen3-omni-flash-realtime", "--interrupt", "semantic"], "has no semantic_vad"),
    (["--agent", "qwen3.5-omni-plus-realtime", "--interrupt", "none"], "--interrupt none is not available"),
])
def test_voicekit_run_agent_refuses_bad_settings_in_one_line(emulator: Emulator, tmp_path: Path,
                                                             args: list[str], message: str) -> None:
    done = subprocess.run([VOICEKIT, "run", "robot", *args, "--input", str(speech("goforward")), "--output", "none"],
                          capture_output=True, text=True, timeout=60, env=agent_env(emulator))
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_omni_agent_example_runs_its_demo(tmp_path: Path) -> None:
    """examples/omni_agent.py without a key: its own emulator, a barge-in, a tool call, a clean end."""
    example = Path(__file__).resolve().parents[2] / "examples" / "omni_agent.py"
    out = tmp_path / "agent.wav"
    done = subprocess.run([sys.executable, str(example), "--output", str(out)], capture_output=True, text=True,
                          timeout=240, env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "misnesting" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    heard = done.stdout[done.stdout.index("conversation as the user heard it:"):]
    assert "[interrupted]" in heard and "tool      move(" in heard and "Moved forward 10 meters." in heard, heard
    assert out.stat().st_size > 44


def test_voicekit_run_without_an_assistant_or_agent_says_what_to_give() -> None:
    done = subprocess.run([VOICEKIT, "run", "--input", str(speech("goforward")), "--output", "none"],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "voicekit: error: voicekit run: name an assistant (see 'voicekit plugins') or module:attribute, "
        "or talk to a realtime model with --agent MODEL"]
