"""Hotword vocabularies: the DashScope customization API (create, list, query, update, delete).

All five operations are ``POST {host}/api/v1/services/audio/asr/customization`` with
``{"model": "speech-biasing", "input": {"action": ..., ...}}``; the shapes, limits and checks are in
:mod:`voicekit_dashscope.protocol.vocabulary` (shared with the emulator). Word lists are checked
*before* anything is sent, so a mistake is reported with the word that broke the rule.

:class:`ManagedVocabulary` is what the ASR plugins use for their ``hotwords`` setting: it turns a
plain word list into a vocabulary id, reusing a list with the same content when one exists and
creating it otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import trio

from voicekit.logging import get_logger
from voicekit_dashscope.auth import ApiKey, resolve_api_key
from voicekit_dashscope.errors import (
    ServiceUnavailableError,
    VocabularyError,
    VocabularyValidationError,
    transport_problem,
)
from voicekit_dashscope.protocol.vocabulary import (
    DEFAULT_PREFIX_MAX,
    MAX_LISTS,
    MAX_WORDS,
    MODEL,
    PAGE_SIZE,
    Hotword,
    VocabularyInfo,
    content_prefix,
    parse_answer,
    parse_info,
    request_body,
    validate_page,
    validate_prefix,
    validate_text,
    validate_words,
)
from voicekit_dashscope.regions import DEFAULT_REGION, Endpoints

__all__ = ["MAX_LISTS", "MAX_WORDS", "MODEL", "Hotword", "ManagedVocabulary", "VocabularyClient", "VocabularyInfo",
           "content_prefix", "validate_prefix", "validate_text", "validate_words"]

log = get_logger("voicekit.dashscope.vocabulary")

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
        body = request_body(action, **fields)
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
                problem = transport_problem(exc)
                log.warning("vocabulary_call_retry", action=action, attempt=attempt, error=problem)
                if attempt > self.retries:
                    raise ServiceUnavailableError(
                        f"vocabulary API at {self.url} unreachable after {attempt} attempts: {problem}"
                    ) from None
                await trio.sleep(min(2.0, 0.25 * 2 ** attempt))
        try:
            data = resp.json()
        except ValueError:
            data = None
        output = parse_answer(action, resp.status_code, data, resp.text)
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
        validate_page(page_index, page_size)
        fields: dict[str, Any] = {"page_index": page_index, "page_size": page_size}
        if prefix:
            fields["prefix"] = validate_prefix(prefix, max_len=self.prefix_max_len)
        out = await self._call("list_vocabulary", **fields)
        return [parse_info(d) for d in out.get("vocabulary_list") or ()]

    async def list_all(self, prefix: str | None = None) -> InfoList:
        found: InfoList = []
        page = 0
        while True:
            batch = await self.list(prefix, page_index=page, page_size=PAGE_SIZE)
            found.extend(batch)
            if len(batch) < PAGE_SIZE:
                return found
            page += 1

    async def query(self, vocabulary_id: str) -> VocabularyInfo:
        out = await self._call("query_vocabulary", vocabulary_id=vocabulary_id)
        return parse_info(out, vocabulary_id)

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
