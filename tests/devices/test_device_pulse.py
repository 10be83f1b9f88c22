"""The devices through a real sound server: PulseAudio with a null sink and a null source, both
clocked by the server (real time), reached through ALSA's pulse plugin. ALSA's file plugin in
front of them supplies the microphone's audio from a file and records what the speaker played.

Skipped when pulseaudio or ALSA's pulse plugin (apt libasound2-plugins) is not installed. The
server is started by the test, on a private socket, and stopped at the end."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyaudio")
# a real sound server, real-time clocked, and a child Python per check
pytestmark = pytest.mark.slow
_PLUGIN = "alsa-lib/libasound_module_pcm_pulse.so"
if shutil.which("pulseaudio") is None or not (glob.glob(f"/usr/lib*/{_PLUGIN}") or glob.glob(f"/usr/lib*/*/{_PLUGIN}")):
    pytest.skip("needs pulseaudio and ALSA's pulse plugin (apt pulseaudio libasound2-plugins)",
                allow_module_level=True)

PRELUDE = """
import json, sys, time
from pathlib import Path
import numpy as np
import trio
from voicekit.audio.device import MicrophoneSource, SpeakerSink
from voicekit.audio.frame import AudioFrame
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
def done(**result):
    Path(sys.argv[1]).write_text(json.dumps(result))
"""


@pytest.fixture(scope="module")
def pulse() -> Iterator[tuple[Path, dict[str, str]]]:
    """A private PulseAudio server; yields (folder, environment for children)."""
    folder = Path(tempfile.mkdtemp(prefix="vkpa"))  # short: a unix socket path must fit in 108 bytes
    (folder / "home").mkdir()
    socket = folder / "native"
    env = {**os.environ, "HOME": str(folder / "home"), "XDG_RUNTIME_DIR": str(folder),
           "PULSE_SERVER": f"unix:{socket}", "JACK_NO_START_SERVER": "1"}
    server = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no", "--disable-shm=yes",
         "--log-target=stderr", "--load=module-null-sink sink_name=vk_sink rate=16000 channels=1",
         "--load=module-null-source source_name=vk_source rate=16000 channels=1",
         f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not socket.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                err = server.stderr.read() if server.stderr and server.poll() is not None else ""
                pytest.skip(f"pulseaudio did not start here: {err[-500:]}")
            time.sleep(0.05)
        mic_in, speaker_out = folder / "mic.raw", folder / "speaker.raw"
        conf = folder / "asound.conf"
        conf.write_text(textwrap.dedent(f"""
            pcm.vk_mic {{
              type file
              slave.pcm {{ type pulse server "unix:{socket}" device "vk_source" }}
              file "/dev/null"
              infile "{mic_in}"
              format "raw"
            }}
            pcm.vk_speaker {{
              type file
              slave.pcm {{ type pulse server "unix:{socket}" device "vk_sink" }}
              file "{speaker_out}"
              format "raw"
            }}
            pcm.!default {{ type asym playback.pcm "vk_speaker" capture.pcm "vk_mic" }}
        """))
        yield folder, {**env, "ALSA_CONFIG_PATH": str(conf)}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def run_child(folder: Path, env: dict[str, str], code: str) -> dict[str, Any]:
    out = folder / "result.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code), str(out)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_capture_runs_on_the_servers_clock(pulse: tuple[Path, dict[str, str]]) -> None:
    folder, env = pulse
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(16000 * 2) * 3000).astype("<i2")
    (folder / "mic.raw").write_bytes(audio.tobytes())
    captured = folder / "captured.raw"
    result = run_child(folder, env, f"""
        async def main():
            mic = MicrophoneSource("vk_mic")
            pcm, n = [], 0
            async for f in mic.frames():
                if n == 0:
                    t0 = time.monotonic()  # after the device opened and delivered its first chunk
                pcm.append(f.pcm); n += f.samples
                if n >= 16000 * 1.5:
                    break
            elapsed = time.monotonic() - t0
            await mic.aclose()
            Path({str(captured)!r}).write_bytes(b"".join(pcm))
            done(elapsed=elapsed, overruns=mic.overruns, rate=mic.device_rate)
        trio.run(main)
    """)
    assert result["rate"] == 16000
    assert result["overruns"] == 0
    assert result["elapsed"] > 1.2  # ~1.5 s of audio took ~1.5 s: the server's clock paces the reads
    got = np.frombuffer(captured.read_bytes(), dtype="<i2")
    np.testing.assert_array_equal(got, audio[: len(got)])


def test_playback_and_underruns_through_the_server(pulse: tuple[Path, dict[str, str]]) -> None:
    folder, env = pulse
    (folder / "speaker.raw").unlink(missing_ok=True)
    result = run_child(folder, env, """
        async def main():
            sink = SpeakerSink(16000, "vk_speaker", idle_ms=1000)
            tone = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2")
            async def play(seconds):
                for piece in AudioFrame(tone[: int(16000 * seconds)].tobytes(), 16000).split(320):
                    await sink.write(piece)
            t0 = time.monotonic()
            await play(1.0)
            played_1s = time.monotonic() - t0
            steady = sink.underruns
            await trio.sleep(0.4)  # late mid-reply: the server runs the stream dry
            await play(0.3)
            after_gap = sink.underruns
            await sink.aclose()
            done(played_1s=played_1s, steady=steady, after_gap=after_gap, written=sink.samples_written)
        trio.run(main)
    """)
    assert result["played_1s"] > 0.7, result  # the server paced the writes
    assert result["steady"] == 0, result
    assert result["after_gap"] == 1, result
    played = np.frombuffer((folder / "speaker.raw").read_bytes(), dtype="<i2")
    assert len(played) == result["written"] == 16000 * 13 // 10
