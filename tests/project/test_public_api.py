"""The public API: what ``voicekit`` exports, that importing it stays light, and the one home of
the exception-group helpers (``voicekit.errors``)."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import voicekit
from voicekit import errors, events
from voicekit.errors import (
    ConfigError,
    VoicekitError,
    first_error,
    leaves,
    one_line,
    only_cancelled,
    sole_error,
)

ROOT = Path(__file__).resolve().parents[2]

# What an application imports from ``voicekit``. Adding a name is a decision: add it here too.
EXPORTED = [
    "ASRConfig",
    "ASREngine",
    "ASRError",
    "Assistant",
    "AudioError",
    "AudioFrame",
    "AudioSink",
    "AudioSource",
    "ConfigError",
    "DeviceNotFoundError",
    "EmptyAudioError",
    "Event",
    "FileSource",
    "Handler",
    "HandlerError",
    "InterruptionPolicy",
    "MemorySink",
    "MicrophoneSource",
    "NeverInterrupt",
    "NoEngineError",
    "NullSink",
    "OutputError",
    "PCMSource",
    "PluginError",
    "ProtocolError",
    "Reply",
    "Session",
    "SessionConfig",
    "SpeakerSink",
    "TTSEngine",
    "TTSError",
    "TranscriptResult",
    "TranscriptionFailed",
    "Turn",
    "UnsupportedAudioError",
    "VADBackend",
    "VADInterruption",
    "VoicekitError",
    "WavFileSink",
    "Word",
    "__version__",
    "events",
    "load_assistant",
    "make_asr",
    "make_tts",
    "make_vad",
    "open_session",
    "open_source",
    "probe",
    "transcribe",
]

PACKAGES = ["voicekit.asr", "voicekit.audio", "voicekit.handlers", "voicekit.plugins", "voicekit.serve",
            "voicekit.session", "voicekit.testing", "voicekit.tts", "voicekit.vad"]

HEAVY = ["trio", "av", "numpy", "structlog", "httpx", "h11"]


# -- exports ------------------------------------------------------------------------------------


def test_exports_are_pinned() -> None:
    assert sorted(voicekit.__all__) == sorted(EXPORTED)
    assert len(set(voicekit.__all__)) == len(voicekit.__all__)


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from voicekit import {name}", namespace)
    assert namespace[name] is getattr(voicekit, name)
    assert name in dir(voicekit)


def _type_checking_imports(path: Path) -> dict[str, str]:
    """``name -> module`` for the ``if TYPE_CHECKING:`` re-exports of a package ``__init__``."""
    tree = ast.parse(path.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module
                for alias in stmt.names:
                    assert alias.asname == alias.name, "re-export as `import x as x` so type checkers see it"
                    found[alias.name] = f"{stmt.module}.{alias.name}" if stmt.module == "voicekit" \
                        else stmt.module
    return found


@pytest.mark.parametrize("package", ["voicekit", *PACKAGES])
def test_lazy_exports_match_what_type_checkers_see(package: str) -> None:
    """Each package says twice where a name lives (for type checkers, and for the lazy loader):
    the two must agree, cover ``__all__`` and give the object the defining module has."""
    module = importlib.import_module(package)
    lazy: dict[str, str] = module._EXPORTS
    public = set(module.__all__) - {"__version__"}
    assert set(lazy) == public
    assert _type_checking_imports(Path(module.__file__ or "")) == lazy
    for name, where in lazy.items():
        value = getattr(module, name)
        home = importlib.import_module(where)
        assert value is (home if where == f"{package}.{name}" else getattr(home, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = module.nonsense


def test_transcribe_is_the_function_even_after_its_module_is_imported() -> None:
    importlib.import_module("voicekit._transcribe")
    assert callable(voicekit.transcribe) and voicekit.transcribe.__name__ == "transcribe"
    from voicekit import transcribe

    assert transcribe is voicekit.transcribe


def _fresh(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("module", ["voicekit", "voicekit.events", "voicekit.errors", "voicekit.asr",
                                    "voicekit.vad", "voicekit.handlers", "voicekit.session", "voicekit.audio"])
def test_importing_loads_no_heavy_dependency(module: str) -> None:
    loaded = _fresh(f"import json, sys\nimport {module}\n"
                    f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    assert loaded["heavy"] == [], f"import {module} loaded {loaded['heavy']}"


def test_a_name_loads_its_module_on_first_use() -> None:
    loaded = _fresh("import json, sys, voicekit\nbefore = 'trio' in sys.modules\nvoicekit.Session\n"
                    "print(json.dumps({'before': before, 'after': 'trio' in sys.modules,"
                    " 'session': voicekit.Session.__module__}))")
    assert loaded == {"before": False, "after": True, "session": "voicekit.session.session"}


def test_submodules_stay_reachable_as_attributes() -> None:
    loaded = _fresh("import json, voicekit.audio\n"
                    "print(json.dumps({'m': voicekit.audio.sources.__name__}))")
    assert loaded == {"m": "voicekit.audio.sources"}


# -- events -------------------------------------------------------------------------------------


def test_warning_and_error_events_do_not_shadow_builtins() -> None:
    assert events.WarningEvent(t=0.0, where="audio", message="m").kind == "warning"
    assert events.ErrorEvent(t=0.0, where="asr", message="m", error_type="X").kind == "error"
    # the old names still work (deprecated aliases) but a star import does not bring them in
    assert events.Warning is events.WarningEvent and events.Error is events.ErrorEvent
    assert isinstance(events.Error(t=0.0, where="asr", message="m", error_type="X"), events.ErrorEvent)
    namespace: dict[str, object] = {}
    exec("from voicekit.events import *", namespace)
    assert "Warning" not in namespace and "Error" not in namespace
    assert "ErrorEvent" in namespace and "Transcript" in namespace
    assert set(events.__all__) == {cls.__name__ for cls in events._KINDS} | {"Event"}


# -- the Handler protocol -----------------------------------------------------------------------


@pytest.mark.slow
def test_handler_protocol_accepts_the_handler_shapes_an_assistant_takes(tmp_path: Path) -> None:
    """mypy is the judge: handlers of every allowed shape pass, a handler returning an int does not."""
    api = pytest.importorskip("mypy.api")
    code = (
        "from collections.abc import AsyncIterator\n"
        "from voicekit import Handler, Reply, Turn\n"
        "async def a(turn: Turn) -> str:\n    return turn.text\n"
        "def b(turn: Turn) -> Reply | None:\n    return None\n"
        "async def c(turn: Turn) -> AsyncIterator[str]:\n    yield 'x'\n"
        "class D:\n    def __call__(self, turn: Turn) -> str:\n        return ''\n"
        "handlers: list[Handler] = [a, b, c, D()]\n"
    )
    shapes = tmp_path / "shapes.py"
    args = ["--strict", "--cache-dir", str(tmp_path / "cache"), "--follow-imports=silent", str(shapes)]
    shapes.write_text(code)
    stdout, _, status = api.run(args)
    assert status == 0, stdout
    shapes.write_text(code + "def e(turn: Turn) -> int:\n    return 1\nwrong: Handler = e\n")
    stdout, _, status = api.run(args)
    assert status == 1 and 'variable has type "Handler"' in stdout, stdout


# -- exception-group helpers --------------------------------------------------------------------


async def _fail(exc: BaseException) -> None:
    raise exc


async def _sleep_forever() -> None:
    await trio.sleep_forever()


def _nursery_error(*excs: BaseException, sleeper: bool = True) -> BaseException:
    """What a nursery really raises when its tasks fail (with a sibling that gets cancelled)."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if sleeper:
                nursery.start_soon(_sleep_forever)
            for exc in excs:
                nursery.start_soon(_fail, exc)

    with pytest.raises(BaseException) as info:
        trio.run(main)
    return info.value


