"""The shape of the test folders (issue 13): tests grouped by layer, helpers in one place, no test
module importing another.

pytest runs in its default ``prepend`` import mode and the test folders have no ``__init__.py``:
each folder is put on ``sys.path`` and a test module is imported by its bare file name. So two test
files of the same name in different folders collide, and a test that imports another test module
only works while both sit in one folder, and ties helpers to another file's tests. The DashScope
plugin's helpers live in its
``testkit`` package (``plugins/dashscope/tests/testkit``), imported as ``testkit.<module>``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHSCOPE_TESTS = ROOT / "plugins" / "dashscope" / "tests"
DASHSCOPE_LAYERS = {"protocol", "client", "emulator", "sdk", "cli", "journeys"}



def _test_roots() -> list[Path]:
    return [ROOT / "tests", *sorted(p for p in (ROOT / "plugins").glob("*/tests") if p.is_dir())]


def _modules() -> list[Path]:
    """Every Python file of the test folders imported by its bare name (not inside a package)."""
    out = []
    for root in _test_roots():
        for path in root.rglob("*.py"):
            if path.name in ("conftest.py", "__init__.py") or (path.parent / "__init__.py").exists():
                continue
            out.append(path)
    return sorted(out)


def _test_files(roots: list[Path] | None = None) -> list[Path]:
    return sorted(p for root in (roots or _test_roots()) for p in root.rglob("test_*.py"))


def test_the_scan_sees_the_test_folders() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _test_files()}
    assert "plugins/dashscope/tests/protocol/test_realtime_protocol.py" in names
    assert "tests/session/test_session.py" in names


def test_module_names_are_unique() -> None:
    """Bare module names must not collide (pytest's prepend mode imports them as top-level modules)."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        by_name[path.stem].append(path.relative_to(ROOT).as_posix())
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert clashes == {}, "rename one of each pair: test modules are imported by their bare names"


def _test_imports(roots: list[Path]) -> set[str]:
    """Every import of a test module by a test module under ``roots``, as "importer: imported"."""
    found = set()
    for path in _test_files(roots):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found |= {f"{path.relative_to(ROOT).as_posix()}: {name.split('.')[0]}" for name in names
                      if name.split(".")[0].startswith("test_")}
    return found


def test_no_plugin_test_module_imports_another() -> None:
    """Shared helpers go in a helper module (``testkit`` in the DashScope plugin), not in a test file.
    (Checked on the plugins' tests; ``tests/serve`` still has such imports.)"""
    plugin_tests = sorted(p for p in (ROOT / "plugins").glob("*/tests") if p.is_dir())
    assert sorted(_test_imports(plugin_tests)) == [], "move what these tests share into a helper module"


def test_dashscope_tests_are_grouped_by_layer_with_helpers_in_testkit() -> None:
    top = {p.name for p in DASHSCOPE_TESTS.iterdir() if not p.name.startswith((".", "__pycache__"))}
    assert top == {"conftest.py", "testkit", *DASHSCOPE_LAYERS}, "tests go in a layer folder, helpers in testkit/"
    assert (DASHSCOPE_TESTS / "testkit" / "__init__.py").is_file()
    helpers = [p.relative_to(DASHSCOPE_TESTS).as_posix() for p in DASHSCOPE_TESTS.rglob("*.py")
               if not p.name.startswith("test_") and p.name != "conftest.py" and p.parent.name != "testkit"]
    assert helpers == [], "helper modules of the DashScope tests belong in testkit/"
    assert not list((DASHSCOPE_TESTS / "testkit").glob("test_*.py")), "testkit holds helpers, not tests"
