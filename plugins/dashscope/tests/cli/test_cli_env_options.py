"""The cloud plugins the way a user meets them: one ``voicekit emulate dashscope`` process, the
variables it prints, typed ``--asr-option`` values, 8 kHz models, clean stdout, early refusals,
and near-real-time chunks cut at pauses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.journey import Emulator, long_lived_emulator

from voicekit.testing.data import librivox_clips, speech
from voicekit.testing.wer import wer

pytestmark = pytest.mark.slow

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
PRUDENTLY = "sense_and_sensibility_01_austen_64kb-0870"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with long_lived_emulator(tmp_path_factory.mktemp("emu"), problems=None) as emu:
        yield emu


def cli(emulator: Emulator | None, *args: str, env_only: bool = True) -> subprocess.CompletedProcess[str]:
    """``voicekit ARGS`` with only the emulator's printed variables set (no base_url option)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "OPENAI_"))}
    if emulator is not None and env_only:
        env.update(emulator.env)
    return subprocess.run([VOICEKIT, *args], capture_output=True, text=True, timeout=300, env=env)


def test_banner_variables_alone_reach_the_emulator(emulator: Emulator) -> None:
    assert emulator.env["DASHSCOPE_WEBSOCKET_BASE_URL"].startswith("ws://127.0.0.1:")
    assert emulator.env["DASHSCOPE_HTTP_BASE_URL"].startswith("http://127.0.0.1:")
    for name in ("fun-asr-realtime", "qwen3-asr-flash-realtime", "qwen3-asr-flash"):
        r = cli(emulator, "transcribe", str(speech("goforward")), "--asr", name)
        assert r.returncode == 0, (name, r.stderr)
        assert wer(["go forward ten meters"], [r.stdout]) <= 0.5, (name, r.stdout)


