"""The emulated vocabulary (hotword) API: ``POST /api/v1/services/audio/asr/customization``.

Lists are kept in memory per API key, with the documented quotas (10 lists per account, 500
words per list), id form ``vocab-<prefix>-<32 hex>``, and the DashScope error body
``{"code", "message", "request_id"}`` (HTTP 400 for validation errors — the exact status of the
real service is not documented). ``deploy_delay`` makes new lists start ``UNDEPLOYED`` for that
many seconds, to exercise polling code.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import trio

from voicekit_dashscope.errors import VocabularyValidationError
from voicekit_dashscope.protocol.vocabulary import (
    DEFAULT_PREFIX_MAX,
    MAX_LISTS,
    MAX_WORDS,
    Hotword,
    request_error,
    validate_page,
    validate_prefix,
    validate_words,
)
from voicekit_dashscope_emulator.errors import Refused
from voicekit_dashscope_emulator.http import HttpRequest, HttpResponse


@attrs.define
class StoredVocabulary:
    vocabulary_id: str
    owner: str
    target_model: str
    words: tuple[Hotword, ...]
    created: dt.datetime
    modified: dt.datetime
    ready_at: float  # trio time when it becomes OK

    def status(self) -> str:
        return "OK" if trio.current_time() >= self.ready_at else "UNDEPLOYED"


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


class VocabularyStore:
    def __init__(self, *, max_lists: int = MAX_LISTS, max_words: int = MAX_WORDS,
                 prefix_max_len: int = DEFAULT_PREFIX_MAX, deploy_delay: float = 0.0,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.max_lists = max_lists
        self.max_words = max_words
        self.prefix_max_len = prefix_max_len
        self.deploy_delay = deploy_delay
        self._now = now or (lambda: dt.datetime.now(dt.UTC).replace(microsecond=0))
        self.lists: dict[str, StoredVocabulary] = {}

    def get(self, vocabulary_id: str, owner: str | None = None) -> StoredVocabulary | None:
        v = self.lists.get(vocabulary_id)
        if v is None or (owner is not None and v.owner != owner):
            return None
        return v

    def _owned(self, owner: str, vocabulary_id: Any) -> StoredVocabulary:
        if not isinstance(vocabulary_id, str) or not vocabulary_id:
            raise Refused("InvalidParameter", "Missing required parameter 'input.vocabulary_id'")
        v = self.get(vocabulary_id, owner)
        if v is None:
            raise Refused("InvalidParameter", f"vocabulary {vocabulary_id} does not exist")
        return v

    def _words(self, raw: Any) -> tuple[Hotword, ...]:
        if not isinstance(raw, list):
            raise Refused("InvalidParameter", "input.vocabulary must be a list of {text, weight}")
        try:
            words: tuple[Hotword, ...] = validate_words(raw, max_words=self.max_words)
        except VocabularyValidationError as exc:
            code_msg = "vocabulary is too large" if len(raw) > self.max_words else str(exc)
            raise Refused("InvalidParameter", code_msg) from None
        except (TypeError, ValueError) as exc:
            raise Refused("InvalidParameter", f"bad vocabulary item: {exc}") from None
        return words

    def handle(self, owner: str, inp: dict[str, Any]) -> dict[str, Any]:
        """The ``output`` of one call; :class:`Refused` for a refused one."""
        action = inp.get("action")
        run = self._actions().get(action) if isinstance(action, str) else None
        if run is None:
            raise Refused("InvalidParameter", f"unknown action {action!r}")
        return run(owner, inp)

    def _actions(self) -> dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]]:
        return {"create_vocabulary": self._create, "list_vocabulary": self._list,
                "query_vocabulary": self._query, "update_vocabulary": self._update,
                "delete_vocabulary": self._delete}

    def _prefix(self, raw: Any) -> str:
        try:
            prefix: str = validate_prefix(raw, max_len=self.prefix_max_len)
        except VocabularyValidationError:
            raise Refused("InvalidParameter",
                           f"prefix should be english letter and number and not longer than "
                           f"{self.prefix_max_len} characters") from None
        return prefix

    def _create(self, owner: str, inp: dict[str, Any]) -> dict[str, Any]:
        target = inp.get("target_model")
        if not isinstance(target, str) or not target:
            raise Refused("InvalidParameter", "Missing required parameter 'input.target_model'")
        prefix = self._prefix(inp.get("prefix"))
        words = self._words(inp.get("vocabulary"))
        if sum(1 for v in self.lists.values() if v.owner == owner) >= self.max_lists:
            raise Refused("InvalidParameter",
                           f"vocabulary quota exceeded: at most {self.max_lists} lists per account")
        vid = f"vocab-{prefix}-{uuid.uuid4().hex}"
        now = self._now()
        self.lists[vid] = StoredVocabulary(vid, owner, target, words, now, now,
                                           trio.current_time() + self.deploy_delay)
        return {"vocabulary_id": vid}

    def _list(self, owner: str, inp: dict[str, Any]) -> dict[str, Any]:
        wanted = inp.get("prefix")
        page_index = inp.get("page_index", 0)
        page_size = inp.get("page_size", 10)
        try:
            validate_page(page_index, page_size)
        except VocabularyValidationError as exc:
            raise Refused("InvalidParameter", str(exc)) from None
        mine = [v for v in self.lists.values() if v.owner == owner
                and (not wanted or v.vocabulary_id.startswith(f"vocab-{wanted}-"))]
        mine.sort(key=lambda v: v.created, reverse=True)
        page = mine[page_index * page_size:(page_index + 1) * page_size]
        return {"vocabulary_list": [
            {"gmt_create": _stamp(v.created), "gmt_modified": _stamp(v.modified), "status": v.status(),
             "vocabulary_id": v.vocabulary_id} for v in page]}

    def _query(self, owner: str, inp: dict[str, Any]) -> dict[str, Any]:
        v = self._owned(owner, inp.get("vocabulary_id"))
        return {"gmt_create": _stamp(v.created), "gmt_modified": _stamp(v.modified), "status": v.status(),
                "target_model": v.target_model, "vocabulary": [w.to_json() for w in v.words]}

    def _update(self, owner: str, inp: dict[str, Any]) -> dict[str, Any]:
        v = self._owned(owner, inp.get("vocabulary_id"))
        v.words = self._words(inp.get("vocabulary"))
        v.modified = self._now()
        return {}

    def _delete(self, owner: str, inp: dict[str, Any]) -> dict[str, Any]:
        v = self._owned(owner, inp.get("vocabulary_id"))
        del self.lists[v.vocabulary_id]
        return {}

    async def http_handler(self, request: HttpRequest, owner: str) -> HttpResponse:
        request_id = str(uuid.uuid4())
        try:
            try:
                body = request.json()
            except ValueError:
                raise Refused("InvalidParameter", "request body is not valid JSON") from None
            refusal = request_error(body)
            if refusal is not None:
                raise Refused("InvalidParameter", refusal)
            output = self.handle(owner, body["input"])
        except Refused as exc:
            return HttpResponse.json(exc.status, {"code": exc.code, "message": exc.message,
                                                  "request_id": request_id})
        return HttpResponse.json(200, {"output": output, "usage": {"count": 1}, "request_id": request_id})
