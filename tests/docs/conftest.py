"""Executable documentation: every Python and shell block of README.md and docs/*.md runs here.

Sybil parses the Markdown; its pytest integration turns each block into a test item (ids such as
``docs/cli.md::line:33,column:1``). How a block is run, and the conventions a writer follows, are
described in docs/testing.md ("The documentation is tested"). In short:

* ```` ```python ```` blocks run in one namespace per page, top-level ``await`` allowed;
  ``<!-- invisible-code-block: python -->`` comments hold set-up a reader does not need to see;
* ```` ```sh ```` blocks run as one bash script (``set -e -o pipefail``);
* ```` ```console ```` blocks: ``$ `` lines are commands, the lines after one are its output, checked
  (``...`` matches anything); ```` ```console background ```` is for servers: each command is
  started, must print its output and answer on the address it prints, then gets Ctrl-C;
* ``<!-- skip: next "reason" -->`` (Sybil's skip directive) before a block that needs a sound card,
  a real key, or would install software or run this suite.

Every page runs in its own temporary working folder holding the sample files the docs name (made
from cached real speech), with the virtualenv's ``bin`` first on ``PATH`` and the DashScope settings
of one emulator, started once per test session, in the environment.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from docrunner import (
    DOCUMENTS,
    HERE,
    START_TIMEOUT_S,
    TEST_KEY,
    VENV_BIN,
    DocsEnv,
    ShellBlock,
    _make_samples,
    docs_sybil,
)
from sybil.evaluators.skip import Skipper


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def docs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One `voicekit emulate dashscope` for every block; its printed settings, plus a test key.

    At the end of the session it must still be running and must have logged no error."""
    log_dir = tmp_path_factory.mktemp("emulator")
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    port = _free_port()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [str(VENV_BIN / "voicekit"), "emulate", "dashscope", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=log_dir, start_new_session=True,
        )
    try:
        settings: dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        while not settings:
            text = out_path.read_text(errors="replace")
            settings = dict(re.findall(r"^\s*export (\w+)=(\S+)\s*$", text, re.MULTILINE))
            if settings:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"voicekit emulate dashscope did not start (exit {proc.poll()}):\n"
                    f"{text}\n{err_path.read_text(errors='replace')}"
                )
            time.sleep(0.1)
        settings["DASHSCOPE_API_KEY"] = TEST_KEY
        yield settings
        alive = proc.poll() is None
        log = err_path.read_text(errors="replace") + out_path.read_text(errors="replace")
        assert alive, f"the DashScope emulator died during the docs tests (exit {proc.returncode}):\n{log[-4000:]}"
        bad = [line for line in log.splitlines()
               if re.search(r"\[(error|critical|exception)\s*\]|Traceback|Error:", line)]
        assert not bad, "the DashScope emulator logged errors during the docs tests:\n" + "\n".join(bad[:40])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def _docs_env(docs_emulator: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsEnv]:
    samples = tmp_path_factory.mktemp("doc-samples")
    _make_samples(samples)
    environ = dict(docs_emulator)
    environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    environ["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    environ["PYTHONUNBUFFERED"] = "1"
    yield DocsEnv(environ, samples)



_collect_markdown = docs_sybil.pytest()


class MarkdownDocs(pytest.File):
    """Collects README.md and docs/*.md (they live outside the test folders)."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        for path in DOCUMENTS:
            node = _collect_markdown(path, self)
            if node is not None:
                yield node


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path == HERE / "conftest.py":
        return MarkdownDocs.from_parent(parent, path=file_path)
    return None


def _starts_processes(examples: list[pytest.Item]) -> bool:
    """Whether a page's blocks, in order, include one that is not skipped and starts a process: a
    ```sh or ```console block, or a Python block that uses ``subprocess``."""
    skip_next = False
    for item in examples:
        region = item.example.region  # type: ignore[attr-defined]
        if isinstance(region.evaluator, Skipper):
            skip_next = bool(region.parsed) and region.parsed[0] == "next"
            continue
        if not skip_next and (isinstance(region.parsed, ShellBlock)
                              or (isinstance(region.parsed, str) and "subprocess" in region.parsed)):
            return True
        skip_next = False
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A page with a block that starts processes (the CLI, a server) is slow: all its blocks are marked
    together, because a page's blocks share state in order. The other pages stay in the fast subset
    (``pytest -m "not slow"``); ``make test`` runs every page."""
    pages: dict[Path, list[pytest.Item]] = {}
    for item in items:
        if item.path.suffix == ".md" and hasattr(item, "example"):
            pages.setdefault(item.path, []).append(item)
    for examples in pages.values():
        if _starts_processes(examples):
            for item in examples:
                item.add_marker(pytest.mark.slow)
