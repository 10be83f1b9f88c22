"""Async client of DashScope file transcription: submit, poll, fetch results, cancel.

::

    client = FileTranscriber(region="singapore")          # key from DASHSCOPE_API_KEY
    files = await client.transcribe("fun-asr", ["https://…/call.wav"],
                                    FileOptions(diarization=True, speaker_count=2))
    for f in files:                                         # one per input URL, in order
        if f.ok: print(f.transcript.text)
        else:    print(f.outcome.code, f.outcome.message)  # this file failed; the others may not have

Polling follows the official SDK's back-off (1 s, doubling after every third poll, capped at
5 s) until ``deadline`` seconds have passed (then :class:`WaitTimeoutError`; a task still PENDING
is cancelled first). HTTP 503/504 on a poll are retried. Every non-JSON answer (an HTML error
page from a proxy, say) is a :class:`BadResponseError` naming the URL and the status.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs
import httpx
import trio

from voicekit.logging import get_logger
from voicekit_dashscope.auth import ApiKey, excerpt, resolve_api_key
from voicekit_dashscope.errors import DashScopeError, ServiceUnavailableError, http_error, transport_problem
from voicekit_dashscope.protocol.files import (
    TASKS_PATH,
    TRANSCRIPTION_PATH,
    BadResponseError,
    FileFailedError,
    FileOptions,
    FileOutcome,
    FileTranscript,
    TaskCanceledError,
    TaskInfo,
    TaskUnknownError,
    WaitTimeoutError,
    build_submit,
    parse_result_file,
    parse_task,
    poll_intervals,
)
from voicekit_dashscope.regions import DEFAULT_REGION, Endpoints, check_model_region

log = get_logger("voicekit.dashscope.files")


@attrs.frozen
class FileResult:
    """The outcome of one input file, with its transcript when it succeeded."""

    outcome: FileOutcome
    transcript: FileTranscript | None = None

    @property
    def ok(self) -> bool:
        return self.transcript is not None


def decode_json(resp: httpx.Response, what: str) -> Any:
    """The JSON body of ``resp``, or a :class:`BadResponseError` that says what came instead."""
    try:
        return resp.json()
    except ValueError:
        kind = resp.headers.get("content-type", "no content type")
        snippet = " ".join(excerpt(resp.text, 120).split())
        raise BadResponseError(f"{what}: HTTP {resp.status_code} answered {kind} instead of JSON "
                               f"({snippet!r}); check the base URL / region and any proxy in between",
                               status=resp.status_code) from None


def raise_for_error(resp: httpx.Response, data: Any, what: str) -> None:
    """Turn a DashScope error envelope into the matching typed error."""
    if resp.status_code == 200:
        return
    code = data.get("code") if isinstance(data, dict) else None
    message = (data.get("message") or data.get("msg")) if isinstance(data, dict) else None
    raise http_error(resp.status_code, code, message, what, auth_codes=("InvalidApiKey", "AccessDenied", None))


class FileTranscriber:
    """Client of ``/api/v1/services/audio/asr/transcription`` and ``/api/v1/tasks``."""

    def __init__(self, api_key: str | ApiKey | None = None, *, region: str = DEFAULT_REGION,
                 workspace: str | None = None, base_url: str | None = None, timeout: float = 30.0,
                 poll_first: float = 1.0, poll_cap: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        key = resolve_api_key(api_key)
        assert key is not None
        self._key = key
        self.region = region  # which models the key reaches (checked also when base_url is set)
        self.host_url = Endpoints.resolve(region, workspace=workspace, base_url=base_url).http_host
        self.workspace = workspace
        self.timeout = timeout
        self.poll_first = poll_first
        self.poll_cap = poll_cap
        self._transport = transport

    def __repr__(self) -> str:
        return f"FileTranscriber(host_url={self.host_url!r}, api_key={self._key!r})"

    def _headers(self, *, oss: bool = False, asynchronous: bool = False) -> dict[str, str]:
        h = {"Authorization": self._key.bearer(), "Accept": "application/json",
             "user-agent": "voicekit-dashscope/0.1"}
        if asynchronous:
            h["X-DashScope-Async"] = "enable"
        if oss:
            h["X-DashScope-OssResourceResolve"] = "enable"
        if self.workspace:
            h["X-DashScope-WorkSpace"] = self.workspace
        return h

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, transport=self._transport)

    async def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        url = self.host_url + path
        try:
            async with self._client() as client:
                resp = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"{what}: {url} unreachable: {transport_problem(exc)}") from None
        data = decode_json(resp, f"{what} ({url})")
        raise_for_error(resp, data, what)
        return data

    async def submit(self, model: str, urls: Sequence[str], options: FileOptions | None = None) -> TaskInfo:
        """Start a task; returns it PENDING. ``oss://`` URLs get the resolve header automatically."""
        check_model_region(model, self.region)
        body = build_submit(model, urls, options or FileOptions())
        oss = any(u.startswith("oss://") for u in urls)
        headers = self._headers(oss=oss, asynchronous=True) | {"Content-Type": "application/json; charset=utf-8"}
        data = await self._request("POST", TRANSCRIPTION_PATH, f"submit {model}",
                                   content=json.dumps(body, ensure_ascii=False).encode(), headers=headers)
        info = parse_task(data)
        log.info("file_task_submitted", task_id=info.task_id, model=model, files=len(urls))
        return info

    async def query(self, task_id: str) -> TaskInfo:
        data = await self._request("GET", f"{TASKS_PATH}/{task_id}", f"query task {task_id}",
                                   headers=self._headers())
        return parse_task(data)

    async def cancel(self, task_id: str) -> TaskInfo:
        """Cancel a PENDING task (the service refuses once it runs)."""
        data = await self._request("POST", f"{TASKS_PATH}/{task_id}/cancel", f"cancel task {task_id}",
                                   headers=self._headers())
        return parse_task(data) if isinstance(data.get("output"), dict) else TaskInfo(task_id, "CANCELED")

    async def wait(self, task_id: str, *, deadline: float | None = 3600.0) -> TaskInfo:
        """Poll until the task ends. :class:`WaitTimeoutError` after ``deadline`` seconds."""
        intervals = poll_intervals(self.poll_first, self.poll_cap)
        info: TaskInfo | None = None
        with trio.move_on_after(deadline if deadline is not None else float("inf")):
            while True:
                try:
                    info = await self.query(task_id)
                except ServiceUnavailableError as exc:
                    if exc.status not in (503, 504):
                        raise
                    log.warning("file_task_poll_retry", task_id=task_id, status=exc.status)
                else:
                    log.debug("file_task_poll", task_id=task_id, status=info.status)
                    if info.done:
                        return info
                await trio.sleep(next(intervals))
        state = info.status if info else "no answer"
        raise WaitTimeoutError(f"task {task_id} did not finish within {deadline:g} s (last state: {state}); "
                               "raise the deadline or query it later", task_id=task_id)

    async def fetch_result(self, url: str) -> FileTranscript:
        """GET a ``transcription_url`` (a signed URL: no Authorization header is sent)."""
        try:
            async with self._client() as client:
                resp = await client.get(url)
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"result file {url} unreachable: {transport_problem(exc)}") from None
        if resp.status_code != 200:
            raise DashScopeError(f"result file {url}: HTTP {resp.status_code} (result URLs expire after 24 h)",
                                 status=resp.status_code)
        return parse_result_file(decode_json(resp, f"result file {url}"))

    async def results(self, info: TaskInfo) -> list[FileResult]:
        """Per-file results of a finished task; raises when nothing usable came back."""
        if info.status == "UNKNOWN":
            raise TaskUnknownError(f"task {info.task_id} is unknown to the server: task ids expire after 24 h "
                                   "and only exist in the region that created them", task_id=info.task_id)
        if info.status == "CANCELED":
            raise TaskCanceledError(f"task {info.task_id} was cancelled", task_id=info.task_id)
        failures = [f for f in info.files if f.status != "SUCCEEDED"]
        if info.status != "SUCCEEDED" or not any(f.status == "SUCCEEDED" for f in info.files):
            if not failures:
                failures = [FileOutcome(None, "FAILED", code=info.code, message=info.message)]
            detail = "; ".join(f"{f.file_url or 'file'}: {f.code}: {f.message}" for f in failures)
            raise FileFailedError(f"task {info.task_id} failed: {detail}", failures, task_id=info.task_id)
        out = []
        for f in info.files:
            if f.status == "SUCCEEDED" and f.transcription_url:
                out.append(FileResult(f, await self.fetch_result(f.transcription_url)))
            else:
                log.warning("file_failed", task_id=info.task_id, file_url=f.file_url, code=f.code, message=f.message)
                out.append(FileResult(f))
        return out

    async def transcribe(self, model: str, urls: Sequence[str], options: FileOptions | None = None, *,
                         deadline: float | None = 3600.0) -> list[FileResult]:
        """Submit, wait and fetch. On a deadline a still-PENDING task is cancelled before raising."""
        info = await self.submit(model, urls, options)
        try:
            done = await self.wait(info.task_id, deadline=deadline)
        except WaitTimeoutError:
            with trio.CancelScope(shield=True):
                try:
                    await self.cancel(info.task_id)
                except DashScopeError:
                    pass  # already running: it will finish on the server
            raise
        return await self.results(done)
