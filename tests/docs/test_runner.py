"""The docs runner itself: a block that is wrong must fail, and the conventions do what docs/testing.md says."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import SkipTest

import docrunner as docs
from sybil import Document

SERVER = """\
import http.server, sys
s = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
print(f"serving at http://127.0.0.1:{s.server_port}/", flush=True)
try:
    s.serve_forever()
except KeyboardInterrupt:
    pass
"""


def run_markdown(tmp_path: Path, text: str) -> list[str]:
    """Evaluate every block of a Markdown text the way the docs test does; 'ok', 'skip' or the failure."""
    md = tmp_path / "page.md"
    md.write_text(text)
    samples = tmp_path / "samples"
    samples.mkdir(exist_ok=True)
    (samples / "server.py").write_text(SERVER)
    env = docs.DocsEnv({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}, samples)
    document = Document.parse(str(md), *docs.docs_sybil.parsers)
    document.namespace["_docs_env"] = env
    outcomes: list[str] = []
    try:
        for example in document.examples():
            try:
                example.evaluate()
            except SkipTest:
                outcomes.append("skip")
            except Exception as exc:
                outcomes.append(f"fail: {exc}")
            else:
                outcomes.append("ok")
    finally:
        env.release(document.path)
    return outcomes


def test_console_output_is_checked(tmp_path: Path) -> None:
    out = run_markdown(tmp_path, "```console\n$ echo hello world\nhello world\n```\n\n"
                                 "```console\n$ echo hello world\ngoodbye\n```\n\n"
                                 "```console\n$ printf 'a\\nb\\nc\\n'\na\n...\n```\n")
    assert out[0] == "ok"
    assert out[1].startswith("fail:") and "goodbye" in out[1]
    assert out[2] == "ok"


def test_sh_block_is_one_script_that_must_succeed(tmp_path: Path) -> None:
    out = run_markdown(tmp_path, "```sh\nx=$(echo 5)\ntest \"$x\" = 5\n```\n\n```sh\ntrue\nfalse\ntrue\n```\n")
    assert out[0] == "ok"
    assert out[1].startswith("fail:") and "exit status 1" in out[1]


def test_python_blocks_share_a_page_namespace_and_may_await(tmp_path: Path) -> None:
    out = run_markdown(tmp_path, "```python\nimport trio\nx = 2\n```\n\n"
                                 "```python\nawait trio.sleep(0)\nassert x == 2\n```\n\n"
                                 "```python\nassert x == 3\n```\n")
    assert out[:2] == ["ok", "ok"]
    assert out[2].startswith("fail:") and "AssertionError" in out[2]


def test_skip_directive_needs_no_other_code(tmp_path: Path) -> None:
    out = run_markdown(tmp_path, '<!-- skip: next "needs a sound card" -->\n```sh\nfalse\n```\n\n```sh\ntrue\n```\n')
    assert out == ["ok", "skip", "ok"] or out[-2:] == ["skip", "ok"]


def test_background_command_must_answer_where_it_says(tmp_path: Path) -> None:
    good = run_markdown(tmp_path, "```console background\n$ python server.py\nserving at http://127.0.0.1:...\n```\n")
    assert good == ["ok"]
    exits = run_markdown(tmp_path, "```console background\n$ echo serving at http://127.0.0.1:9/\n```\n")
    assert exits[0].startswith("fail:")


def test_every_file_the_docs_name_is_provided(tmp_path: Path) -> None:
    docs._make_samples(tmp_path)
    for name in ("question.wav", "talk.mp3", "call.mp3", "meeting.m4a", "b.flac", "audio.raw", "words.txt"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_a_block_naming_a_file_is_saved_for_the_commands_after_it(tmp_path: Path) -> None:
    out = run_markdown(tmp_path, "```python\n# greet.py\nWORD = 'hi'\n```\n\n"
                                 "```console\n$ python -c 'import greet; print(greet.WORD)'\nhi\n```\n")
    assert out == ["ok", "ok"]
