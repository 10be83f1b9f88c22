"""``voicekit hotwords ...`` and ``voicekit emulate dashscope`` as registered through ``voicekit.cli``."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from importlib.metadata import entry_points

import pytest
import trio
from testkit.common import FAKE_KEY
from voicekit_dashscope_emulator import DashScopeEmulator


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> object:
    """Like the real CLI: log lines go to stderr (warnings only), results to stdout."""
    import structlog

    from voicekit.logging import configure

    configure("warning", stream=sys.stderr)
    yield
    structlog.reset_defaults()


def _parser() -> argparse.ArgumentParser:
    """The commands of the plugin (``hotwords``, ``dashscope``) and of its emulator (``emulate dashscope``)."""
    eps = sorted((e for e in entry_points(group="voicekit.cli") if e.name in ("dashscope", "dashscope-emulator")),
                 key=lambda e: e.name)
    assert [e.name for e in eps] == ["dashscope", "dashscope-emulator"]
    parser = argparse.ArgumentParser(prog="voicekit")
    sub = parser.add_subparsers(dest="command", required=True)
    for ep in eps:
        ep.load()(sub)
    return parser


async def _run(argv: list[str]) -> tuple[int, str, str]:
    args = _parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return int(args.func(args))

    code = await trio.to_thread.run_sync(call)
    return code, out.getvalue(), err.getvalue()


async def test_hotwords_commands_against_the_emulator(emulator: DashScopeEmulator, tmp_path) -> None:
    common = ["--base-url", emulator.http_base_url, "--api-key", FAKE_KEY]
    words = tmp_path / "words.txt"
    words.write_text("Moonshine\n# a comment\nLibriVox\n", encoding="utf-8")
    code, out, _ = await _run(["hotwords", "create", "--model", "fun-asr-realtime", "--prefix", "cli",
                               "--file", str(words), "--word", "Dashwood:5", *common])
    assert code == 0
    vid = out.strip()
    assert vid.startswith("vocab-cli-")
    code, out, _ = await _run(["hotwords", "list", "--json", *common])
    assert code == 0 and [v["vocabulary_id"] for v in json.loads(out)] == [vid]
    code, out, _ = await _run(["hotwords", "show", vid, "--json", *common])
    shown = json.loads(out)
    assert shown["vocabulary"] == [{"text": "Dashwood", "weight": 5}, {"text": "Moonshine", "weight": 4},
                                   {"text": "LibriVox", "weight": 4}]
    code, out, _ = await _run(["hotwords", "update", vid, "--word", "Elinor", *common])
    assert code == 0 and "updated" in out
    code, out, _ = await _run(["hotwords", "show", vid, *common])
    assert "Elinor\tweight=4" in out
    code, out, _ = await _run(["hotwords", "delete", vid, *common])
    assert code == 0
    code, out, err = await _run(["hotwords", "show", vid, *common])
    assert code == 1 and "does not exist" in err and FAKE_KEY not in err


async def test_bad_weight_is_refused_before_sending(emulator: DashScopeEmulator) -> None:
    code, _, err = await _run(["hotwords", "create", "--model", "fun-asr-realtime", "--prefix", "cli",
                               "--word", "x", "--weight", "9", "--base-url", emulator.http_base_url,
                               "--api-key", FAKE_KEY])
    assert code == 1 and "from 1 to 5" in err
    assert emulator.store.lists == {}


@pytest.mark.slow  # a real emulator process
async def test_emulate_command_serves_until_stopped(tmp_path) -> None:
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(json.dumps({"key": "order", "sentences": ["hello there"]}))
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            [sys.executable, "-m", "voicekit_dashscope_emulator", "emulate", "dashscope", "--port", "0",
             "--fixtures", str(fixtures), "--faults", "drop@5"],
            stdout=__import__("subprocess").PIPE, check=False, task_status=task_status))
        with trio.fail_after(20):
            banner = b""
            while b"DASHSCOPE_HTTP_BASE_URL" not in banner:
                banner += await proc.stdout.receive_some(4096)
        proc.terminate()
    assert b"DASHSCOPE_WEBSOCKET_BASE_URL=ws://127.0.0.1:" in banner


def test_bad_emulator_options_are_usage_errors(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["emulate", "dashscope", "--fixtures", "/nonexistent.json"])
    assert args.func(args) == 2
    assert "cannot read fixtures file" in capsys.readouterr().err
    fixtures = tmp_path / "f.json"
    fixtures.write_text('["hi"]')
    args = _parser().parse_args(["emulate", "dashscope", "--fixtures", str(fixtures), "--faults", "explode@3"])
    assert args.func(args) == 2
    assert "bad fault rule 'explode@3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["hotwords", "frobnicate"])


@pytest.mark.slow
async def test_verbose_flags_put_log_lines_on_stderr_only(emulator: DashScopeEmulator, tmp_path) -> None:
    """``-v``/``-vv`` on ``hotwords`` and ``dashscope transcribe``: log lines on stderr, results alone on stdout."""
    import wave
    from pathlib import Path

    voicekit = str(Path(sys.executable).with_name("voicekit"))
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)
    common = ["--base-url", emulator.http_base_url, "--api-key", FAKE_KEY]
    runs = [(["hotwords", "list", "--json"], "vocabulary_call"),
            (["dashscope", "transcribe", str(wav), "--format", "json"], "file_task_submitted")]
    for argv, log_event in runs:
        for flags in ([], ["-vv"]):
            r = await trio.run_process([voicekit, *argv, *common, *flags], capture_stdout=True,
                                       capture_stderr=True, check=False)
            out, err = r.stdout.decode(), r.stderr.decode()
            assert r.returncode == 0, err
            json.loads(out)  # stdout is the result alone, never a log line
            assert (log_event in err) == bool(flags), (flags, err)


@pytest.mark.slow
def test_plugins_name_shows_an_agents_options_beside_its_asr_ones() -> None:
    import subprocess
    from pathlib import Path

    voicekit = str(Path(sys.executable).with_name("voicekit"))
    r = subprocess.run([voicekit, "plugins", "qwen3.5-omni-flash-realtime"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    asr, _, agent = r.stdout.partition("agent plugin qwen3.5-omni-flash-realtime")
    assert asr.startswith("asr plugin qwen3.5-omni-flash-realtime") and "--asr-option" in asr
    assert "--agent-option KEY=VALUE" in agent and "turn_detection" in agent and "barge_in" in agent
    r = subprocess.run([voicekit, "plugins", "--json", "qwen3.5-omni-flash-realtime"], capture_output=True,
                       text=True, timeout=120)
    rows = json.loads(r.stdout)
    assert [row["group"] for row in rows] == ["asr", "agents"]
    assert "voice" in {o["name"] for o in rows[1]["options"]}
