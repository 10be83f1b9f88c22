"""Intent templates: a tiny pattern language compiled to regular expressions.

Syntax, matched case-insensitively against normalized text (punctuation removed)::

    go {direction:forward|backward} {distance:number} [meter|meters]
    set a timer for {amount:number} (minute|minutes|second|seconds)
    call {name}

* ``{name}`` — a free slot: one or more words (as few as possible);
* ``{name:number}`` — digits or English number words, parsed to an int or float;
* ``{name:a|b|c}`` — one of the listed words or phrases;
* ``(a|b)`` — one of the alternatives, required; ``[a|b]`` — optional.

Matching ignores case, but a free slot keeps the casing the recognizer gave ("call Alice" gives
``{"name": "Alice"}``); a choice slot gives the alternative as written in the template.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import attrs

from voicekit.errors import ConfigError
from voicekit.handlers.numbers import NUMBER_WORDS, parse_number

_TOKEN = re.compile(
    r"\{(?P<slot>[a-zA-Z_]\w*)(?::(?P<kind>[^}]*))?\}"  # {slot} or {slot:kind}
    r"|\[(?P<opt>[^\]]*)\]"  # [optional|alternatives]
    r"|\((?P<req>[^)]*)\)"  # (required|alternatives)
    r"|(?P<word>[^\s\[\](){}]+)"  # a literal word
)
_FIRST_NUMBER_WORD = "|".join(sorted(NUMBER_WORDS - {"and", "point", "half", "a", "an"}, key=len, reverse=True))
_ANY_NUMBER_WORD = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_NUMBER_RE = rf"(?:\d+(?:[.,]\d+)?|(?:{_FIRST_NUMBER_WORD})(?: (?:{_ANY_NUMBER_WORD}))*)"


def normalize(text: str, *, keep_case: bool = False) -> str:
    """Lower case (unless ``keep_case``), hyphens to spaces, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    if not keep_case:
        text = text.lower()
    text = text.replace("-", " ")
    text = "".join(ch if (ch.isalnum() or ch.isspace() or ch in "'.") else " " for ch in text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points only
    return " ".join(text.split())


def _alts(body: str) -> str:
    parts = [normalize(p) for p in body.split("|")]
    if any(not p for p in parts):
        raise ConfigError(f"empty alternative in ({body}) — write every choice out")
    return "(?:" + "|".join(re.escape(p) for p in parts) + ")"


@attrs.frozen
class Template:
    source: str
    regex: re.Pattern[str]
    slots: dict[str, str]  # name -> kind ("text", "number", "choice")
    choices: dict[str, dict[str, str]] = attrs.field(factory=dict)  # choice slot -> {lowered: as written}

    def match(self, normalized: str) -> dict[str, Any] | None:
        """Slots of ``normalized`` (see :func:`normalize`; case is ignored, and kept in free slots),
        or None when the template does not match."""
        m = self.regex.fullmatch(normalized)
        if m is None:
            return None
        out: dict[str, Any] = {}
        for name, kind in self.slots.items():
            value = m.group(name)
            if kind == "number":
                num = parse_number(value.lower())
                if num is None:
                    return None
                out[name] = num
            elif kind == "choice":
                out[name] = self.choices[name].get(value.lower(), value.lower())
            else:
                out[name] = value
        return out


def compile_template(source: str) -> Template:
    pieces: list[str] = []
    slots: dict[str, str] = {}
    choices: dict[str, dict[str, str]] = {}
    pos = 0
    for m in _TOKEN.finditer(source):
        if source[pos : m.start()].strip():
            raise ConfigError(f"cannot parse intent template {source!r} near {source[pos:m.start()]!r}")
        pos = m.end()
        if m.group("slot"):
            name, kind = m.group("slot"), (m.group("kind") or "").strip()
            if name in slots:
                raise ConfigError(f"slot {{{name}}} appears twice in template {source!r}")
            if not kind:
                slots[name] = "text"
                pieces.append(f"(?P<{name}>.+?)")
            elif kind == "number":
                slots[name] = "number"
                pieces.append(f"(?P<{name}>{_NUMBER_RE})")
            else:
                slots[name] = "choice"
                choices[name] = {normalize(p): normalize(p, keep_case=True) for p in kind.split("|")}
                pieces.append(f"(?P<{name}>{_alts(kind)})")
        elif m.group("opt") is not None:
            pieces.append(_alts(m.group("opt")) + "?")
        elif m.group("req") is not None:
            pieces.append(_alts(m.group("req")))
        else:
            word = normalize(m.group("word"))
            if word:
                pieces.append(re.escape(word))
    if source[pos:].strip():
        raise ConfigError(f"cannot parse intent template {source!r} near {source[pos:]!r}")
    if not pieces:
        raise ConfigError("an intent template cannot be empty")
    # optional pieces carry their own leading space so "a [b] c" matches "a c" and "a b c"
    regex = ""
    for piece in pieces:
        if piece.endswith(")?"):
            regex += f"(?: {piece[:-1]})?" if regex else f"(?:{piece[:-1]} )?"
        else:
            regex += (" " if regex and not regex.endswith(" )?") else "") + piece
    return Template(source, re.compile(regex, re.IGNORECASE), slots, choices)
