"""The journeys' long-lived ``voicekit emulate dashscope`` process, real-speech conversations for it, and
the Omni replies it is scripted with (shared by the realtime journeys)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
KEY = "sk-journey-realtime-0123456789"  # a made-up key: the emulator accepts any
ERROR = re.compile(r"Traceback|AssertionError|misnesting|\[error|\[critical|\[warning|exception", re.I)


class Emulator:
    """A running ``voicekit emulate dashscope``: its port, the variables its banner exports, its log."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path, env: dict[str, str]) -> None:
        self.proc, self.port, self.log, self.env = proc, port, log, env

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def problems(self, pattern: re.Pattern[str] = ERROR) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if pattern.search(line)]


def start_emulator(folder: Path, *extra: str, timeout: float = 90) -> Emulator:
    """``voicekit emulate dashscope --port 0`` (a free loopback port), read from its banner down to
    the last variable it exports (``DASHSCOPE_API_KEY``)."""
    log = folder / "emulator.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([VOICEKIT, "emulate", "dashscope", "--port", "0", *extra],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    env: dict[str, str] = {}
    port = 0
    deadline = time.monotonic() + timeout
    while "DASHSCOPE_API_KEY" not in env:
        line = proc.stdout.readline().decode()
        if not line or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the emulator did not start: {log.read_text()}")
        if m := re.match(r"\s*export (\w+)=(\S+)", line):
            env[m.group(1)] = m.group(2)
        if m := re.search(r"ws://127\.0\.0\.1:(\d+)", line):
            port = int(m.group(1))
    return Emulator(proc, port, log, env)


def stop_emulator(emu: Emulator) -> None:
    emu.proc.terminate()
    try:
        emu.proc.wait(10)
    except subprocess.TimeoutExpired:
        emu.proc.kill()


@contextmanager
def long_lived_emulator(folder: Path, *extra: str, problems: re.Pattern[str] | None = ERROR) -> Iterator[Emulator]:
    """One emulator for a module's tests (``yield`` it from a module fixture); when they are done
    it must still be running, with no ``problems`` in its log (None: not checked), and is stopped."""
    emu = start_emulator(folder, *extra)
    try:
        yield emu
        assert emu.alive(), f"the emulator exited ({emu.proc.returncode}):\n{emu.log.read_text()[-3000:]}"
        if problems is not None:
            found = emu.problems(problems)
            assert found == [], "the emulator logged problems:\n" + "\n".join(found)
    finally:
        stop_emulator(emu)


LONG_REPLY = ("I can move forward or backward by any number of meters, and I can tell you how far I have "
              "travelled today, which so far is twelve meters, mostly in the morning.")


def omni_script(folder: Path) -> Path:
    """Replies for the emulated Omni model: one long answer, and the ``move`` tool on "forward"."""
    path = folder / "omni.json"
    path.write_text(json.dumps({
        "replies": [LONG_REPLY], "after_tool": "Done. {output}",
        "tool_rules": [{"keyword": "forward", "tool": "move", "arguments": {"direction": "forward", "distance": 10}}],
    }))
    return path


def read_16k(path: Path) -> np.ndarray:
    """A WAV file as 16 kHz mono int16 (linear resampling is enough for test input)."""
    with wave.open(str(path)) as w:
        rate, data = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels())[:, 0]
    if rate != 16000:
        n = round(len(data) * 16000 / rate)
        data = np.interp(np.arange(n) * rate / 16000, np.arange(len(data)), data).astype("<i2")
    return data


def conversation(path: Path, *parts: tuple[float, Path]) -> Path:
    """``(silence before, clip)`` pairs, then 9 s of silence for the last reply, as a 16 kHz WAV."""
    pieces = []
    for gap, clip in parts:
        pieces += [np.zeros(round(gap * 16000), np.int16), read_16k(clip)]
    pieces.append(np.zeros(9 * 16000, np.int16))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(pieces).tobytes())
    return path


def clean_env() -> dict[str, str]:
    """The environment without the DashScope variables (each test says where its server is)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
