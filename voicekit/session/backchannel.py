"""Backchannels: the "uh-huh", "yeah", "嗯", "はい" a listener says without taking the turn.

Lexicons per language; a text is a backchannel when it is made only of lexicon entries. Chinese
and Japanese are matched by characters (longest entry first), since they have no spaces.
"""

from __future__ import annotations

import re
import unicodedata

LEXICONS: dict[str, frozenset[str]] = {
    "en": frozenset({
        "uh huh", "uh-huh", "uhuh", "mm hmm", "mm-hmm", "mhm", "mmhm", "hmm", "hm", "mm", "mmm", "uh", "um",
        "yeah", "yes", "yep", "yup", "ya", "ok", "okay", "right", "sure", "i see", "got it", "alright",
        "all right", "cool", "wow", "oh", "ah", "aha", "really", "true", "exactly", "nice", "great",
        "good", "fine", "indeed", "totally", "of course", "makes sense", "go on", "i know",
    }),
    "zh": frozenset({
        "嗯", "恩", "嗯哼", "对", "是", "是的", "好", "好的", "哦", "噢", "喔", "啊", "呀", "行", "没错", "明白",
        "知道", "知道了", "了解", "懂", "懂了", "真的", "可以", "嗯嗯", "对的", "没问题", "确实", "是啊", "对啊",
    }),
    "ja": frozenset({
        "はい", "うん", "ええ", "そう", "そうですね", "そうそう", "なるほど", "へえ", "へー", "ほう", "ああ", "あー",
        "うんうん", "はいはい", "ですね", "確かに", "本当", "ほんと", "そうか", "そっか", "了解",
    }),
}

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def is_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch if (ch.isalnum() or ch.isspace() or ch in "'-") else " " for ch in text).strip()


def word_count(text: str) -> int:
    """Words in Latin scripts, characters in CJK scripts (punctuation ignored)."""
    cleaned = _clean(text)
    cjk = len(_CJK.findall(cleaned))
    latin = len(_CJK.sub(" ", cleaned).split())
    return cjk + latin


def is_backchannel(text: str, languages: tuple[str, ...] = ("en", "zh", "ja")) -> bool:
    """True when ``text`` is nothing but backchannel expressions (and not empty)."""
    cleaned = _clean(text)
    if not cleaned:
        return False
    entries = set().union(*(LEXICONS.get(lang, frozenset()) for lang in languages))
    if is_cjk(cleaned):
        return _covers("".join(cleaned.split()), {e for e in entries if is_cjk(e)})
    words = cleaned.replace("-", " ").split()
    latin = {e.replace("-", " ") for e in entries if not is_cjk(e)}
    longest = max((len(e.split()) for e in latin), default=1)
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            if " ".join(words[i : i + n]) in latin:
                i += n
                break
        else:
            return False
    return True


def _covers(text: str, entries: set[str]) -> bool:
    """Can ``text`` be split entirely into lexicon entries? (dynamic programming)"""
    ok = [True] + [False] * len(text)
    for end in range(1, len(text) + 1):
        ok[end] = any(ok[end - len(e)] and text[end - len(e) : end] == e for e in entries if len(e) <= end)
    return ok[-1]
