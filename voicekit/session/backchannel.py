"""Backchannels: the "uh-huh", "yeah", "嗯", "はい" a listener says without taking the turn.

Lexicons per language; a text is a backchannel when it is made only of lexicon entries. Chinese
and Japanese are matched by characters (longest entry first), since they have no spaces.

:class:`TurnEvidence` decides whether a sound made over a reply is a real turn, on stable
evidence rather than on a first partial; the local semantic interruption policy and the
DashScope emulator's ``semantic_vad`` both use it.
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


class TurnEvidence:
    """Is a sound made over a reply a real turn, or a backchannel? Decided on stable evidence.

    A streaming recognizer's first partials of a short sound are often garbage ("Thou wilt" for
    "Okay.", "No, no," for "Yeah."), so one partial never decides. A text is *decisive* when it
    has ``min_words`` words (characters in Chinese and Japanese) and is not a backchannel. The
    sound is a real turn when

    * ``stable_partials`` partials in a row are decisive (a backchannel or a short partial in
      between starts the count again), or
    * its final transcript is decisive.

    The caller adds the duration rules (a minimum of speech before partials may decide, a
    maximum after which any speech is a turn), since only it knows the audio.
    """

    def __init__(self, min_words: int = 2, stable_partials: int = 2,
                 languages: tuple[str, ...] = ("en", "zh", "ja")) -> None:
        if min_words < 1 or stable_partials < 1:
            raise ValueError("min_words and stable_partials must be at least 1")
        self.min_words = min_words
        self.stable_partials = stable_partials
        self.languages = languages
        self.run = 0  # decisive partials in a row
        self.backchannel = False  # the latest text was a backchannel

    def reset(self) -> None:
        self.run = 0
        self.backchannel = False

    def decisive(self, text: str) -> bool:
        return word_count(text) >= self.min_words and not is_backchannel(text, self.languages)

    def partial(self, text: str) -> bool:
        """Count one partial; True once the partials are stable evidence of a real turn."""
        self.backchannel = is_backchannel(text, self.languages)
        self.run = self.run + 1 if self.decisive(text) else 0
        return self.run >= self.stable_partials

    def final(self, text: str) -> bool:
        """True when the final transcript is a real turn."""
        self.backchannel = is_backchannel(text, self.languages)
        return self.decisive(text)
