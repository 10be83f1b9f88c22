"""Backchannels said over a reply do not interrupt it; a real request does (issue 9, item 11).

The first partial transcripts of a short sound are often garbage ("Thou wilt" for "Okay.",
"No, no," for "Yeah."): before the fix, both the emulator's ``semantic_vad`` and the local
``--interrupt semantic`` policy cut the reply on such a first partial. Now they decide on stable
evidence (:class:`voicekit.session.backchannel.TurnEvidence`).

Both sides are driven through the command line with the embedded moonshine recognizer:

* the emulator: ``voicekit run robot --agent qwen3.5-omni-flash-realtime`` (semantic_vad by
  default) against ONE ``voicekit emulate dashscope`` process;
* the local pipeline: ``voicekit run talker:assistant --interrupt semantic --realtime``.

"Yeah.", "Okay." and "Uh-huh." are synthesized with espeak-ng (no recordings of them are in the
test data); the real request is a human recording ("go forward ten meters"). The same audio with
plain VAD barge-in (``server_vad`` / ``--interrupt vad``) does interrupt: the backchannels are
heard during the reply, so the tests can fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
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

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt install espeak-ng)")]

BACKCHANNELS = {"yeah": "Yeah.", "okay": "Okay.", "uh-huh": "Uh-huh."}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backchannels")
    out = {}
    for name, text in BACKCHANNELS.items():
        path = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
        out[name] = path
    return out


def talk(folder: Path, name: str, clip: Path) -> Path:
    """A question, then ``clip`` 2.5 s after it, while the long answer is playing."""
    return conversation(folder / f"{name}.wav", (0.5, speech("something")), (2.5, clip))


def events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def of(evs: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [e for e in evs if e.get("event") == kind]


def run_all(commands: dict[str, list[str]], env: dict[str, str], cwd: Path | None = None,
            ) -> dict[str, list[dict[str, object]]]:
    """Run the commands two at a time; their JSON events by name."""
    out: dict[str, list[dict[str, object]]] = {}
    names = list(commands)
    for i in range(0, len(names), 2):
        procs = {n: subprocess.Popen(commands[n], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=cwd) for n in names[i:i + 2]}
        for n, p in procs.items():
            stdout, stderr = p.communicate(timeout=240)
            assert p.returncode == 0, (n, stderr)
            out[n] = events(stdout)
    return out


# -- the emulator's semantic_vad, through the Omni agent on the command line


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    folder = tmp_path_factory.mktemp("backchannel-emulator")
    with long_lived_emulator(folder, "--omni-script", str(omni_script(folder))) as emu:
        yield emu


def _agent(emu: Emulator, audio: Path, mode: str) -> list[str]:
    return [VOICEKIT, "run", "robot", "--agent", "qwen3.5-omni-flash-realtime", "--interrupt", mode,
            "--agent-option", f"base_url={emu.base_url}", "--agent-option", f"api_key={KEY}",
            "--input", str(audio), "--output", "none", "--json"]


def test_emulator_semantic_vad_ignores_backchannels_and_hears_a_request(
        emulator: Emulator, clips: dict[str, Path], tmp_path: Path) -> None:
    audio = {n: talk(tmp_path, n, c) for n, c in clips.items()}
    audio["request"] = talk(tmp_path, "request", speech("goforward"))
    commands = {n: _agent(emulator, a, "semantic") for n, a in audio.items()}
    commands["yeah, server_vad"] = _agent(emulator, audio["yeah"], "vad")
    got = run_all(commands, clean_env())
    for name in BACKCHANNELS:
        assert of(got[name], "reply_interrupted") == [], (name, of(got[name], "transcript"))
        assert [e["text"] for e in of(got[name], "reply_finished")] == [LONG_REPLY], name
    cut = of(got["request"], "reply_interrupted")
    assert len(cut) == 1, of(got["request"], "transcript")
    assert [e["intent"] for e in of(got["request"], "intent_matched")] == ["move"]
    # the same "Yeah." with plain server VAD does cut the reply: it is heard while the reply plays
    assert len(of(got["yeah, server_vad"], "reply_interrupted")) == 1


# -- the local pipeline's semantic policy


TALKER = f'''
from voicekit.handlers import Assistant, Turn

assistant = Assistant("talker")


@assistant.fallback
async def talk(turn: Turn) -> str:
    return {LONG_REPLY!r}
'''


def _local(audio: Path, mode: str) -> list[str]:
    return [VOICEKIT, "run", "talker:assistant", "--interrupt", mode, "--realtime", "--input", str(audio),
            "--output", "none", "--json"]


def test_local_semantic_policy_ignores_backchannels_and_hears_a_request(
        clips: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "talker.py").write_text(TALKER)
    audio = {n: talk(tmp_path, n, c) for n, c in clips.items()}
    audio["request"] = talk(tmp_path, "request", speech("goforward"))
    commands = {n: _local(a, "semantic") for n, a in audio.items()}
    commands["okay, vad"] = _local(audio["okay"], "vad")
    got = run_all(commands, clean_env(), cwd=tmp_path)
    for name in BACKCHANNELS:
        assert of(got[name], "reply_interrupted") == [], (name, [e["text"] for e in of(got[name], "transcript")])
        assert [e["text"] for e in of(got[name], "reply_finished")] == [LONG_REPLY], name
        assert len(of(got[name], "turn_ended")) == 1, name  # the backchannel did not become a turn
    assert len(of(got["request"], "reply_interrupted")) == 1
    assert len(of(got["request"], "turn_ended")) == 2
    assert len(of(got["okay, vad"], "reply_interrupted")) == 1
