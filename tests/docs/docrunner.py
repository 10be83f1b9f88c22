"""How the docs test runs a block: the environment, the evaluators of Python and shell blocks, the
sample files, and the Sybil set-up. The conventions are described in docs/testing.md."""


from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV_BIN = Path(sys.executable).parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_KEY = "sk-test-0000000000000000"
PYTHON_TIMEOUT_S = 90.0
SHELL_TIMEOUT_S = 240.0
START_TIMEOUT_S = 60.0


# ---------------------------------------------------------------- the environment blocks run in


class DocsEnv:
    """What every block sees: the environment variables and a working folder per page."""

    def __init__(self, environ: dict[str, str], samples: Path) -> None:
        self.environ = environ
        self.samples = samples
        self._workdirs: dict[str, Path] = {}

    def workdir(self, document: Document) -> Path:
        path = self._workdirs.get(document.path)
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="voicekit-docs-"))
            shutil.copytree(self.samples, path, dirs_exist_ok=True, symlinks=True)
            self._workdirs[document.path] = path
        return path

    def release(self, document_path: str) -> None:
        path = self._workdirs.pop(document_path, None)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def _make_samples(dest: Path) -> None:
    """The files the docs name, made from the cached real speech (voicekit.testing.data)."""
    import av
    import numpy as np

    from voicekit.testing import data

    go = data.speech("goforward")
    clips = [path for path, _ in data.librivox_clips()]
    talk = clips[1]  # "he was not an ill disposed young man" (about 3 s)
    for name in ("question.wav", "go.wav", "recording.wav", "clip.wav", "a.wav"):
        shutil.copy(go if name in ("go.wav", "recording.wav") else talk, dest / name)
    shutil.copy(go, dest / "question.wav")
    pcm = (data.pocketsphinx_data() / "goforward.raw").read_bytes()
    (dest / "audio.raw").write_bytes(pcm)

    def encode(src: Path, target: Path, codec: str, rate: int | None = None) -> None:
        with av.open(str(src)) as inp, av.open(str(target), "w") as out:
            in_stream = inp.streams.audio[0]
            stream = out.add_stream(codec, rate=rate or in_stream.rate)
            stream.layout = "mono"  # type: ignore[union-attr]
            resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate)  # type: ignore[union-attr]
            for frame in inp.decode(in_stream):
                for f in resampler.resample(frame):
                    out.mux(stream.encode(f))  # type: ignore[union-attr]
            for f in resampler.resample(None):
                out.mux(stream.encode(f))  # type: ignore[union-attr]
            out.mux(stream.encode(None))  # type: ignore[union-attr]

    encode(talk, dest / "talk.mp3", "mp3", 16000)
    encode(go, dest / "call.mp3", "mp3", 16000)
    encode(talk, dest / "b.flac", "flac")
    encode(talk, dest / "meeting.m4a", "aac")
    # a two-speaker "meeting" and "call": the LibriVox reader, then the command speaker
    import wave

    def read(path: Path) -> bytes:
        with wave.open(str(path)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1
            return w.readframes(w.getnframes())

    gap = bytes(2 * 16000)
    both = read(talk) + gap + read(go) + gap + read(clips[4])
    for name in ("meeting.wav", "call.wav"):
        with wave.open(str(dest / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(both)
    assert np is not None
    (dest / "words.txt").write_text("# hotwords, one a line\nDashwood\nNorland\n")
    (dest / "words.json").write_text('[{"text": "Elinor", "weight": 4, "lang": "en"}]\n')
    (dest / "lines.json").write_text('{"key": "order", "sentences": ["first sentence", "second sentence"]}\n')
    (dest / "script.json").write_text(
        '{"replies": ["Hello! How can I help?"], "default_reply": "You said: {transcript}."}\n'
    )
    # the commands that start from the checkout's root (`. .venv/bin/activate`, `python bench/...`)
    for name in (".venv", "bench", "plugins", "examples"):
        target = ROOT / name
        if name == ".venv":
            target = VENV_BIN.parent
        (dest / name).symlink_to(target, target_is_directory=True)


@contextmanager
def _inside(env: DocsEnv, workdir: Path) -> Iterator[None]:
    saved_env = {k: os.environ.get(k) for k in env.environ}
    saved_cwd = os.getcwd()
    os.environ.update(env.environ)
    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    try:
        yield
    finally:
        sys.path.remove(str(workdir))
        os.chdir(saved_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _alarm(seconds: float, what: str) -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- Python blocks


def evaluate_python(example: Example) -> None:
    """Sybil's Python evaluation, plus top-level ``await`` (run with trio), the page's working
    folder as current directory and importable, and the docs environment."""
    __tracebackhide__ = True
    env: DocsEnv = example.namespace["_docs_env"]
    workdir = env.workdir(example.document)
    named = re.match(r"# ([\w.-]+\.py)[ \t]*\n", str(example.parsed))
    if named:  # a block that starts with `# my_bot.py` is that file: save it for the commands after it
        (workdir / named.group(1)).write_text(str(example.parsed))
    source = pad(example.parsed, example.line + example.parsed.line_offset)
    code = compile(source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    try:
        with _inside(env, workdir):
            if code.co_flags & inspect.CO_COROUTINE:
                namespace = example.namespace

                async def run() -> None:
                    with trio.fail_after(PYTHON_TIMEOUT_S):
                        await eval(code, namespace)

                trio.run(run)
            else:
                with _alarm(PYTHON_TIMEOUT_S, f"the Python block at line {example.line}"):
                    exec(code, example.namespace)
    except (Exception, BaseExceptionGroup) as exc:
        # pytest cannot show frames of code compiled from Markdown (it parses the .md file as
        # Python), nor can Sybil's traceback filter handle exception groups: report it as text
        raise AssertionError(f"the Python block at line {example.line} failed:\n"
                             + "".join(traceback.format_exception(exc))) from None
    finally:
        example.namespace.pop("__builtins__", None)


# ---------------------------------------------------------------- shell blocks


class ShellBlock:
    def __init__(self, kind: str, options: set[str], source: str) -> None:
        self.kind = kind
        self.options = options
        self.source = source

    def commands(self) -> list[tuple[str, str]]:
        """(command, expected output) pairs of a console block."""
        pairs: list[tuple[str, list[str]]] = []
        for line in self.source.splitlines():
            if line.startswith("$ "):
                pairs.append((line[2:], []))
            elif pairs:
                pairs[-1][1].append(line)
            elif line.strip():
                raise ValueError(f"a console block must start with a '$ ' command line, not {line!r}")
        return [(cmd, "\n".join(out).strip("\n")) for cmd, out in pairs]


def _pattern(expected: str) -> re.Pattern[str]:
    parts = [re.escape(_normalize(piece)) for piece in expected.split("...")]
    return re.compile(".*?".join(parts), re.DOTALL)


def _normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


class ShellParser:
    """Fenced ```sh and ```console blocks (with options after the language, e.g. `background`)."""

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer(language=r"(?:sh|console)(?:[ \t]+[^\n]*)?")

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.lexer(document):
            kind, *options = region.lexemes["language"].split()
            region.parsed = ShellBlock(kind, set(options), str(region.lexemes["source"]))
            region.evaluator = evaluate_shell
            yield region


def _run(command: str, env: DocsEnv, workdir: Path, line: int) -> str:
    """Run one command (or script) with bash; its stdout and stderr together, as on a terminal."""
    environ = {**os.environ, **env.environ}
    try:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command], cwd=workdir, env=environ, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=SHELL_TIMEOUT_S, start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        raise AssertionError(f"line {line}: still running after {SHELL_TIMEOUT_S:.0f} s: {command}\n{out}") from None
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise AssertionError(f"line {line}: exit status {done.returncode}: {command}\n{out}")
    return out


def _start_and_probe(command: str, expected: str, env: DocsEnv, workdir: Path, line: int) -> None:
    """A server in the foreground: it must print what the docs show, answer on the http:// address it
    prints, and stop on Ctrl-C without a traceback."""
    environ = {**os.environ, **env.environ}
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=workdir, env=environ, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    chunks: list[bytes] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: stdout.read1(4096), b"")), daemon=True)
    reader.start()
    pattern = _pattern(expected) if expected else None

    def output() -> str:
        return _normalize(b"".join(chunks).decode(errors="replace"))

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        first_output: float | None = None
        while True:
            text = output()
            urls = re.findall(r"http://[^\s;,'\"]+", text)
            if text and first_output is None:
                first_output = time.monotonic()
            if pattern is not None:
                ready = pattern.search(text) is not None
            else:  # nothing shown: it must print something, and its address if it has one
                ready = bool(urls) or (first_output is not None and time.monotonic() - first_output > 3)
            if ready:
                break
            if proc.poll() is not None:
                raise AssertionError(f"line {line}: {command!r} exited ({proc.returncode}) instead of serving:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"line {line}: {command!r} did not print what the docs show in "
                                     f"{START_TIMEOUT_S:.0f} s.\nexpected:\n{expected}\ngot:\n{text}")
            time.sleep(0.1)
        for url in urls:
            try:
                urllib.request.urlopen(url.rstrip("/.") + "/", timeout=10).close()
            except urllib.error.HTTPError:
                pass  # it answered
            except OSError as exc:
                raise AssertionError(f"line {line}: {command!r} prints {url} but does not answer: {exc}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"line {line}: {command!r} did not stop on Ctrl-C") from None
        reader.join(5)
    text = output()
    assert "Traceback" not in text, f"line {line}: {command!r} ended with a traceback:\n{text}"


def evaluate_shell(example: Example) -> None:
    __tracebackhide__ = True
    block: ShellBlock = example.parsed
    env: DocsEnv = example.namespace["_docs_env"]
    workdir = env.workdir(example.document)
    if block.kind == "sh":
        _run(block.source, env, workdir, example.line)
        return
    for command, expected in block.commands():
        if "background" in block.options:
            _start_and_probe(command, expected, env, workdir, example.line)
            continue
        out = _run(command, env, workdir, example.line)
        if expected and not _pattern(expected).fullmatch(_normalize(out)):
            raise AssertionError(
                f"line {example.line}: {command}\nexpected (... matches anything):\n{expected}\ngot:\n{_normalize(out)}"
            )


# ---------------------------------------------------------------- collection


# ---------------------------------------------------------------- Sybil


def _teardown(namespace: dict[str, Any]) -> None:
    env = namespace.get("_docs_env")
    if isinstance(env, DocsEnv):
        for path in list(env._workdirs):
            env.release(path)


docs_sybil = Sybil(
    parsers=[CodeBlockParser(language="python", evaluator=evaluate_python), ShellParser(), SkipParser()],
    path=str(ROOT),
    filenames=[str(p.name) for p in DOCUMENTS],
    fixtures=["_docs_env"],
    teardown=_teardown,
    name="docs",
)
