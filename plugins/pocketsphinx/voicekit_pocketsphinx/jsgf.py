"""A small JSGF checker, run before the grammar reaches PocketSphinx.

PocketSphinx's own parser reports only "Failed to parse JSGF" to Python (its line numbers go to
the C log and are not even reset between grammars). This module reads the grammar text itself,
so a mistake is reported with its line number and a fix, and it lists every word with the line
it is on, so words missing from the pronunciation dictionary can be named precisely.

It covers the JSGF subset PocketSphinx accepts from a string: the ``#JSGF`` header, ``grammar``
name, rules (``public`` or not) made of words, quoted words, rule references, ``( )`` groups,
``[ ]`` optional parts, alternatives with optional ``/weights/``, ``*`` and ``+`` repeats and
``{tags}``. ``import`` statements are rejected: PocketSphinx resolves them as files on disk, which
a grammar given as text cannot rely on; inline the rules instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

from voicekit.errors import ASRError


class GrammarError(ASRError):
    """A JSGF grammar that PocketSphinx cannot use (syntax, undefined rule, unknown word)."""


@attrs.frozen
class Token:
    kind: str  # header, word, quoted, rule, tag, weight, punct, keyword
    text: str
    line: int


@attrs.frozen
class GrammarWord:
    text: str
    line: int


@attrs.frozen
class Grammar:
    """What the checker learned: the grammar's name, its rules and every word (with its line)."""

    name: str
    public_rules: tuple[str, ...]
    rules: tuple[str, ...]
    words: tuple[GrammarWord, ...]


_SPECIAL_RULES = {"NULL", "VOID"}
_KEYWORDS = {"grammar", "import", "public"}

# The lexical elements, one named group each, tried in this order at every position. ``open_*``
# (an element that is never closed), ``slash`` and ``other`` are mistakes (see _MISTAKES).
_ELEMENTS = r"""
    (?P<newline>\n)
  | (?P<space>[^\S\n]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<open_comment>/\*)
  | (?P<rule><[^>\n]*>)                           | (?P<open_rule><)
  | (?P<quoted>"[^"\n]*")                         | (?P<open_quote>")
  | (?P<tag>\{[^}]*\})                            | (?P<open_tag>\{)
  | (?P<weight>/\s*(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*/) | (?P<slash>/)
  | (?P<punct>[=;|()\[\]*+])
  | (?P<word>[^\s=;|()\[\]*+<>"{}/]+)
  | (?P<other>.)
"""
#: The first token may also be the ``#JSGF ...;`` header (elsewhere ``#`` is part of a word).
_FIRST = re.compile(r"(?P<header>\#[^;\n]*;) | (?P<open_header>\#) |" + _ELEMENTS, re.VERBOSE | re.DOTALL)
_NEXT = re.compile(_ELEMENTS, re.VERBOSE | re.DOTALL)

#: Mistakes: element → (problem, fix); ``{text}`` is what was found.
_MISTAKES = {
    "open_header": ("the header must end with ';'", "write it as '#JSGF V1.0;'"),
    "open_comment": ("a /* comment is never closed", "end it with */"),
    "open_rule": ("a rule name is missing its closing '>'", "write rule names as <name>"),
    "open_quote": ("a quoted word is never closed", 'close it with "'),
    "open_tag": ("a {{tag}} is never closed", "close it with }"),
    "slash": ("a '/' that is neither a comment nor a /weight/",
              "weights are numbers between slashes, e.g. /0.5/ forward"),
    "other": ("unexpected character {text!r}", "remove it"),
}
#: Tokens: element → the token's text, taken from the match.
_TOKENS: dict[str, Callable[[re.Match[str]], str]] = {
    "header": lambda m: m[0],
    "rule": lambda m: m[0][1:-1].strip(),
    "quoted": lambda m: m[0][1:-1],
    "tag": lambda m: m[0][1:-1],
    "weight": lambda m: m["number"],
    "punct": lambda m: m[0],
    "word": lambda m: m[0],
}
#: Elements whose line breaks move the line count on (a weight's do not, as before).
_MULTILINE = {"newline", "comment", "tag"}


def _fail(line: int, problem: str, fix: str) -> GrammarError:
    return GrammarError(f"JSGF grammar line {line}: {problem}; {fix}")


def tokenize(text: str) -> list[Token]:
    """Split JSGF text into tokens, dropping comments and keeping line numbers."""
    out: list[Token] = []
    pos, line = 0, 1
    while pos < len(text):
        m = (_NEXT if out else _FIRST).match(text, pos)
        assert m is not None and m.lastgroup is not None  # `other` matches any character
        kind = m.lastgroup
        if kind in _MISTAKES:
            problem, fix = _MISTAKES[kind]
            raise _fail(line, problem.format(text=m[0]), fix)
        if kind in _TOKENS:
            out.append(_token(kind, _TOKENS[kind](m), m[0], line))
        if kind in _MULTILINE:
            line += m[0].count("\n")
        pos = m.end()
    return out