def test_helpers_on_a_real_nursery_failure() -> None:
    boom = ConfigError("bad option\nsecond line")
    group = _nursery_error(boom)
    assert isinstance(group, BaseExceptionGroup)
    assert leaves(group) == [boom]
    assert sole_error(group) is boom
    assert first_error(group, VoicekitError) is boom
    assert first_error(group, KeyError) is None
    assert not only_cancelled(group)
    assert one_line(group.exceptions[0]) == "bad option"
    assert one_line(boom, with_type=True) == "ConfigError: bad option"


def test_helpers_on_nested_groups_with_cancellations() -> None:
    cancelled: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                cancelled.append(exc)
                raise

    trio.run(main)
    stop = cancelled[0]
    real = OSError("disk full")
    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [stop, real]), stop])
    assert leaves(nested) == [stop, real, stop]
    assert sole_error(nested) is real
    assert first_error(nested, BaseException) is real
    assert only_cancelled(BaseExceptionGroup("only", [stop, BaseExceptionGroup("more", [stop])]))
    assert only_cancelled(stop) and not only_cancelled(real)
    two = ExceptionGroup("two", [KeyError("a"), ValueError("b")])
    assert sole_error(two) is two  # several real errors: nothing to pick
    assert first_error(two, ValueError) is two.exceptions[1]
    assert sole_error(real) is real and leaves(real) == [real]


