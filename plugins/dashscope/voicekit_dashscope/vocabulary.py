"""Hotword vocabularies: the DashScope customization API (create, list, query, update, delete).

All five operations are ``POST {host}/api/v1/services/audio/asr/customization`` with
``{"model": "speech-biasing", "input": {"action": ..., ...}}``. Word lists are checked against the
documented limits *before* anything is sent (weights 1–5, ≤ 500 words, text length, prefix form),
so a mistake is reported with the word that broke the rule.

:class:`ManagedVocabulary` is what the ASR plugins use for their ``hotwords`` setting: it turns a
plain word list into a vocabulary id, reusing a list with the same content when one exists and
creating it otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import httpx
import trio

from voicekit.logging import get_logger
from voicekit_dashscope.auth import ApiKey, resolve_api_key, scrub
from voicekit_dashscope.errors import ServiceUnavailableError, VocabularyError, VocabularyValidationError
from voicekit_dashscope.regions import DEFAULT_REGION, Endpoints

log = get_logger("voicekit.dashscope.vocabulary")

MODEL = "speech-biasing"
MAX_WORDS = 500
MAX_LISTS = 10
MAX_NON_ASCII_CHARS = 15
MAX_ASCII_SEGMENTS = 7
PREFIX_RE = re.compile(r"^[0-9a-z]+$")
DEFAULT_PREFIX_MAX = 9  # "fewer than 10 characters"; one doc page says "at most 10" — configurable


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


def validate_words(words: Iterable[Hotword | Mapping[str, Any] | str], *, max_words: int = MAX_WORDS,
                   default_weight: int = 4) -> tuple[Hotword, ...]:
    """Turn strings or dicts into checked :class:`Hotword` values; raise on the first bad one."""
    out: list[Hotword] = []
    for w in words:
        hw = Hotword(w, default_weight) if isinstance(w, str) else (
            w if isinstance(w, Hotword) else Hotword.from_json(w))
        validate_text(hw.text)
        if isinstance(hw.weight, bool) or not isinstance(hw.weight, int) or not 1 <= hw.weight <= 5:
            raise VocabularyValidationError(
                f"hotword {hw.text!r} has weight {hw.weight!r}; weights are whole numbers from 1 to 5 (4 is usual)")
        if hw.lang is not None and not (isinstance(hw.lang, str) and re.fullmatch(r"[a-z]{2,3}", hw.lang)):
            raise VocabularyValidationError(f"hotword {hw.text!r} has lang {hw.lang!r}; use a code such as 'en'")
        out.append(hw)
    if not out:
        raise VocabularyValidationError("a vocabulary needs at least one hotword")
    if len(out) > max_words:
        raise VocabularyValidationError(
            f"a vocabulary holds at most {max_words} hotwords, got {len(out)}; split it or drop some")
    return tuple(out)


def validate_prefix(prefix: Any, *, max_len: int = DEFAULT_PREFIX_MAX) -> str:
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix) or len(prefix) > max_len:
        raise VocabularyValidationError(
            f"vocabulary prefix {prefix!r} is invalid: use 1 to {max_len} lowercase letters and digits")
    return prefix


def _info(d: Mapping[str, Any], vocabulary_id: str | None = None) -> VocabularyInfo:
    words = tuple(Hotword.from_json(w) for w in d.get("vocabulary") or ())
    vid = d.get("vocabulary_id") or vocabulary_id
    if not isinstance(vid, str):
        raise VocabularyError("vocabulary API answer has no vocabulary_id")
    return VocabularyInfo(vid, d.get("status", "OK"), d.get("gmt_create"), d.get("gmt_modified"),
                          d.get("target_model"), words)


InfoList = list[VocabularyInfo]


class VocabularyClient:
    """Async client of the vocabulary API (httpx, TLS except to loopback).

    ``transport`` lets tests inject an httpx transport; normally leave it unset.
    """

    def __init__(self, api_key: str | ApiKey | None = None, *, region: str = DEFAULT_REGION,
                 workspace: str | None = None, base_url: str | None = None, timeout: float = 15.0,
                 retries: int = 2, prefix_max_len: int = DEFAULT_PREFIX_MAX,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        key = resolve_api_key(api_key)
        assert key is not None
        self._key = key
        self.url = Endpoints.resolve(region, workspace=workspace, base_url=base_url).customization_url
        self.workspace = workspace
        self.timeout = timeout
        self.retries = retries
        self.prefix_max_len = prefix_max_len
        self._transport = transport

    def __repr__(self) -> str:
        return f"VocabularyClient(url={self.url!r}, api_key={self._key!r})"

    async def _call(self, action: str, **fields: Any) -> dict[str, Any]:
        body = {"model": MODEL, "input": {"action": action, **fields}, "parameters": {}}
        headers = {"Authorization": self._key.bearer(), "Content-Type": "application/json; charset=utf-8",
                   "Accept": "application/json", "user-agent": "voicekit-dashscope/0.1"}
        if self.workspace:
            headers["X-DashScope-WorkSpace"] = self.workspace
        attempt = 0
        while True:
            try:
                async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as client:
                    resp = await client.post(self.url, content=json.dumps(body, ensure_ascii=False).encode(),
                                             headers=headers)
                break
            except httpx.TransportError as exc:
                attempt += 1
                log.warning("vocabulary_call_retry", action=action, attempt=attempt, error=scrub(str(exc)))
                if attempt > self.retries:
                    raise ServiceUnavailableError(
                        f"vocabulary API at {self.url} unreachable after {attempt} attempts: {scrub(str(exc))}"
                    ) from None
                await trio.sleep(min(2.0, 0.25 * 2 ** attempt))
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200 or not isinstance(data, dict):
            code = data.get("code") if isinstance(data, dict) else None
            message = data.get("message") if isinstance(data, dict) else resp.text[:200]
            cls = ServiceUnavailableError if resp.status_code in (429, 503) else VocabularyError
            raise cls(f"vocabulary {action} failed: HTTP {resp.status_code} {code or ''}: {message}",
                      code=code, server_message=message, status=resp.status_code)
        output = data.get("output")
        if not isinstance(output, dict):
            raise VocabularyError(f"vocabulary {action}: answer without an 'output' object")
        log.debug("vocabulary_call", action=action, request_id=data.get("request_id"))
        return output

    async def create(self, target_model: str, prefix: str,
                     words: Sequence[Hotword | Mapping[str, Any] | str]) -> str:
        """Create a vocabulary for ``target_model``; returns its id (``vocab-<prefix>-<hex>``)."""
        validate_prefix(prefix, max_len=self.prefix_max_len)
        checked = validate_words(words)
        if not target_model:
            raise VocabularyValidationError("target_model is required: the ASR model that will use the list")
        out = await self._call("create_vocabulary", target_model=target_model, prefix=prefix,
                               vocabulary=[w.to_json() for w in checked])
        vid = out.get("vocabulary_id")
        if not isinstance(vid, str):
            raise VocabularyError("create_vocabulary answer has no vocabulary_id")
        return vid

    async def list(self, prefix: str | None = None, *, page_index: int = 0,
                   page_size: int = 10) -> InfoList:
        if page_index < 0 or page_size < 1:
            raise VocabularyValidationError("page_index must be >= 0 and page_size >= 1")
        fields: dict[str, Any] = {"page_index": page_index, "page_size": page_size}
        if prefix:
            fields["prefix"] = validate_prefix(prefix, max_len=self.prefix_max_len)
        out = await self._call("list_vocabulary", **fields)
        return [_info(d) for d in out.get("vocabulary_list") or ()]

    async def list_all(self, prefix: str | None = None) -> InfoList:
        found: InfoList = []
        page = 0
        while True:
            batch = await self.list(prefix, page_index=page, page_size=10)
            found.extend(batch)
            if len(batch) < 10:
                return found
            page += 1

    async def query(self, vocabulary_id: str) -> VocabularyInfo:
        out = await self._call("query_vocabulary", vocabulary_id=vocabulary_id)
        return _info(out, vocabulary_id)

    async def update(self, vocabulary_id: str, words: Sequence[Hotword | Mapping[str, Any] | str]) -> None:
        """Replace the whole word list (the API does not merge)."""
        checked = validate_words(words)
        await self._call("update_vocabulary", vocabulary_id=vocabulary_id,
                         vocabulary=[w.to_json() for w in checked])

    async def delete(self, vocabulary_id: str) -> None:
        await self._call("delete_vocabulary", vocabulary_id=vocabulary_id)

    async def wait_ready(self, vocabulary_id: str, *, timeout: float = 30.0, interval: float = 0.5) -> VocabularyInfo:
        """Poll until the list's status is ``OK`` (a new list may start ``UNDEPLOYED``)."""
        with trio.move_on_after(timeout):
            while True:
                info = await self.query(vocabulary_id)
                if info.status == "OK":
                    return info
                await trio.sleep(interval)
        raise VocabularyError(f"vocabulary {vocabulary_id} was not ready (status OK) after {timeout:g} s")


