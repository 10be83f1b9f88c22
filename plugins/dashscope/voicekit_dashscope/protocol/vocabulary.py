"""The DashScope vocabulary (hotword) API, as values and pure functions.

All five actions are ``POST {host}`` :data:`PATH` with ``{"model": "speech-biasing", "input":
{"action": ..., ...}, "parameters": {}}``; the answer is ``{"output": {...}, "request_id": ...}``
or an error body ``{"code", "message", "request_id"}``. Word lists are checked against the
documented limits (weights 1–5, at most 500 words, text length, prefix form) by
:func:`validate_words` and :func:`validate_prefix`, which both the client
(:mod:`voicekit_dashscope.vocabulary`) and the emulator (:mod:`voicekit_dashscope.emulator.vocabulary`)
use, so a mistake is reported with the word that broke the rule before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from voicekit_dashscope.errors import ServiceUnavailableError, VocabularyError, VocabularyValidationError
from voicekit_dashscope.regions import CUSTOMIZATION_PATH

PATH = CUSTOMIZATION_PATH
MODEL = "speech-biasing"
ACTIONS = ("create_vocabulary", "list_vocabulary", "query_vocabulary", "update_vocabulary", "delete_vocabulary")
MAX_WORDS = 500
MAX_LISTS = 10
MAX_NON_ASCII_CHARS = 15
MAX_ASCII_SEGMENTS = 7
MAX_WEIGHT = 5
PREFIX_RE = re.compile(r"^[0-9a-z]+$")
LANG_RE = re.compile(r"[a-z]{2,3}")
DEFAULT_PREFIX_MAX = 9  # "fewer than 10 characters"; one doc page says "at most 10" — configurable
PAGE_SIZE = 10


@attrs.frozen
class Hotword:
    text: str
    weight: int = 4
    lang: str | None = None
    target_lang: str | None = None  # Gummy only
    translation: str | None = None  # Gummy only

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "weight": self.weight}
        for k in ("lang", "target_lang", "translation"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Hotword:
        if not isinstance(d, Mapping) or "text" not in d:
            raise VocabularyValidationError(f"a hotword must be an object with 'text' and 'weight', got {d!r}")
        return cls(d["text"], d.get("weight", 4), d.get("lang"), d.get("target_lang"), d.get("translation"))


@attrs.frozen
class VocabularyInfo:
    vocabulary_id: str
    status: str = "OK"
    gmt_create: str | None = None
    gmt_modified: str | None = None
    target_model: str | None = None
    words: tuple[Hotword, ...] = ()


# -- validation --------------------------------------------------------------------------------

def validate_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise VocabularyValidationError(f"hotword text must be a non-empty string, got {text!r}")
    if text.isascii():
        if len(text.split()) > MAX_ASCII_SEGMENTS:
            raise VocabularyValidationError(
                f"hotword {text!r} has {len(text.split())} words; at most {MAX_ASCII_SEGMENTS} "
                "space-separated words are allowed — shorten it")
    elif len(text) > MAX_NON_ASCII_CHARS:
        raise VocabularyValidationError(
            f"hotword {text!r} is {len(text)} characters; at most {MAX_NON_ASCII_CHARS} are allowed "
            "when it contains non-ASCII characters — shorten it")
    return text


def validate_hotword(w: Hotword | Mapping[str, Any] | str, *, default_weight: int = 4) -> Hotword:
    """One word as a checked :class:`Hotword` (a string gets ``default_weight``)."""
    hw = Hotword(w, default_weight) if isinstance(w, str) else (w if isinstance(w, Hotword) else Hotword.from_json(w))
    validate_text(hw.text)
    if isinstance(hw.weight, bool) or not isinstance(hw.weight, int) or not 1 <= hw.weight <= MAX_WEIGHT:
        raise VocabularyValidationError(
            f"hotword {hw.text!r} has weight {hw.weight!r}; weights are whole numbers from 1 to 5 (4 is usual)")
    if hw.lang is not None and not (isinstance(hw.lang, str) and LANG_RE.fullmatch(hw.lang)):
        raise VocabularyValidationError(f"hotword {hw.text!r} has lang {hw.lang!r}; use a code such as 'en'")
    return hw


def validate_words(words: Iterable[Hotword | Mapping[str, Any] | str], *, max_words: int = MAX_WORDS,
                   default_weight: int = 4) -> tuple[Hotword, ...]:
    """Turn strings or dicts into checked :class:`Hotword` values; raise on the first bad one."""
    out = tuple(validate_hotword(w, default_weight=default_weight) for w in words)
    if not out:
        raise VocabularyValidationError("a vocabulary needs at least one hotword")
    if len(out) > max_words:
        raise VocabularyValidationError(
            f"a vocabulary holds at most {max_words} hotwords, got {len(out)}; split it or drop some")
    return out


def validate_prefix(prefix: Any, *, max_len: int = DEFAULT_PREFIX_MAX) -> str:
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix) or len(prefix) > max_len:
        raise VocabularyValidationError(
            f"vocabulary prefix {prefix!r} is invalid: use 1 to {max_len} lowercase letters and digits")
    return prefix


def validate_page(page_index: Any, page_size: Any) -> None:
    if (isinstance(page_index, bool) or isinstance(page_size, bool) or not isinstance(page_index, int)
            or not isinstance(page_size, int) or page_index < 0 or page_size < 1):
        raise VocabularyValidationError("page_index must be >= 0 and page_size >= 1")


def content_prefix(target_model: str, words: Sequence[Hotword], prefix_len: int = DEFAULT_PREFIX_MAX) -> str:
    """A prefix derived from the model and word list: same content → same prefix."""
    blob = json.dumps([target_model, [w.to_json() for w in words]], sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    return ("vk" + digest)[:prefix_len]


# -- requests and answers ----------------------------------------------------------------------

def request_body(action: str, **fields: Any) -> dict[str, Any]:
    """The JSON body of one call."""
    if action not in ACTIONS:
        raise ValueError(f"unknown vocabulary action {action!r}; use one of {', '.join(ACTIONS)}")
    return {"model": MODEL, "input": {"action": action, **fields}, "parameters": {}}


def request_error(body: Any) -> str | None:
    """Why a request body is not a vocabulary call (the service's words), or ``None``."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return "Missing required parameter 'input'"
    if body.get("model") != MODEL:
        return f"model must be {MODEL!r}"
    return None


def parse_answer(action: str, status: int, data: Any, text: str = "") -> dict[str, Any]:
    """The ``output`` object of an answer, or the typed error it stands for (429/503 retryable)."""
    if status != 200 or not isinstance(data, dict):
        code = data.get("code") if isinstance(data, dict) else None
        message = data.get("message") if isinstance(data, dict) else text[:200]
        cls = ServiceUnavailableError if status in (429, 503) else VocabularyError
        raise cls(f"vocabulary {action} failed: HTTP {status} {code or ''}: {message}",
                  code=code, server_message=message, status=status)
    output = data.get("output")
    if not isinstance(output, dict):
        raise VocabularyError(f"vocabulary {action}: answer without an 'output' object")
    return output


def parse_info(d: Mapping[str, Any], vocabulary_id: str | None = None) -> VocabularyInfo:
    """A list's description from a ``query_vocabulary`` output or a ``vocabulary_list`` item."""
    words = tuple(Hotword.from_json(w) for w in d.get("vocabulary") or ())
    vid = d.get("vocabulary_id") or vocabulary_id
    if not isinstance(vid, str):
        raise VocabularyError("vocabulary API answer has no vocabulary_id")
    return VocabularyInfo(vid, d.get("status", "OK"), d.get("gmt_create"), d.get("gmt_modified"),
                          d.get("target_model"), words)
