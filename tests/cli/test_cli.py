"""The `voicekit` command end to end, in a child process, on real speech."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from voicekit.testing.data import librivox_clips, speech
from voicekit.testing.wer import wer

# every test here runs the voicekit command in a subprocess (about a second each before any work)
pytestmark = pytest.mark.slow

VOICEKIT = [sys.executable, "-m", "voicekit.cli.main"]
TESTS = Path(__file__).parent


def run(*args: str, timeout: float = 180, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([*VOICEKIT, *args], capture_output=True, text=stdin is None, timeout=timeout,
                          env=env, input=stdin)


def test_help_everywhere() -> None:
    for args in ([], ["run"], ["transcribe"], ["plugins"]):
        r = run(*args, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_plugins_lists_groups_and_capabilities() -> None:
    r = run("plugins")
    assert r.returncode == 0, r.stderr
    for needle in ("asr:", "moonshine", "vad:", "webrtc", "tts:", "espeak", "assistants:", "robot", "clock"):
        assert needle in r.stdout
    data = json.loads(run("plugins", "--json").stdout)
    moon = next(p for p in data if p["name"] == "moonshine")
    assert moon["capabilities"]["offline"] is True and moon["error"] is None


@pytest.mark.slow
@pytest.mark.realspeech
def test_transcribe_librivox_word_error_rate(tmp_path: Path) -> None:
    clips = librivox_clips()
    r = run("transcribe", *[str(p) for p, _ in clips], "--format", "json", "--output", str(tmp_path))
    assert r.returncode == 0, r.stderr
    hyps = []
    for path, _ in clips:
        doc = json.loads((tmp_path / (path.stem + ".json")).read_text())
        hyps.append(" ".join(s["text"] for s in doc["segments"]))
    score = wer([ref for _, ref in clips], hyps)
    print(f"moonshine WER on {len(clips)} LibriVox clips: {score:.3f}")
    assert score <= 0.12


@pytest.mark.slow
@pytest.mark.realspeech
def test_transcribe_formats() -> None:
    path = speech("goforward")
    r = run("transcribe", str(path), "--format", "srt")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1\n00:00:00,000 --> 00:00:02,")
    assert "forward" in r.stdout.lower()
    vtt = run("transcribe", str(path), "--format", "vtt").stdout
    assert vtt.startswith("WEBVTT") and "-->" in vtt


@pytest.mark.slow
@pytest.mark.realspeech
def test_run_robot_on_a_recording(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    r = run("run", "robot", "--input", str(speech("goforward")), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "you: Go forward ten meters." in r.stdout
    assert "robot: Moving forward 10 meters." in r.stdout
    with wave.open(str(out)) as w:
        assert w.getnframes() / w.getframerate() > 0.8  # the spoken reply


@pytest.mark.slow
@pytest.mark.realspeech
def test_run_json_from_stdin() -> None:
    raw = (speech("goforward").with_suffix(".raw")).read_bytes()
    r = run("run", "robot", "--input", "-", "--output", "none", "--tts", "none", "--json", stdin=raw)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.decode().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "session_started" and kinds[-1] == "session_ended"
    intent = next(e for e in events if e["event"] == "intent_matched")
    assert intent["slots"] == {"direction": "forward", "distance": 10}


@pytest.mark.slow
@pytest.mark.realspeech
def test_raising_handler_apologizes_and_reports() -> None:
    r = run("run", "broken_assistant:assistant", "--input", str(speech("goforward")), "--output", "none")
    assert r.returncode == 0, r.stderr
    assert "error in handler" in r.stdout and "ZeroDivisionError: on purpose" in r.stdout
    assert "broken: Sorry, my handler failed." in r.stdout


def _bad_files(tmp: Path) -> dict[str, Path]:
    empty = tmp / "empty.wav"
    empty.write_bytes(b"")
    text = tmp / "notes.wav"
    text.write_text("this is not audio at all\n" * 20)
    truncated = tmp / "truncated.wav"
    truncated.write_bytes(speech("goforward").read_bytes()[:30])
    png = tmp / "picture.mp3"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return {"empty": empty, "text": text, "truncated": truncated, "png": png,
            "missing": tmp / "no-such-file.wav"}


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "png", "missing"])
def test_bad_audio_gives_one_clear_line(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    for args in (["transcribe", str(path)], ["run", "robot", "--input", str(path), "--output", "none"]):
        r = run(*args, timeout=60)
        assert r.returncode != 0
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("voicekit: error:") and path.name in lines[0], lines[0]
        assert "Traceback" not in r.stderr


def test_unknown_plugins_and_options() -> None:
    r = run("run", "robot", "--asr", "moonshyne", "--input", "x.wav")
    assert r.returncode == 1
    assert "no asr plugin named 'moonshyne'" in r.stderr and "did you mean 'moonshine'" in r.stderr
    r = run("run", "no-such-assistant", "--input", "x.wav")
    assert r.returncode == 1 and "no assistants plugin named" in r.stderr
    r = run("run", "robot", "--vad-option", "mode=9", "--input", "x.wav")
    assert r.returncode == 1 and "option 'mode' expects one of 0|1|2|3, got '9'" in r.stderr
    r = run("run", "robot", "--output", "reply.mp3", "--input", "x.wav")
    assert r.returncode == 1 and ".wav" in r.stderr
    r = run("transcribe", "x.wav", "--format", "doc")
    assert r.returncode == 2  # argparse usage error


@pytest.mark.slow
@pytest.mark.realspeech
def test_command_mode_with_the_assistants_own_grammar() -> None:
    # the robot's intent templates become a JSGF grammar for PocketSphinx
    r = run("run", "robot", "--asr", "pocketsphinx", "--grammar", "--input", str(speech("goforward")),
            "--output", "none", "--tts", "none")
    assert r.returncode == 0, r.stderr
    assert "you: go forward ten meters" in r.stdout
    assert "robot: Moving forward 10 meters." in r.stdout


# --------------------------------------------------------- outputs: never an input, never half-written

VOICEKIT_SCRIPT = str(Path(sys.executable).with_name("voicekit"))


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("voicekit: error:"), lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_an_output_that_is_an_input_is_never_opened(tmp_path: Path) -> None:
    rec = tmp_path / "victim.wav"
    rec.write_bytes(speech("goforward").read_bytes())
    before = rec.read_bytes()
    (tmp_path / "link.wav").symlink_to(rec)
    os.link(rec, tmp_path / "hard.wav")
    for out in ("victim.wav", "link.wav", "hard.wav", "./sub/../victim.wav"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        for args in (["run", "robot", "--input", "victim.wav", "--output", out],
                     ["transcribe", "victim.wav", "-o", out]):
            r = subprocess.run([*VOICEKIT, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert r.returncode == 1
            assert "is the input" in one_error_line(r)
            assert rec.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["missing-folder", "folder-under-a-file", "under-proc", "two-inputs-one-file",
                                  "two-inputs-file-name", "same-name-twice"])
def test_bad_transcribe_outputs_fail_before_any_work(tmp_path: Path, case: str) -> None:
    rec = tmp_path / "a.wav"
    rec.write_bytes(speech("goforward").read_bytes())
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "a.wav").write_bytes(rec.read_bytes())
    existing = tmp_path / "out.txt"
    existing.write_text("keep me\n")
    args = {"missing-folder": ["a.wav", "-o", "no/such/dir/out.txt"],
            "folder-under-a-file": ["a.wav", "-o", "a.wav/out.txt"],
            "under-proc": ["a.wav", "-o", "/proc/voicekit-out.txt"],
            "two-inputs-one-file": ["a.wav", "b/a.wav", "-o", "out.txt"],
            "two-inputs-file-name": ["a.wav", "b/a.wav", "-o", "new.txt"],
            "same-name-twice": ["a.wav", "b/a.wav", "-o", "outdir"]}[case]
    # a broken --asr would be reported first if the outputs were checked after loading the recognizer
    r = subprocess.run([*VOICEKIT, "transcribe", *args, "--asr", "no-such-asr"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 1
    line = one_error_line(r)
    assert "no-such-asr" not in line and ("-o" in line or "output" in line or "written to" in line), line
    assert existing.read_text() == "keep me\n"
    assert not (tmp_path / "new.txt").exists()
    assert leftovers(tmp_path) == []


def header_only_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return path


def test_a_failed_run_leaves_existing_outputs_alone(tmp_path: Path) -> None:
    empty = header_only_wav(tmp_path / "empty.wav")  # probes fine, fails once decoding starts
    reply, text = tmp_path / "reply.wav", tmp_path / "out.txt"
    reply.write_bytes(b"old reply")
    text.write_text("old transcript\n")
    r = run("run", "robot", "--input", str(empty), "--output", str(reply), "--tts", "none")
    assert r.returncode == 1 and "no audio samples" in one_error_line(r)
    r = run("transcribe", str(empty), "-o", str(text))
    assert r.returncode == 1 and "no audio samples" in one_error_line(r)
    assert reply.read_bytes() == b"old reply" and text.read_text() == "old transcript\n"
    assert leftovers(tmp_path) == []
    r = run("run", "robot", "--input", str(empty), "--output", str(tmp_path / "new.wav"), "--tts", "none")
    assert r.returncode == 1 and not (tmp_path / "new.wav").exists()  # no 44-byte reply file


# --------------------------------------------------------- tracebacks that became one line


def test_module_attr_assistants_from_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "syntax_bot.py").write_text("from voicekit.handlers import Assistant\nassistant = Assistant(\n")
    (tmp_path / "factory_bot.py").write_text("def make():\n    raise RuntimeError('no config file')\n")
    (tmp_path / "import_bot.py").write_text("raise KeyError('BOT_TOKEN')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    expect = {"syntax_bot:assistant": "syntax error in syntax_bot.py, line",
              "factory_bot:make": "raised RuntimeError: no config file",
              "import_bot:assistant": "raised KeyError",
              "nowhere_bot:assistant": "No module named 'nowhere_bot'"}
    for spec, needle in expect.items():
        # the console script, as a user runs it: its own folder, not the current one, is on sys.path
        r = subprocess.run([VOICEKIT_SCRIPT, "run", spec, "--input", "x.wav"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path, env=env)
        assert r.returncode == 1
        line = one_error_line(r)
        assert spec in line and needle in line, line


@pytest.mark.slow
@pytest.mark.realspeech
def test_getting_started_bot_runs_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "my_bot.py").write_text(
        "from voicekit.handlers import Assistant, Turn\n"
        "assistant = Assistant('mine')\n"
        "@assistant.intent('go forward {n:number} [meters]')\n"
        "async def go(turn: Turn) -> str:\n"
        "    return 'Going.'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([VOICEKIT_SCRIPT, "run", "my_bot:assistant", "--input", str(speech("goforward")),
                        "--output", "none", "--tts", "none"], capture_output=True, text=True, timeout=180,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "mine: Going." in r.stdout


def test_emulator_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    import socket

    fixtures = tmp_path / "fx.json"
    fixtures.write_text('["hello"]')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run("emulate", "dashscope", "--port", str(port), "--fixtures", str(fixtures), timeout=60)
    assert r.returncode != 0
    line = one_error_line(r)
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line


def _first_line_then_close(args: list[str], stdin: bytes | None = None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([*VOICEKIT, *args], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if stdin:
        assert p.stdin is not None
        p.stdin.write(stdin)
        p.stdin.close()
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    p.stdout.close()  # what `| head -1` does
    err = p.stderr.read().decode()
    code = p.wait(timeout=180)
    assert first
    return code, err


@pytest.mark.slow
@pytest.mark.realspeech
def test_a_closed_pipe_ends_quietly() -> None:
    clip = str(speech("goforward"))
    raw = speech("goforward").with_suffix(".raw").read_bytes()
    for args, stdin in ((["transcribe", clip, clip, clip], None),
                        (["run", "robot", "--input", "-", "--output", "none", "--tts", "none", "--json"], raw)):
        code, err = _first_line_then_close(args, stdin)
        assert code in (0, 141), err
        assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


# --------------------------------------------------------- hostile files through the CLI


def test_text_file_named_like_audio_is_refused(tmp_path: Path) -> None:
    note = tmp_path / "note.flac"
    note.write_text("RIFF? remember to buy milk\n")
    r = run("transcribe", str(note))
    assert r.returncode == 1 and r.stdout == ""
    assert "is a text file, not audio" in one_error_line(r)


@pytest.mark.slow
@pytest.mark.realspeech
def test_named_pipe_nan_and_truncated_inputs(tmp_path: Path) -> None:
    import threading

    clip = speech("goforward")
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(clip.read_bytes()))
    feeder.start()
    r = run("transcribe", str(fifo))
    feeder.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert "forward" in r.stdout.lower()

    with wave.open(str(clip)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype("<f4") / 32768
    pcm[::50] = np.nan
    pcm[1::97] = np.inf
    data = pcm.astype("<f4").tobytes()
    nan = tmp_path / "nan.wav"
    nan.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt "
                    + struct.pack("<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32) + b"data"
                    + struct.pack("<I", len(data)) + data)
    r = run("transcribe", str(nan))
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr and "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [
        ln for ln in r.stderr.splitlines() if ln.startswith("voicekit: warning:") and "NaN or infinite" in ln]
    assert r.stderr.count("voicekit: warning:") == 1

    cut = tmp_path / "cut.wav"
    cut.write_bytes(clip.read_bytes()[: len(clip.read_bytes()) * 2 // 3])
    r = run("transcribe", str(cut))  # default verbosity
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("voicekit: warning:") == 1 and "may be truncated" in r.stderr


# --------------------------------------------------------- recognition failing part-way keeps what was heard


def _start_emulator(tmp_path: Path, faults: str) -> tuple[subprocess.Popen[str], int]:
    import re
    import time

    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text('["Sentence one.", "Sentence two.", "Sentence three.", "Sentence four."]')
    p = subprocess.Popen([*VOICEKIT, "emulate", "dashscope", "--port", "0", "--fixtures", str(fixtures),
                          "--faults", faults], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if m:
            return p, int(m.group(1))
    p.kill()
    raise AssertionError("the emulator did not start")


@pytest.mark.slow
@pytest.mark.realspeech
def test_recognition_failing_part_way_keeps_the_transcript(tmp_path: Path) -> None:
    with wave.open(str(speech("goforward"))) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    four = tmp_path / "four.wav"
    with wave.open(str(four), "wb") as w:  # four utterances, 3.8 s apart
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm + b"\0\0" * rate) * 4)
    for output in ("-", "result.srt"):
        emu, port = _start_emulator(tmp_path, "task-failed=InvalidParameter@10")  # a permanent error at 10 s
        try:
            args = ["transcribe", str(four), "--asr", "fun-asr-realtime", "--format", "srt",
                    "--asr-option", f"base_url=ws://127.0.0.1:{port}", "--asr-option", "api_key=sk-test"]
            if output != "-":
                args += ["-o", str(tmp_path / output)]
            r = run(*args, timeout=120)
        finally:
            emu.kill()
            emu.wait()
        assert r.returncode == 1
        line = one_error_line(r)
        assert "recognition stopped at" in line and "InvalidParameter" in line
        # the fault fires when the emulator has *received* 10 s of audio; how many finals it has
        # recognised by then (two when it keeps up, one on a loaded machine) is the server's pace
        found = re.search(r"after (\d+) segment\(s\)", line)
        assert found is not None, line
        kept_n = int(found.group(1))
        assert kept_n in (1, 2), line
        said = ["Sentence one.", "Sentence two."][:kept_n]
        if output == "-":
            assert all(s in r.stdout for s in said) and "three" not in r.stdout
            assert "printed above" in line
        else:
            assert not (tmp_path / output).exists()  # never mistaken for a complete result
            kept = (tmp_path / "result.partial.srt").read_text()
            assert kept.startswith("1\n00:00:00") and all(s in kept for s in said)
            assert "result.partial.srt" in line
