"""The emulator stays readable: few complex blocks, none very complex (issue 13).

Measured the way ``radon cc -s -n C`` does (every function, method and class; complexity counts
branches, loops, ``except`` clauses and boolean operators). Before the restructuring the emulator
had 28 blocks of complexity 11 or more in 4,232 lines (6.6 per 1,000 lines, the worst 21); h11 has
2.1 per 1,000 lines. A long ``if``/``elif`` chain over event types or paths belongs in a dispatch
table, a run of checks in small functions.
"""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit

import voicekit_dashscope_emulator

EMULATOR = Path(voicekit_dashscope_emulator.__file__).parent
COMPLEX = 11  # radon rank C and worse
MAX_PER_1000_LINES = 3.5
MAX_BLOCK = 20


def _measure() -> tuple[list[tuple[str, str, int]], int]:
    """(file, block, complexity) of the blocks at or above COMPLEX, and the emulator's line count."""
    complex_blocks: list[tuple[str, str, int]] = []
    lines = 0
    for path in sorted(EMULATOR.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines += len(source.splitlines())
        complex_blocks += [(path.name, getattr(b, "fullname", b.name), b.complexity) for b in cc_visit(source)
                           if b.complexity >= COMPLEX]
    return complex_blocks, lines


def test_the_emulator_has_few_complex_blocks() -> None:
    complex_blocks, lines = _measure()
    assert lines > 3000  # the whole emulator was measured
    per_1000 = len(complex_blocks) * 1000 / lines
    assert per_1000 <= MAX_PER_1000_LINES, (
        f"{len(complex_blocks)} blocks of complexity >= {COMPLEX} in {lines} lines ({per_1000:.1f} per 1,000; "
        f"at most {MAX_PER_1000_LINES}): {sorted(complex_blocks, key=lambda b: -b[2])}")


def test_no_emulator_block_is_very_complex() -> None:
    complex_blocks, _ = _measure()
    assert [b for b in complex_blocks if b[2] > MAX_BLOCK] == []