def _token(kind: str, value: str, found: str, line: int) -> Token:
    if kind == "rule" and (not value or any(ch.isspace() for ch in value)):
        raise _fail(line, f"{found!r} is not a rule name",
                    "rule names are one word between < and >, e.g. <direction>")
    if kind == "word" and value in _KEYWORDS:
        kind = "keyword"
    return Token(kind, value, line)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.pos = 0
        self.words: list[GrammarWord] = []
        self.refs: list[Token] = []

    def peek(self) -> Token | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def last_line(self) -> int:
        return self.toks[-1].line if self.toks else 1

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise _fail(self.last_line(), "the grammar ends in the middle of a rule",
                        "finish the rule and end it with ';'")
        self.pos += 1
        return tok

    def expect(self, text: str, fix: str) -> Token:
        tok = self.take()
        if tok.text != text or tok.kind not in ("punct", "keyword"):
            raise _fail(tok.line, f"expected {text!r} but found {tok.text!r}", fix)
        return tok

    def grammar(self) -> Grammar:
        head = self.peek()
        if head is None or head.kind != "header":
            raise _fail(head.line if head else 1, "the grammar does not start with the JSGF header",
                        "begin it with the line '#JSGF V1.0;'")
        if not head.text.startswith("#JSGF"):
            raise _fail(head.line, f"{head.text!r} is not a JSGF header", "write '#JSGF V1.0;'")
        self.pos += 1
        self.expect("grammar", "the line after the header names the grammar: 'grammar commands;'")
        name = self.take()
        if name.kind != "word":
            raise _fail(name.line, f"{name.text!r} is not a grammar name", "write 'grammar commands;'")
        self.expect(";", "end the grammar name with ';'")
        public: list[str] = []
        defined: dict[str, int] = {}
        while (tok := self.peek()) is not None:
            if tok.kind == "keyword" and tok.text == "import":
                raise _fail(tok.line, "'import' is not supported in a grammar given as text",
                            "copy the imported rules into this grammar")
            is_public = tok.kind == "keyword" and tok.text == "public"
            if is_public:
                self.pos += 1
            rule = self.take()
            if rule.kind != "rule":
                raise _fail(rule.line, f"expected a rule name like <command> but found {rule.text!r}",
                            "each rule reads '<name> = words ;' (add 'public' to the ones to listen for)")
            if rule.text in defined:
                raise _fail(rule.line, f"rule <{rule.text}> is defined twice (first on line "
                            f"{defined[rule.text]})", "give the second rule another name or merge them")
            defined[rule.text] = rule.line
            if is_public:
                public.append(rule.text)
            self.expect("=", f"write '<{rule.text}> = ... ;'")
            self.alternatives()
            self.expect(";", f"end rule <{rule.text}> with ';'")
        if not public:
            raise _fail(self.last_line(), "the grammar has no public rule",
                        "mark the rule(s) to listen for with 'public', e.g. 'public <command> = ...;'")
        for ref in self.refs:
            if ref.text in _SPECIAL_RULES:
                continue
            if "." in ref.text:
                raise _fail(ref.line, f"<{ref.text}> refers to another grammar",
                            "copy that rule into this grammar")
            if ref.text not in defined:
                raise _fail(ref.line, f"rule <{ref.text}> is used but never defined",
                            f"define it with '<{ref.text}> = ... ;' or fix the name")
        return Grammar(name.text, tuple(public), tuple(defined), tuple(self.words))

    def alternatives(self) -> None:
        while True:
            tok = self.peek()
            if tok is not None and tok.kind == "weight":
                self.pos += 1
            self.sequence()
            tok = self.peek()
            if tok is not None and tok.kind == "punct" and tok.text == "|":
                self.pos += 1
                continue
            return

    def sequence(self) -> None:
        count = 0
        while (tok := self.peek()) is not None:
            if tok.kind == "punct" and tok.text in ";|)]":
                break
            self.item()
            count += 1
        if count == 0:
            tok = self.peek()
            line = tok.line if tok else self.last_line()
            found = f"found {tok.text!r}" if tok else "the grammar ends"
            raise _fail(line, f"expected a word, <rule>, ( ) or [ ] but {found}",
                        "every alternative needs at least one word (use <NULL> for nothing)")

    def item(self) -> None:
        tok = self.take()
        if tok.kind == "word" or tok.kind == "quoted":
            if not tok.text.strip():
                raise _fail(tok.line, "an empty quoted word", "remove the \"\" or put a word in it")
            self.words.append(GrammarWord(tok.text, tok.line))
        elif tok.kind == "rule":
            self.refs.append(tok)
        elif tok.kind == "punct" and tok.text in "([":
            close = ")" if tok.text == "(" else "]"
            self.alternatives()
            self.expect(close, f"close the {tok.text!r} opened on line {tok.line} with {close!r}")
        else:
            what = "a /weight/ in the middle of an alternative" if tok.kind == "weight" \
                else f"unexpected {tok.text!r}"
            raise _fail(tok.line, what,
                        "weights go at the start of an alternative, e.g. '/2/ forward | /1/ back'"
                        if tok.kind == "weight" else "check the rule's syntax near it")
        while (nxt := self.peek()) is not None:
            if nxt.kind == "tag" or (nxt.kind == "punct" and nxt.text in "*+"):
                self.pos += 1
            else:
                break


def check_grammar(text: str) -> Grammar:
    """Parse JSGF text; raise :class:`GrammarError` naming the line and the fix if it is wrong."""
    if not text.strip():
        raise GrammarError("the JSGF grammar is empty; give it as text starting with '#JSGF V1.0;'")
    return _Parser(tokenize(text)).grammar()
