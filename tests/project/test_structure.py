"""Guard rails on the shape of the source (issue 13): no function above cyclomatic complexity 25
(as radon counts it) and no source file above 700 lines, in the core, every plugin package and the
examples.

The places other work is still splitting are listed in ``ALLOWED_*`` below. The lists can only
shrink: an entry that is no longer over its limit fails :func:`test_allowed_entries_are_still_over`,
so whoever brings a place under the bar deletes its entry in the same change.
"""

from __future__ import annotations

from pathlib import Path

from radon.complexity import add_inner_blocks, cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parents[2]

MAX_COMPLEXITY = 25
MAX_LINES = 700

# Functions over MAX_COMPLEXITY, as "path::Class.method" (or "path::function"), still being split.
ALLOWED_COMPLEXITY: set[str] = set()

# Files over MAX_LINES, still being split.
ALLOWED_LINES: set[str] = set()


def _source_files() -> list[Path]:
    roots = [ROOT / "voicekit", *sorted((ROOT / "plugins").glob("*/voicekit_*")), ROOT / "examples"]
    return sorted(p for root in roots if root.is_dir() for p in root.rglob("*.py"))


def _measure() -> tuple[dict[str, int], dict[str, int]]:
    """(complexity of every function over the limit, line count of every file over the limit)."""
    complex_: dict[str, int] = {}
    long: dict[str, int] = {}
    for path in _source_files():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_LINES:
            long[rel] = lines
        # functions, methods, and the functions and classes nested in them
        for block in add_inner_blocks(cc_visit(text)):
            if isinstance(block, Function) and block.complexity > MAX_COMPLEXITY:
                complex_[f"{rel}::{block.fullname}"] = block.complexity
    return complex_, long


def test_the_scan_sees_the_sources() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in _source_files()}
    assert "voicekit/chooser.py" in files
    assert "plugins/pocketsphinx/voicekit_pocketsphinx/jsgf.py" in files
    assert not any("/tests/" in f for f in files)


def test_no_function_is_too_complex() -> None:
    complex_, _ = _measure()
    over = {k: v for k, v in complex_.items() if k not in ALLOWED_COMPLEXITY}
    assert over == {}, (f"cyclomatic complexity above {MAX_COMPLEXITY} (radon); split these functions "
                        "(rules as data tables, one helper per case)")


def test_no_source_file_is_too_long() -> None:
    _, long = _measure()
    over = {k: v for k, v in long.items() if k not in ALLOWED_LINES}
    assert over == {}, f"source files above {MAX_LINES} lines; split them by concern"


def test_allowed_entries_are_still_over() -> None:
    """The allowances only shrink: once a place is under its limit, delete its entry."""
    complex_, long = _measure()
    assert sorted(ALLOWED_COMPLEXITY - set(complex_)) == []
    assert sorted(ALLOWED_LINES - set(long)) == []