def test_explicit_base_url_wins_over_the_environment(emulator: Emulator) -> None:
    env_ws = emulator.env["DASHSCOPE_WEBSOCKET_BASE_URL"]
    port = re.search(r":(\d+)/", env_ws).group(1)  # type: ignore[union-attr]
    bad = {**emulator.env, "DASHSCOPE_WEBSOCKET_BASE_URL": "ws://127.0.0.1:9/api-ws/v1/inference"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env.update(bad)
    r = subprocess.run([VOICEKIT, "transcribe", str(speech("goforward")), "--asr", "fun-asr-realtime",
                        "--asr-option", f"base_url=ws://127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert "forward" in r.stdout.lower()


def test_cli_option_values_are_typed(emulator: Emulator) -> None:
    # one hotword stays one word (a managed vocabulary is created with it); the key stays text
    r = cli(emulator, "transcribe", str(speech("goforward")), "--asr", "fun-asr-realtime",
            "--asr-option", "hotwords=Dashwud", "--asr-option", "language_hints=en",
            "--asr-option", "api_key=123456789012345", "--asr-option", "retry=5")
    assert r.returncode == 0, r.stderr
    assert "forward" in r.stdout.lower()
    r = cli(emulator, "transcribe", str(speech("goforward")), "--asr", "fun-asr-realtime",
            "--asr-option", "max_buffer_s=" + "abc" * 16000)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and len(r.stderr) < 200, r.stderr
    assert "option 'max_buffer_s' expects a number" in r.stderr
    r = cli(emulator, "transcribe", str(speech("goforward")), "--asr", "fun-asr-realtime",
            "--asr-option", "hotword=Dashwud")
    assert r.returncode == 1 and "did you mean 'hotwords'?" in r.stderr


def test_python_api_types_options_like_the_cli(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicekit.errors import ConfigError
    from voicekit.plugins.build import make_asr

    for key, value in emulator.env.items():
        monkeypatch.setenv(key, value)
    asr = make_asr("fun-asr-realtime", hotwords="Dashwud", language_hints="en", retry="5",
                   api_key="123456789012345")
    assert asr.hotwords == ("Dashwud",) and asr.settings["language_hints"] == ("en",)  # type: ignore[attr-defined]
    assert asr.retry.max_retries == 5  # type: ignore[attr-defined]
    assert asr.endpoints.inference_url == emulator.env["DASHSCOPE_WEBSOCKET_BASE_URL"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"option 'retry' expects an integer >= 0, got -1"):
        make_asr("fun-asr-realtime", retry=-1)
    with pytest.raises(ConfigError, match=r"option 'api_key' expects text \(secret\), got <redacted>"):
        make_asr("fun-asr-realtime", api_key=123456789012345)


@pytest.mark.parametrize(("plugin", "model"), [("paraformer-realtime", "paraformer-realtime-8k-v2"),
                                               ("fun-asr-realtime", "fun-asr-flash-8k-realtime")])
def test_8k_models_get_8k_audio(emulator: Emulator, plugin: str, model: str) -> None:
    r = cli(emulator, "transcribe", str(speech("goforward")), "--asr", plugin, "--asr-option", f"model={model}",
            "--asr-option", "region=beijing")
    assert r.returncode == 0, r.stderr
    assert "forward" in r.stdout.lower(), r.stdout


def test_sample_rate_option_is_checked(emulator: Emulator) -> None:
    r = cli(emulator, "transcribe", str(speech("goforward")), "--asr", "paraformer-realtime",
            "--asr-option", "model=paraformer-realtime-8k-v2", "--asr-option", "sample_rate=16000")
    assert r.returncode == 1
    assert "paraformer-realtime-8k-v2 takes 8000 Hz audio, not sample_rate=16000" in r.stderr
    r = cli(emulator, "transcribe", str(speech("goforward")), "--asr", "paraformer-realtime",
            "--asr-option", "sample_rate=24000")
    assert r.returncode == 0, r.stderr
    assert "forward" in r.stdout.lower()


def test_file_transcription_stdout_is_only_the_result(emulator: Emulator, tmp_path: Path) -> None:
    r = cli(emulator, "dashscope", "transcribe", str(speech("goforward")), "--model", "fun-asr", "--diarize",
            "--speakers", "2", "--format", "rttm")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(line.startswith("SPEAKER ") for line in lines), r.stdout
    assert "file_uploaded" not in r.stdout


def test_unsupported_file_option_is_refused_before_any_upload(emulator: Emulator) -> None:
    r = cli(emulator, "dashscope", "transcribe", str(speech("goforward")), "--model", "qwen3-asr-flash-filetrans",
            "--diarize")
    assert r.returncode == 2
    assert "qwen3-asr-flash-filetrans has no speaker diarization" in r.stderr
    assert "uploading" not in r.stderr  # the progress line of an upload
    # and no network at all: the same refusal with nowhere to connect to
    r = cli(None, "dashscope", "transcribe", str(speech("goforward")), "--model", "qwen3-asr-flash-filetrans",
            "--diarize", "--api-key", "sk-nowhere-000000", "--base-url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "has no speaker diarization" in r.stderr


def test_near_realtime_chunks_do_not_split_words(emulator: Emulator) -> None:
    clip, said = next((c, t) for c, t in librivox_clips() if c.stem == PRUDENTLY)
    assert "prudently" in said
    # the 7 s sentence is longer than the 5 s chunk limit: it is cut once, inside the speech
    # (a cut at exactly 5 s falls inside "prudently", which then comes back as "Provenly")
    r = cli(emulator, "transcribe", str(clip), "--asr", "qwen3-asr-flash")
    assert r.returncode == 0, r.stderr
    text = r.stdout.lower()
    assert "prudently" in text, text
    assert wer([said], [text]) <= 0.1, text


def test_a_plain_program_prints_nothing_but_its_own_output(emulator: Emulator, tmp_path: Path) -> None:
    program = tmp_path / "app.py"
    program.write_text(
        "import trio\n"
        "from voicekit.audio.sources import FileSource\n"
        "from voicekit.plugins.build import make_asr, make_vad\n"
        "from voicekit import transcribe\n"
        f"src = FileSource({str(speech('goforward'))!r}, sample_rate=16000)\n"
        "asr = make_asr('fun-asr')\n"
        "finals = trio.run(lambda: transcribe(src, asr=asr, vad=make_vad()))\n"
        "print('RESULT', ' '.join(f.text for f in finals))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env.update(emulator.env)
    r = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("RESULT ") and r.stdout.count("\n") == 1, r.stdout
    assert "forward" in r.stdout.lower()
    assert r.stderr == "", r.stderr  # info and debug lines are not printed by default


def test_hotwords_commands_print_only_results(emulator: Emulator) -> None:
    r = cli(emulator, "hotwords", "create", "--model", "fun-asr-realtime", "--prefix", "envtest",
            "--word", "Dashwood", "--region", "beijing")
    assert r.returncode == 0, r.stderr
    vocab = r.stdout.strip()
    assert r.stdout == vocab + "\n" and " " not in vocab
    r = cli(emulator, "hotwords", "list", "--prefix", "envtest", "--region", "beijing")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split("\t")[0] == vocab, r.stdout
    r = cli(emulator, "hotwords", "delete", vocab, "--region", "beijing")
    assert r.returncode == 0 and r.stdout == f"deleted {vocab}\n", r.stdout + r.stderr