def content_prefix(target_model: str, words: Sequence[Hotword], prefix_len: int = DEFAULT_PREFIX_MAX) -> str:
    """A prefix derived from the model and word list: same content → same prefix."""
    blob = json.dumps([target_model, [w.to_json() for w in words]], sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    return ("vk" + digest)[:prefix_len]


class ManagedVocabulary:
    """Keeps one vocabulary in step with a word list, for the plugins' ``hotwords`` setting.

    The prefix is a hash of (model, words), so the same list on the next run finds the existing
    vocabulary instead of filling the 10-list quota.
    """

    def __init__(self, client: VocabularyClient, target_model: str,
                 words: Sequence[Hotword | Mapping[str, Any] | str]) -> None:
        self.client = client
        self.target_model = target_model
        self.words = validate_words(words)
        self.prefix = content_prefix(target_model, self.words, client.prefix_max_len)
        self.vocabulary_id: str | None = None

    async def ensure(self) -> str:
        if self.vocabulary_id is not None:
            return self.vocabulary_id
        for info in await self.client.list(self.prefix, page_size=10):
            if info.vocabulary_id.startswith(f"vocab-{self.prefix}-"):
                self.vocabulary_id = info.vocabulary_id
                log.info("vocabulary_reused", vocabulary_id=info.vocabulary_id)
                break
        else:
            self.vocabulary_id = await self.client.create(self.target_model, self.prefix, self.words)
            log.info("vocabulary_created", vocabulary_id=self.vocabulary_id, words=len(self.words))
        await self.client.wait_ready(self.vocabulary_id)
        return self.vocabulary_id
