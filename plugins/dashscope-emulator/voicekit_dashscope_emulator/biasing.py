"""How the emulator honours hotwords, visibly: near-misses become the hotword's exact spelling.

A local engine knows nothing of a vocabulary, so the emulator post-edits its text: any run of
words whose letters are close enough to a hotword (``difflib`` similarity, a looser bar for a
heavier weight) is replaced by the hotword as written — "moon shine" → "Moonshine" for a
hotword "Moonshine". Hotwords whose ``lang`` differs from the task's language hint are ignored,
as the service documents. Word timings are then derived from the edited text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence

from voicekit_dashscope.protocol.vocabulary import Hotword

_WORD = re.compile(r"[\w'’-]+", re.UNICODE)
_PUNCT = "，。！？、,.!?;:；："


def _norm(s: str) -> str:
    return re.sub(r"[\W_]+", "", s.lower())


def threshold(weight: int) -> float:
    """Similarity needed for a hotword of this weight (1 → 0.9, 4 → 0.75, 5 → 0.7)."""
    return 0.95 - 0.05 * max(1, min(5, weight))


def active_hotwords(words: Sequence[Hotword], language_hint: str | None) -> list[Hotword]:
    return [w for w in words if language_hint is None or w.lang is None or w.lang == language_hint]


def apply_hotwords(text: str, hotwords: Sequence[Hotword]) -> str:
    """``text`` with each hotword (heaviest, then longest first) replacing the run of words most like it."""
    if not hotwords or not text:
        return text
    for hw in sorted(hotwords, key=lambda h: (-h.weight, -len(h.text))):
        text = _apply_one(text, hw)
    return text


def _apply_one(text: str, hw: Hotword) -> str:
    target = _norm(hw.text)
    if not target:
        return text
    best: tuple[float, int, int] | None = None
    bar = threshold(hw.weight)
    for cand, a, b in _windows(text, max(1, len(hw.text.split()))):
        score = difflib.SequenceMatcher(None, cand, target).ratio()
        if score >= bar and (best is None or score > best[0]):
            best = (score, a, b)
    if best is None:
        return text
    _, a, b = best
    spelled: str = hw.text
    return text[:a] + spelled + text[b:]


def _windows(text: str, n: int) -> Iterator[tuple[str, int, int]]:
    """(normalized letters, start, end) of every run of ``n - 1`` to ``n + 1`` words of ``text``."""
    tokens = list(_WORD.finditer(text))
    for size in {max(1, n - 1), n, n + 1}:
        for i in range(0, len(tokens) - size + 1):
            window = tokens[i:i + size]
            cand = _norm("".join(m.group() for m in window))
            if cand:
                yield cand, window[0].start(), window[-1].end()


def split_words(text: str) -> list[tuple[str, str]]:
    """(word, punctuation after it) pairs."""
    out: list[tuple[str, str]] = []
    for raw in text.split():
        word = raw.rstrip(_PUNCT)
        punct = raw[len(word):]
        if word:
            out.append((word, punct))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + punct)
    return out


def spread(words: list[tuple[str, str]], begin_ms: int, end_ms: int) -> list[tuple[int, int, str, str]]:
    """Word timings spread over ``[begin_ms, end_ms]`` in proportion to word length."""
    if not words:
        return []
    total = sum(len(w) + 1 for w, _ in words)
    span = max(0, end_ms - begin_ms)
    out = []
    pos = 0
    for w, p in words:
        a = begin_ms + span * pos // total
        pos += len(w) + 1
        b = begin_ms + span * pos // total
        out.append((a, b, w, p))
    return out
