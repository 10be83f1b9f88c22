"""The emulator's realtime endpoint outlives its sessions (issue 9, item 1).

ONE ``voicekit emulate dashscope`` process with its default engine (the embedded moonshine
recognizer) serves several realtime sessions in a row and two at once, all through the command
line, for Qwen3-ASR realtime and the Omni realtime models. Before the fix the engine stream was
entered in one task and closed in another: trio detected the nursery misnesting and the whole
emulator exited after the first session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicekit.testing.data import speech
from voicekit.testing.wer import wer

pytestmark = pytest.mark.slow

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
KEY = "sk-journey-realtime-0123456789"
ERROR = re.compile(r"Traceback|AssertionError|misnesting|\[error|\[critical|\[warning|exception", re.I)


class Emulator:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def problems(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if ERROR.search(line)]


def start_emulator(folder: Path, *extra: str) -> Emulator:
    """``voicekit emulate dashscope --port 0`` (a free loopback port, read from its banner)."""
    log = folder / "emulator.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([VOICEKIT, "emulate", "dashscope", "--port", "0", *extra],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while True:
        line = proc.stdout.readline().decode()
        if not line or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the emulator did not start: {log.read_text()}")
        m = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
        if m:
            return Emulator(proc, int(m.group(1)), log)


def stop_emulator(emu: Emulator) -> None:
    emu.proc.terminate()
    try:
        emu.proc.wait(10)
    except subprocess.TimeoutExpired:
        emu.proc.kill()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = start_emulator(tmp_path_factory.mktemp("realtime-emulator"))
    yield emu
    try:
        assert emu.alive(), f"the emulator exited ({emu.proc.returncode}):\n{emu.log.read_text()[-3000:]}"
        assert emu.problems() == [], "the emulator logged problems:\n" + "\n".join(emu.problems())
    finally:
        stop_emulator(emu)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}


def _command(emu: Emulator, model: str, clip: Path) -> list[str]:
    return [VOICEKIT, "transcribe", str(clip), "--asr", model,
            "--asr-option", f"base_url={emu.base_url}", "--asr-option", f"api_key={KEY}"]


MODELS = ["qwen3-asr-flash-realtime", "qwen3.5-omni-flash-realtime", "qwen3-omni-flash-realtime"]


@pytest.mark.parametrize("model", MODELS)
def test_three_realtime_sessions_in_a_row(emulator: Emulator, model: str) -> None:
    for i in range(3):
        done = subprocess.run(_command(emulator, model, speech("goforward")), capture_output=True, text=True,
                              timeout=120, env=_env())
        assert done.returncode == 0, (i, done.stderr)
        assert wer(["go forward ten meters"], [done.stdout]) <= 0.25, (i, done.stdout)
        time.sleep(0.5)  # the emulator's side of the connection closes after the client's
        assert emulator.alive(), f"emulator died after session {i + 1} of {model}:\n{emulator.log.read_text()}"
        assert emulator.problems() == [], emulator.problems()


def test_two_realtime_sessions_at_once(emulator: Emulator) -> None:
    clips = {"qwen3-asr-flash-realtime": (speech("goforward"), "go forward ten meters"),
             "qwen3.5-omni-plus-realtime": (speech("goforward"), "go forward ten meters")}
    procs = {m: subprocess.Popen(_command(emulator, m, clip), text=True, env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for m, (clip, _) in clips.items()}
    for m, p in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, (m, err)
        assert wer([clips[m][1]], [out]) <= 0.25, (m, out)
    time.sleep(0.5)
    assert emulator.alive(), emulator.log.read_text()
    assert emulator.problems() == [], emulator.problems()
