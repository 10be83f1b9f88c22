"""The JSGF checker that runs before a grammar reaches PocketSphinx (no decoder needed)."""

from __future__ import annotations

import pytest
from voicekit_pocketsphinx import GrammarError, check_grammar, parse_keywords

from voicekit.errors import ASRError

HEAD = "#JSGF V1.0;\ngrammar robot;\n"


def test_words_rules_and_lines() -> None:
    g = check_grammar(
        HEAD
        + "/* a comment\n   over two lines */\n"
        + "public <move> = go <direction> [<distance>] {move};  // trailing comment\n"
        + "<direction> = /0.7/ forward | /0.3/ \"backward\";\n"
        + "<distance> = (one | two)+ meters*;\n"
    )
    assert g.name == "robot"
    assert g.public_rules == ("move",)
    assert g.rules == ("move", "direction", "distance")
    assert [(w.text, w.line) for w in g.words] == [
        ("go", 5), ("forward", 6), ("backward", 6), ("one", 7), ("two", 7), ("meters", 7),
    ]


def test_null_and_void_are_known_rules() -> None:
    g = check_grammar(HEAD + "public <a> = stop | <NULL> | <VOID>;\n")
    assert [w.text for w in g.words] == ["stop"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"the JSGF grammar is empty"),
        ("grammar x;\npublic <a> = go;\n", r"line 1: the grammar does not start with the JSGF header"),
        ("#JSGF V1.0\ngrammar x;\n", r"line 1: the header must end with ';'"),
        (HEAD + "public <a> = go forward\n", r"line 3: the grammar ends in the middle of a rule"),
        (HEAD + "public <a> = go;\n<b> = stop\n;\n<a> = halt;\n",
         r"line 6: rule <a> is defined twice \(first on line 3\)"),
        (HEAD + "<a> = go;\n", r"line 3: the grammar has no public rule"),
        (HEAD + "\npublic <a> = go <where>;\n", r"line 4: rule <where> is used but never defined"),
        (HEAD + "public <a> = go <other.rule>;\n", r"line 3: <other.rule> refers to another grammar"),
        (HEAD + "import <other.*>;\npublic <a> = go;\n", r"line 3: 'import' is not supported"),
        (HEAD + "public <a> = go | ;\n", r"line 3: expected a word, <rule>, \( \) or \[ \] but found ';'"),
        (HEAD + "public <a> = [go;\n", r"line 3: expected '\]' but found ';'"),
        (HEAD + "public <a> = go /x/ stop;\n", r"line 3: a '/' that is neither a comment nor a /weight/"),
        (HEAD + "public <a> = go /2/ stop;\n", r"line 3: a /weight/ in the middle of an alternative"),
        (HEAD + "/* never closed\npublic <a> = go;\n", r"line 3: a /\* comment is never closed"),
        (HEAD + "public <a = go;\n", r"line 3: a rule name is missing its closing '>'"),
        (HEAD + "public go = stop;\n", r"line 3: expected a rule name like <command> but found 'go'"),
    ],
)
def test_mistakes_name_the_line_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(GrammarError, match=message) as info:
        check_grammar(text)
    assert isinstance(info.value, ASRError)
    assert ";" in str(info.value)  # every message goes on to say what to do


def test_keywords_with_and_without_thresholds() -> None:
    kws = parse_keywords(("Forward", "turn  left /1e-25/"), 1e-20)
    assert [(k.phrase, k.threshold) for k in kws] == [("forward", 1e-20), ("turn left", 1e-25)]
    for bad, message in [("/1e-5/", "not a phrase"), ("go /0/", "threshold '0'"), ("go /2/", "threshold '2'")]:
        with pytest.raises(ASRError, match=message):
            parse_keywords((bad,), 1e-20)
