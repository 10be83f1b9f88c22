"""English number words to numbers ("twenty five" → 25, "three point five" → 3.5, "10" → 10)."""

from __future__ import annotations

import math

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "a": 1, "an": 1,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TENS) | frozenset(_SCALES) | {"and", "point", "half"}


def parse_number(text: str) -> int | float | None:
    """Parse digits or English number words; None if ``text`` is not a number."""
    words = text.lower().replace("-", " ").split()
    if not words:
        return None
    if len(words) == 1:
        digits = _digits(words[0])
        if digits is not None:
            return digits
    if words[-1] == "half" and len(words) >= 2 and words[-2] in ("and", "a"):
        return _and_a_half(words)
    if "point" in words:
        return _decimal(words)
    return _whole(words)


def _digits(word: str) -> int | float | None:
    """``"1,200"`` → 1200, ``"2.5"`` → 2.5; None if the word is not written in digits.

    Only finite numbers count: Python reads "nan", "inf" and "1e400" as floats, a person does not
    say them as numbers.
    """
    w = word.replace(",", "")
    try:
        return int(w)
    except ValueError:
        pass
    try:
        value = float(w)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _and_a_half(words: list[str]) -> int | float | None:
    """``"two and a half"`` → 2.5 (the last two words are "and"/"a" and "half")."""
    base = parse_number(" ".join(words[:-2])) if len(words) > 2 else 0
    return None if base is None else base + 0.5


def _decimal(words: list[str]) -> float | None:
    """``"three point one four"`` → 3.14: a whole number, "point", then single digits."""
    i = words.index("point")
    whole = parse_number(" ".join(words[:i])) if i else 0
    digits = [_UNITS.get(w) for w in words[i + 1 :]]
    if whole is None or not digits or any(d is None or d > 9 for d in digits):
        return None
    return float(f"{int(whole)}." + "".join(str(d) for d in digits))


def _whole(words: list[str]) -> int | None:
    """``"two hundred and five thousand"`` → 205000; None at the first word that is not a number."""
    total = current = 0
    seen = False
    for w in words:
        if w == "and" and seen:
            continue
        if w in _UNITS and not (w in ("a", "an") and seen):
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w in _SCALES:
            total += max(current, 1) * _SCALES[w]
            current = 0
        else:
            return None
        seen = True
    return total + current
