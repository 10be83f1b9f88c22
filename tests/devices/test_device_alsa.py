"""The microphone and the speaker on real PortAudio + ALSA, with no sound card: ALSA's ``file``
plugin stands in for the hardware (see voicekit.testing.alsa). ALSA reads its configuration once
per process, so each check runs the device code in a child Python process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from voicekit.testing.alsa import VirtualSoundCard, no_device_config, played_segments
from voicekit.testing.data import speech

pytest.importorskip("pyaudio")
# each check runs the device code in a child Python over the virtual sound card
pytestmark = pytest.mark.slow

PRELUDE = """
import json, sys, time
from pathlib import Path
import numpy as np
import trio
from voicekit.audio.device import MicrophoneSource, SpeakerSink
from voicekit.audio.frame import AudioFrame
from voicekit.errors import AudioError
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
OUT = Path(sys.argv[1])
def done(**result):
    OUT.write_text(json.dumps(result))
"""


def run_child(tmp_path: Path, env: dict[str, str], code: str, timeout: float = 30) -> dict[str, Any]:
    out = tmp_path / "result.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code), str(out)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def wav_samples(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(speech(name))) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


@pytest.fixture(scope="module")
def goforward() -> npt.NDArray[np.int16]:
    return wav_samples("goforward")


@pytest.mark.realspeech
def test_capture_equals_the_prepared_file(tmp_path: Path, goforward: npt.NDArray[np.int16]) -> None:
    card = VirtualSoundCard(tmp_path / "card")
    card.set_mic_audio(goforward.tobytes())
    captured = tmp_path / "captured.raw"
    result = run_child(tmp_path, {**card.env, "VOICEKIT_INPUT_DEVICE": "vk_mic"}, f"""
        async def main():
            mic = MicrophoneSource()  # the device comes from VOICEKIT_INPUT_DEVICE
            frames = []
            async for f in mic.frames():
                frames.append(f)
                if sum(x.samples for x in frames) >= {len(goforward) + 1600}:
                    break
            await mic.aclose()
            Path({str(captured)!r}).write_bytes(b"".join(f.pcm for f in frames))
            done(device=mic.device_info.name, device_rate=mic.device_rate, rate=frames[0].sample_rate,
                 sizes=sorted({{f.samples for f in frames}}), starts=[f.timestamp for f in frames[:3]],
                 contiguous=all(abs(a.end - b.timestamp) < 1e-9 for a, b in zip(frames, frames[1:])),
                 overruns=mic.overruns)
        trio.run(main)
    """)
    assert result["device"] == "vk_mic"
    assert result["device_rate"] == 16000 and result["rate"] == 16000
    assert result["sizes"] == [320]  # 20 ms frames
    assert result["starts"] == [0.0, 0.02, 0.04]
    assert result["contiguous"]
    assert result["overruns"] == 0
    got = np.frombuffer(captured.read_bytes(), dtype="<i2")
    np.testing.assert_array_equal(got[: len(goforward)], goforward)


@pytest.mark.realspeech
def test_capture_resamples_from_the_device_rate(tmp_path: Path, goforward: npt.NDArray[np.int16]) -> None:
    # the device runs at 48 kHz (its file holds 48 kHz audio); the caller asks for 16 kHz
    card = VirtualSoundCard(tmp_path / "card", fixed_format=False)
    at48 = soxr.resample(goforward.astype(np.float32) / 32768, 16000, 48000)
    card.set_mic_audio((np.clip(at48, -1, 1) * 32767).astype("<i2").tobytes())
    captured = tmp_path / "captured.raw"
    result = run_child(tmp_path, card.env, f"""
        async def main():
            mic = MicrophoneSource("mic", sample_rate=16000, device_rate=48000)  # partial name
            n, pcm = 0, []
            async for f in mic.frames():
                pcm.append(f.pcm); n += f.samples
                if n >= {len(goforward)}:
                    break
            await mic.aclose()
            Path({str(captured)!r}).write_bytes(b"".join(pcm))
            done(device=mic.device_info.name, device_rate=mic.device_rate)
        trio.run(main)
    """)
    assert result == {"device": "vk_mic", "device_rate": 48000}
    got = np.frombuffer(captured.read_bytes(), dtype="<i2")[: len(goforward)].astype(np.float64)
    ref = goforward.astype(np.float64)
    # the resampler's filter delay is a few samples; find it, then compare the waveforms
    lags = range(0, 64)
    corr = [np.dot(got[lag:lag + 30000], ref[:30000]) for lag in lags]
    lag = int(np.argmax(corr))
    a, b = got[lag:lag + 40000], ref[:40000]
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.05 * np.sqrt(np.mean(b ** 2))


@pytest.mark.realspeech
def test_playback_arrives_in_the_file(tmp_path: Path, goforward: npt.NDArray[np.int16]) -> None:
    card = VirtualSoundCard(tmp_path / "card", fixed_format=False)
    result = run_child(tmp_path, card.env, f"""
        async def main():
            pcm = np.frombuffer(Path({str(speech("goforward"))!r}).read_bytes()[44:], "<i2")
            sink = SpeakerSink(16000, device="vk_speaker")
            assert sink.realtime
            for piece in AudioFrame(pcm.tobytes(), 16000).split(4000):
                await sink.write(piece)
            await sink.aclose()
            done(device=sink.device_info.name, device_rate=sink.device_rate, written=sink.samples_written)
        trio.run(main)
    """)
    assert result["device"] == "vk_speaker" and result["device_rate"] == 16000
    played = card.speaker_audio()[:, 0]
    assert result["written"] == len(played)
    np.testing.assert_array_equal(played[: len(goforward)], goforward[: len(played)])
    assert abs(len(played) - len(goforward)) <= 1


@pytest.mark.realspeech
def test_playback_resamples_to_the_device_rate(tmp_path: Path, goforward: npt.NDArray[np.int16]) -> None:
    card = VirtualSoundCard(tmp_path / "card", fixed_format=False)
    result = run_child(tmp_path, {**card.env, "VOICEKIT_OUTPUT_DEVICE": "1"}, f"""
        async def main():
            pcm = np.frombuffer(Path({str(speech("goforward"))!r}).read_bytes()[44:], "<i2")
            sink = SpeakerSink(16000, device_rate=48000)  # the device comes from VOICEKIT_OUTPUT_DEVICE
            for piece in AudioFrame(pcm.tobytes(), 16000).split(320):
                await sink.write(piece)
            await sink.aclose()
            done(device=sink.device_info.name, device_rate=sink.device_rate)
        trio.run(main)
    """)
    assert result == {"device": "vk_speaker", "device_rate": 48000}
    played = card.speaker_audio()[:, 0].astype(np.float64)
    assert abs(len(played) - 3 * len(goforward)) <= 3
    ref = soxr.resample(goforward.astype(np.float64), 16000, 48000)
    n = min(len(played), len(ref))
    assert np.corrcoef(played[:n], ref[:n])[0, 1] > 0.99


def test_device_listing_shows_the_devices(tmp_path: Path) -> None:
    card = VirtualSoundCard(tmp_path / "card")
    proc = subprocess.run([sys.executable, "-m", "voicekit.cli.main", "devices"], env=card.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["index", "in", "out", "rate", "api", "name"]
    names = {line.split()[5] for line in lines[1:]}
    assert {"vk_mic", "vk_speaker", "default"} <= names
    assert any("default" in line and "[default input, default output]" in line for line in lines)
    assert "jack" not in proc.stderr.lower() and "ALSA lib" not in proc.stderr  # back-end noise hidden
    proc = subprocess.run([sys.executable, "-m", "voicekit.cli.main", "devices", "--input", "--json"],
                          env=card.env, capture_output=True, text=True, timeout=30)
    rows = json.loads(proc.stdout)
    mic = next(r for r in rows if r["name"] == "vk_mic")
    assert mic["max_input_channels"] >= 1 and mic["default_sample_rate"] > 0 and mic["host_api"] == "ALSA"


def test_device_selection_errors_on_the_real_device_list(tmp_path: Path) -> None:
    card = VirtualSoundCard(tmp_path / "card")
    result = run_child(tmp_path, card.env, """
        async def main():
            errors = []
            for spec in ("no such microphone", 99, "vk_"):
                try:
                    await MicrophoneSource(spec).open()
                except AudioError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
            done(errors=errors)
        trio.run(main)
    """)
    assert result["errors"][0].startswith("DeviceNotFoundError: no input audio device matches "
                                          "'no such microphone' (available: 'vk_mic', 'vk_speaker', 'default')")
    assert result["errors"][1].startswith("DeviceNotFoundError: there is no audio device with index 99")
    assert "matches several devices" in result["errors"][2]


def test_no_device(tmp_path: Path) -> None:
    conf = tmp_path / "asound.conf"
    conf.write_text(no_device_config())
    env = {**VirtualSoundCard(tmp_path / "unused").env, "ALSA_CONFIG_PATH": str(conf)}
    result = run_child(tmp_path, env, """
        async def main():
            errors = []
            for make in (lambda: MicrophoneSource(), lambda: SpeakerSink(22050)):
                dev = make()
                try:
                    await dev.open()
                except AudioError as exc:
                    errors.append(str(exc))
            done(errors=errors)
        trio.run(main)
    """)
    assert result["errors"] == [
        "no input audio device found; on a server use --input FILE, or set up ALSA/PulseAudio",
        "no output audio device found; on a server use --output FILE.wav or --output none, "
        "or set up ALSA/PulseAudio",
    ]
    proc = subprocess.run([sys.executable, "-m", "voicekit.cli.main", "devices"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "voicekit: error: no audio devices found" in proc.stderr


def test_overrun_is_counted_when_the_microphone_is_not_read(tmp_path: Path) -> None:
    with VirtualSoundCard(tmp_path / "card", paced=True) as card:
        result = run_child(tmp_path, card.env, """
            async def main():
                mic = MicrophoneSource("vk_mic")
                n = 0
                t0 = time.monotonic()
                async for f in mic.frames():
                    n += 1
                    if n == 40:  # 0.8 s read steadily
                        steady = mic.overruns
                        time.sleep(1.0)  # the process stalls: nobody reads the device for a second
                    if n == 120:
                        break
                elapsed = time.monotonic() - t0
                await mic.aclose()
                done(steady=steady, overruns=mic.overruns, lost=mic.lost_seconds, elapsed=elapsed)
            trio.run(main)
        """)
    assert result["steady"] == 0
    assert result["overruns"] == 1
    # about a second went missing: what the device could not hold (its pipe holds 0.128 s)
    assert 0.6 < result["lost"] < 1.3
    assert card.mic_dropped_bytes > 0.5 * 32000  # the "hardware" really dropped audio
    assert result["elapsed"] > 2.0  # the device is paced in real time (2.4 s of audio read)


def test_underrun_is_counted_and_cancel_stops_within_a_chunk(tmp_path: Path) -> None:
    # a 256 ms speaker buffer keeps a loaded machine from starving it by accident
    with VirtualSoundCard(tmp_path / "card", paced=True, pipe_bytes=8192) as card:
        result = run_child(tmp_path, card.env, """
            async def main():
                sink = SpeakerSink(16000, "vk_speaker", idle_ms=1000)
                tone = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2")
                async def play(seconds):
                    for piece in AudioFrame(tone[: int(16000 * seconds)].tobytes(), 16000).split(320):
                        await sink.write(piece)
                await play(0.6)
                steady = sink.underruns
                await trio.sleep(0.6)  # the writer is late mid-reply: the speaker runs dry
                await play(0.3)
                after_gap = sink.underruns
                await trio.sleep(2.0)  # a pause between replies is not an underrun
                await play(0.3)
                after_pause = sink.underruns
                await trio.sleep(1.0)
                long = AudioFrame(np.tile(tone, 5).tobytes(), 16000)  # 5 s in one write
                t0 = time.monotonic()
                with trio.move_on_after(0.5):
                    await sink.write(long)
                cancel_s = time.monotonic() - t0
                written = sink.samples_written
                await sink.aclose()
                done(steady=steady, after_gap=after_gap, after_pause=after_pause, cancel_s=cancel_s,
                     written=written, discards=sink.discards, starved=sink.starved_seconds)
            trio.run(main)
        """)
        segments = played_segments(card.played)
    why = f"{result} {segments}"
    assert result["steady"] == 0, why
    assert result["after_gap"] == 1, why
    assert 0.15 < result["starved"] < 0.8, why  # 0.6 s late, minus the 0.256 s the device held
    assert result["after_pause"] == 1, why
    # the cancel landed within a chunk (20 ms), plus closing the stream and scheduling on a busy machine
    assert result["cancel_s"] < 0.5 + 0.25, why
    assert result["discards"] == 1, why
    assert len(segments) >= 3, why
    last = segments[-1]
    # the 5-second write was cut: the speaker played about half a second of it (plus its buffer), not 5 s
    assert last[1] - last[0] < 1.2, why
    total = sum(b - a for a, b in segments)
    assert total < 0.6 + 0.3 + 0.3 + 1.0 + 0.5, why
