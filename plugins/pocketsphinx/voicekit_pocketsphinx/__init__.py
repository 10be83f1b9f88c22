"""PocketSphinx for voicekit (entry point ``pocketsphinx`` in ``voicekit.asr``)."""

from voicekit_pocketsphinx.engine import Keyword, PocketSphinxASR, PocketSphinxStream, parse_keywords
from voicekit_pocketsphinx.jsgf import Grammar, GrammarError, GrammarWord, check_grammar

__all__ = [
    "Grammar",
    "GrammarError",
    "GrammarWord",
    "Keyword",
    "PocketSphinxASR",
    "PocketSphinxStream",
    "check_grammar",
    "parse_keywords",
]