def test_one_line_redacts_and_names_empty_errors() -> None:
    from voicekit.logging import _redactors, add_redactor

    def scrub(text: str) -> str:
        return text.replace("sk-secret", "sk-***")

    saved = list(_redactors)
    _redactors.clear()  # only this test's scrubber: plugins loaded by other tests register their own
    add_redactor(scrub)
    try:
        assert one_line(VoicekitError("key sk-secret refused")) == "key sk-*** refused"
        assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
        assert one_line(SystemExit("bye"), with_type=True) == "SystemExit: bye"
        assert one_line(ValueError("  \n  ")) == "ValueError"
        failed = errors.TranscriptionFailed(VoicekitError("lost sk-secret\nmore"), [], 3.0)
        assert str(failed) == "recognition stopped at 3.0 s of audio after 0 segment(s): lost sk-***"
    finally:
        _redactors[:] = saved


def test_errors_module_works_without_trio_loaded() -> None:
    loaded = _fresh("import json, sys\nfrom voicekit.errors import only_cancelled, sole_error, leaves\n"
                    "g = ExceptionGroup('g', [KeyError('k')])\n"
                    "print(json.dumps({'only': only_cancelled(g), 'sole': repr(sole_error(g)),"
                    " 'trio': 'trio' in sys.modules}))")
    assert loaded == {"only": False, "sole": "KeyError('k')", "trio": False}


# -- one home per helper ------------------------------------------------------------------------

SOURCES = [ROOT / "voicekit", *sorted((ROOT / "plugins").glob("*/voicekit_*")), ROOT / "examples"]
OLD_HELPERS = {"_only_cancelled", "_leaf", "_leaves", "_unwrap", "_one_line"}


def _source_files() -> list[Path]:
    return [p for root in SOURCES for p in sorted(root.rglob("*.py")) if "tests" not in p.parts]


def test_no_copies_of_the_exception_group_helpers() -> None:
    copies = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in OLD_HELPERS:
                copies.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert copies == [], "use voicekit.errors (leaves, only_cancelled, sole_error, first_error, one_line)"


def test_no_module_imports_another_modules_private_name() -> None:
    offenders = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module} {private}")
    assert offenders == []


def _doc_imports() -> list[tuple[str, str, str]]:
    """``(doc, module, name)`` for every ``from voicekit... import name`` in the docs' code blocks."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for block in text.split("```python")[1:]:
            code = block.split("```")[0]
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("voicekit"):
                    found += [(doc.name, node.module, a.name) for a in node.names]
    return found


def test_docs_import_public_names_only() -> None:
    """What ``voicekit`` exports, the docs import from ``voicekit``; nothing comes from a private module."""
    imports = _doc_imports()
    assert imports, "no imports found in the docs' python blocks"
    deep = [f"{doc}: from {module} import {name}" for doc, module, name in imports
            if module.startswith("voicekit.") and name in voicekit.__all__]
    private = [f"{doc}: from {module} import {name}" for doc, module, name in imports
               if name.startswith("_") or any(part.startswith("_") for part in module.split("."))]
    assert deep + private == []


def test_every_protocol_error_is_the_core_protocol_error() -> None:
    """One ProtocolError family: the browser protocol's and the DashScope protocols' errors are
    both ``voicekit.ProtocolError``, so one ``except`` catches a broken peer of any protocol."""
    import voicekit
    from voicekit.serve.protocol import ProtocolError as ServeProtocolError

    assert issubclass(ServeProtocolError, voicekit.ProtocolError)
    dashscope = pytest.importorskip("voicekit_dashscope.errors")
    assert issubclass(dashscope.ProtocolError, voicekit.ProtocolError)
    assert issubclass(dashscope.ProtocolError, dashscope.DashScopeError)
