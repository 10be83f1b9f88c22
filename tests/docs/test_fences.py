"""Every code block of the docs says what it is, so none escapes the docs test unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")


def fences(text: str) -> list[tuple[int, str]]:
    """(line, info string) of every opening fence."""
    found: list[tuple[int, str]] = []
    open_fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if not m:
            continue
        if open_fence is None:
            open_fence = m.group(1)
            found.append((number, m.group(2).strip()))
        elif m.group(1)[0] == open_fence[0] and len(m.group(1)) >= len(open_fence) and not m.group(2).strip():
            open_fence = None
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_has_a_language(path: Path) -> None:
    bare = [line for line, info in fences(path.read_text()) if not info]
    assert not bare, (
        f"{path.relative_to(ROOT)}: code blocks without a language at lines {bare}; use python, sh or "
        "console for what runs, text (or json, toml…) for what does not (see docs/testing.md)"
    )


def test_fence_finder() -> None:
    assert fences("```sh\nls\n```\n\n```\nout\n```\n") == [(1, "sh"), (5, "")]
