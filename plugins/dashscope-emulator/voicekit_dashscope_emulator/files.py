"""The emulated asynchronous file-transcription API (Fun-ASR, paraformer-v2, qwen3-asr-flash-filetrans).

Routes (all on the emulator's port):

* ``POST /api/v1/services/audio/asr/transcription`` (needs ``X-DashScope-Async: enable``) → a task;
* ``GET|POST /api/v1/tasks/{id}`` → its state; ``POST /api/v1/tasks/{id}/cancel`` (PENDING only);
* ``GET /results/{token}.json`` → a result file, without authentication, like the signed OSS URLs.

Each task moves PENDING → RUNNING → SUCCEEDED/FAILED on trio's clock (``pending_delay`` and at least
``running_delay`` seconds). While RUNNING each file is downloaded (http(s) URLs, or ``oss://`` keys of
the emulator's own upload store), decoded (WAV, any rate, any channel count), endpointed with
voicekit's VAD endpointer and transcribed by the emulator's engine. A file that cannot be fetched
or decoded fails alone (``InvalidFile.DownloadFailed`` / ``DECODE_ERROR``); the task succeeds when
at least one file did.

Diarization: :mod:`.speakers`; result documents and task views: :mod:`.results`; temporary
uploads: :mod:`.uploads`; which URLs are fetched: :mod:`.urls`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import numpy as np
import trio

from voicekit.asr.base import TranscriptResult
from voicekit.logging import get_logger
from voicekit_dashscope.protocol.files import FILE_MODELS, TASKS_PATH, UPLOADS_PATH, FileModel, file_model
from voicekit_dashscope.regions import emulator_refuses
from voicekit_dashscope_emulator.audio import decode_wav, resample_to_engine, transcribe_channel
from voicekit_dashscope_emulator.errors import Refused
from voicekit_dashscope_emulator.http import HttpRequest, HttpResponse
from voicekit_dashscope_emulator.results import (
    FileTask,
    ResultOptions,
    billed_seconds,
    channel_transcript,
    error_response,
    result_document,
    sentence,
    task_view,
)
from voicekit_dashscope_emulator.speakers import cluster_speakers, voice_print
from voicekit_dashscope_emulator.task import ENGINE_RATE
from voicekit_dashscope_emulator.uploads import UploadStore
from voicekit_dashscope_emulator.urls import UrlPolicy
from voicekit_dashscope_emulator.vocabulary import VocabularyStore

log = get_logger("voicekit.dashscope.emulator")


@attrs.frozen
class FilesSettings:
    pending_delay: float = 0.3  # seconds in PENDING (trio clock)
    running_delay: float = 0.3  # minimum seconds in RUNNING
    max_urls: int = 100  # 100 (older docs, SDK) or 1 (newest REST docs): unsure, so configurable
    all_failed_status: str = "FAILED"  # the docs' literal example says SUCCEEDED; the rule implies FAILED
    retention: float = 24 * 3600.0  # task ids and result URLs
    require_async_header: bool = True
    speaker_threshold: float = 1.0  # cosine distance that separates speakers when speaker_count is unset
    max_download_bytes: int = 2 * 1024 ** 3
    download_timeout: float = 10.0
    vad: str = "webrtc"  # or "energy"
    end_silence_ms: int = 500
    upload_max_file_mb: float = 1024.0  # the temporary store's per-file cap (S8: 1 GB)
    upload_policy_ttl: float = 300.0



@attrs.frozen
class _Submission:
    owner: str
    model: str
    urls: list[str]
    params: dict[str, Any]
    oss_ok: bool


# -- the service -------------------------------------------------------------------------------

class FileTranscriptionService:
    """Holds the tasks and result files; ``run`` must be started in the emulator's nursery."""

    region: str | None = None  # the region emulated (None: all); set by the emulator

    def __init__(self, *, engine: Any, owner: Callable[[str | None], str | None], base_url: Callable[[], str],
                 store: VocabularyStore, settings: FilesSettings | None = None,
                 uploads: Any = None, stats: dict[str, int] | None = None) -> None:
        self.engine = engine
        self.owner = owner
        self.base_url = base_url
        self.store = store
        self.settings = settings or FilesSettings()
        self.uploads = uploads  # an object with ``open(owner, key) -> bytes | None`` (oss:// files)
        self.url_policy = UrlPolicy()  # which http(s) URLs may be fetched (the emulator sets its own)
        self.stats = stats if stats is not None else {}
        self.tasks: dict[str, FileTask] = {}
        self.files: dict[str, tuple[bytes, float]] = {}
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Semaphore(2)
        self.compat: Any = None

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.uploads is not None and hasattr(self.uploads, "serve"):
                await nursery.start(self.uploads.serve)
            task_status.started()
            await trio.sleep_forever()

    def routes(self) -> list[tuple[str, str, Any, bool]]:
        """(method, path, handler, is_prefix) for the emulator's HTTP server."""
        from voicekit_dashscope.protocol.files import TRANSCRIPTION_PATH

        return [("POST", TRANSCRIPTION_PATH, self.submit, False), ("GET", TASKS_PATH + "/", self.query, True),
                ("POST", TASKS_PATH + "/", self.query, True), ("GET", "/results/", self.result_file, True)]

    # -- submit

    async def submit(self, request: HttpRequest) -> HttpResponse:
        try:
            sub = self._submission(request)
        except Refused as exc:
            return error_response(exc.status, exc.code, exc.message)
        now = dt.datetime.now(dt.UTC)
        task = FileTask(str(uuid.uuid4()), sub.owner, sub.model, sub.urls, sub.params, sub.oss_ok, now,
                        trio.current_time())
        self.tasks[task.task_id] = task
        self._count("file_tasks")
        assert self._nursery is not None, "FileTranscriptionService.run is not started"
        self._nursery.start_soon(self._work, task)
        return HttpResponse.json(200, {"request_id": str(uuid.uuid4()),
                                       "output": {"task_id": task.task_id, "task_status": "PENDING"}})

    def _submission(self, request: HttpRequest) -> _Submission:
        """The checked submission, in the order the service checks it; :class:`Refused` if refused."""
        owner = self.owner(request.header("authorization"))
        if owner is None:
            raise Refused("InvalidApiKey", "Invalid API-key provided.", 401)
        if self.settings.require_async_header and (request.header("x-dashscope-async") or "").lower() != "enable":
            raise Refused("AccessDenied", "current user api does not support synchronous calls", 403)
        try:
            body = request.json()
        except ValueError:
            raise Refused("InvalidParameter", "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise Refused("InvalidParameter", "request body must be a JSON object")
        model = body.get("model")
        if not model:
            raise Refused("BadRequest.EmptyModel", "Required parameter 'model' missing from request.")
        if not isinstance(body.get("input"), dict):
            raise Refused("BadRequest.EmptyInput", "Required parameter 'input' missing from request.")
        urls = self._urls(self._model(str(model)), str(model), body["input"])
        oss_ok = (request.header("x-dashscope-ossresourceresolve") or "").lower() == "enable"
        return _Submission(owner, str(model), urls, self._params(body, urls, oss_ok), oss_ok)

    def _model(self, model: str) -> FileModel:
        try:
            spec = file_model(model)
            if emulator_refuses(model, self.region):
                raise ValueError(model)
        except Exception:
            raise Refused("InvalidParameter", f"Model not found: {model} (file transcription knows "
                                                    f"{', '.join(FILE_MODELS)})") from None
        return spec

    def _urls(self, spec: FileModel, model: str, inp: dict[str, Any]) -> list[str]:
        if spec.single_url:
            url = inp.get("file_url")
            if not isinstance(url, str) or not url:
                raise Refused("InvalidParameter", f"{model} needs input.file_url (one string)")
            return [url]
        urls = inp.get("file_urls")
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
            raise Refused("InvalidParameter", f"{model} needs input.file_urls (an array of URLs)")
        if len(urls) > self.settings.max_urls:
            raise Refused("InvalidParameter",
                           f"too many file_urls: {len(urls)} (at most {self.settings.max_urls} per request)")
        return list(urls)

    @staticmethod
    def _params(body: dict[str, Any], urls: list[str], oss_ok: bool) -> dict[str, Any]:
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise Refused("InvalidParameter", "parameters must be an object")
        if any(u.startswith("oss://") for u in urls) and not oss_ok:
            raise Refused("InvalidParameter.DataInspection",
                           "oss:// URLs need the header X-DashScope-OssResourceResolve: enable")
        sc = params.get("speaker_count")
        if sc is not None and (not isinstance(sc, int) or not 2 <= sc <= 100):
            raise Refused("InvalidParameter", "speaker_count must be an integer from 2 to 100")
        return params

    # -- query / cancel

    async def query(self, request: HttpRequest) -> HttpResponse:
        owner = self.owner(request.header("authorization"))
        if owner is None:
            return error_response(401, "InvalidApiKey", "Invalid API-key provided.")
        rest = request.path[len(TASKS_PATH) + 1:].strip("/")
        task_id, _, action = rest.partition("/")
        task = self._visible_task(task_id, owner)
        if action == "cancel":
            return self._cancel(request, task_id, task)
        if action:
            return error_response(404, "NotFound", f"unknown task action {action!r}")
        self._count("file_queries")
        if task is None:
            return HttpResponse.json(200, {"request_id": str(uuid.uuid4()),
                                           "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
        return HttpResponse.json(200, task_view(task))

    def _visible_task(self, task_id: str, owner: str) -> FileTask | None:
        """The task, if it is ``owner``'s and still retained."""
        task = self.tasks.get(task_id)
        if task is None or task.owner != owner or trio.current_time() - task.submitted_at > self.settings.retention:
            return None
        return task

    def _cancel(self, request: HttpRequest, task_id: str, task: FileTask | None) -> HttpResponse:
        if request.method != "POST":
            return error_response(405, "MethodNotAllowed", "cancel is a POST")
        if task is None:
            return error_response(400, "InvalidParameter", f"task {task_id} does not exist")
        if task.status != "PENDING":
            return error_response(400, "InvalidParameter",
                                  f"only PENDING tasks can be cancelled (task is {task.status})")
        task.status = "CANCELED"
        task.ended = dt.datetime.now(dt.UTC)
        self._count("file_cancels")
        return HttpResponse.json(200, {"request_id": str(uuid.uuid4()),
                                       "output": {"task_id": task_id, "task_status": "CANCELED"}})

    async def result_file(self, request: HttpRequest) -> HttpResponse:
        token = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        item = self.files.get(token)
        if item is None or trio.current_time() > item[1]:
            return HttpResponse(404, b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>",
                                "application/xml")
        return HttpResponse(200, item[0])

    # -- work

    async def _work(self, task: FileTask) -> None:
        s = self.settings
        await trio.sleep(s.pending_delay)
        if task.status != "PENDING":
            return
        task.status = "RUNNING"
        task.scheduled = dt.datetime.now(dt.UTC)
        started = trio.current_time()
        task.results = [{"file_url": u, "subtask_status": "PENDING"} for u in task.urls]
        for i, url in enumerate(task.urls):
            task.results[i]["subtask_status"] = "RUNNING"
            try:
                async with self._lock:
                    doc, billed = await self._transcribe(task, url)
                token = secrets.token_hex(16)
                expires = trio.current_time() + s.retention
                self.files[token] = (json.dumps(doc, ensure_ascii=False).encode(), expires)
                sig = secrets.token_urlsafe(12)
                task.results[i] = {"file_url": url, "subtask_status": "SUCCEEDED",
                                   "transcription_url": f"{self.base_url()}/results/{token}.json?Expires="
                                                        f"{int(dt.datetime.now(dt.UTC).timestamp() + s.retention)}"
                                                        f"&Signature={sig}"}
                task.billed += billed
            except Refused as exc:
                task.results[i] = {"file_url": url, "subtask_status": "FAILED", "code": exc.code,
                                   "message": exc.message}
            except Exception as exc:  # an engine failure fails the file, not the emulator
                log.warning("emulator_file_error", error=f"{type(exc).__name__}: {exc}")
                task.results[i] = {"file_url": url, "subtask_status": "FAILED", "code": "InternalError",
                                   "message": f"{type(exc).__name__}: {exc}"}
        await trio.sleep(max(0.0, s.running_delay - (trio.current_time() - started)))
        ok = any(r["subtask_status"] == "SUCCEEDED" for r in task.results)
        task.status = "SUCCEEDED" if ok else s.all_failed_status
        task.ended = dt.datetime.now(dt.UTC)
        self._count("file_tasks_" + task.status.lower())

    async def _download(self, task: FileTask, url: str) -> bytes:
        if url.startswith("oss://"):
            data = self.uploads.open(task.owner, url[len("oss://"):]) if self.uploads is not None else None
            if data is None:
                raise Refused("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.")
            return bytes(data)
        if not re.match(r"https?://", url):
            raise Refused("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.")
        if not self.url_policy.allows(url):
            self._count("file_urls_refused")
            raise Refused("InvalidFile.DownloadFailed", self.url_policy.refusal(url))
        try:
            async with httpx.AsyncClient(timeout=self.settings.download_timeout, follow_redirects=False,
                                         trust_env=False) as client, client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise Refused("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.")
                buf = bytearray()
                async for chunk in resp.aiter_bytes():
                    buf += chunk
                    if len(buf) > self.settings.max_download_bytes:
                        raise Refused("InvalidFile.TooLarge", "The audio file is larger than 2 GB.")
                return bytes(buf)
        except httpx.HTTPError:
            raise Refused("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.") from None

    def _options(self, task: FileTask, spec: FileModel, channel_count: int) -> ResultOptions:
        """What ``task``'s parameters ask of a file with ``channel_count`` channels."""
        p = task.params
        single = spec.single_url
        return ResultOptions(single_url=single, channels=_channels(p, channel_count),
                             language=p.get("language") if single else _first_hint(p),
                             hotwords=self._hotwords(task), diarize=bool(p.get("diarization_enabled")) and not single,
                             speaker_count=p.get("speaker_count"),
                             drop_fillers=bool(p.get("disfluency_removal_enabled")),
                             words=not single or bool(p.get("enable_words")),
                             context=p.get("text") if single else None)

    def _hotwords(self, task: FileTask) -> tuple[Any, ...]:
        """The words of the task's vocabulary; a list for another model or owner is silently ignored, like
        the service."""
        vid = task.params.get("vocabulary_id")
        v = self.store.get(vid, task.owner) if isinstance(vid, str) and vid else None
        return () if v is None else tuple(v.words)

    def _engine_language(self) -> str | None:
        caps: Any = getattr(self.engine, "capabilities", None)
        language: str | None = caps and caps.languages[0]
        return language

    def _speakers(self, samples: np.ndarray, finals: list[TranscriptResult], opts: ResultOptions) -> list[int | None]:
        if not opts.diarize:
            return [None] * len(finals)
        prints = [voice_print(samples[int((r.start or 0) * ENGINE_RATE):int((r.end or 0) * ENGINE_RATE)])
                  for r in finals]
        return list(cluster_speakers(prints, opts.speaker_count, self.settings.speaker_threshold))

    async def _transcribe(self, task: FileTask, url: str) -> tuple[dict[str, Any], int]:
        spec = file_model(task.model)
        audio, rate = decode_wav(await self._download(task, url))
        opts = self._options(task, spec, audio.shape[1])
        transcripts: list[dict[str, Any]] = []
        next_id = 0 if spec.single_url else 1
        for ch in opts.channels:
            samples = resample_to_engine(audio[:, ch], rate)
            finals = await transcribe_channel(self.engine, samples, vad=self.settings.vad,
                                              end_silence_ms=self.settings.end_silence_ms, language=opts.language,
                                              hotwords=tuple(h.text for h in opts.hotwords), context=opts.context)
            sentences = [sentence(r, next_id + k, opts, speaker, self._engine_language)
                         for k, (r, speaker) in enumerate(zip(finals, self._speakers(samples, finals, opts),
                                                              strict=True))]
            next_id += len(sentences)
            transcripts.append(channel_transcript(ch, sentences, spec.single_url))
        duration_ms = round(audio.shape[0] * 1000 / rate)
        doc = result_document(url, spec.single_url, audio.shape[1], rate, duration_ms, transcripts)
        return doc, billed_seconds(spec.single_url, transcripts, duration_ms)


def _channels(params: dict[str, Any], channel_count: int) -> list[int]:
    """The ``channel_id`` list (default ``[0]``), each an index into the file's channels."""
    channels = params.get("channel_id") or [0]
    if not isinstance(channels, list) or any(not isinstance(c, int) or not 0 <= c < channel_count
                                             for c in channels):
        raise Refused("InvalidParameter", f"channel_id {channels} does not fit a {channel_count}-channel file")
    return channels


def _first_hint(params: dict[str, Any]) -> Any:
    """``language_hints[0]`` (Fun-ASR and Paraformer take a list of hints; the emulator uses the first)."""
    hints = params.get("language_hints") or []
    return hints[0] if hints else None


def add_file_routes(emulator: Any, settings: FilesSettings | dict[str, Any] | None) -> FileTranscriptionService:
    """Create the service for a :class:`~voicekit_dashscope_emulator.app.DashScopeEmulator` and route it."""
    if not isinstance(settings, FilesSettings):
        settings = FilesSettings(**dict(settings or {}))
    uploads = UploadStore(max_file_mb=settings.upload_max_file_mb, policy_ttl=settings.upload_policy_ttl,
                          host=emulator.host)
    service = FileTranscriptionService(engine=emulator.engine, owner=emulator._owner,
                                       base_url=lambda: f"http://{emulator._hostport()}", store=emulator.store,
                                       settings=settings, stats=emulator.stats, uploads=uploads)

    async def policy(request: HttpRequest) -> HttpResponse:
        owner = emulator._owner(request.header("authorization"))
        if owner is None:
            return error_response(401, "InvalidApiKey", "Invalid API-key provided.")
        return await uploads.policy_handler(request, owner)

    emulator.server.add_route("GET", UPLOADS_PATH, policy)
    # the synchronous audio APIs (qwen3-asr-flash, Omni over HTTP) share the engine and settings
    from voicekit_dashscope_emulator.compat import add_compat_routes

    service.url_policy = getattr(emulator, "url_policy", service.url_policy)
    service.compat = add_compat_routes(emulator, settings.vad)
    service.compat.url_policy = service.url_policy
    for method, path, handler, prefix in service.routes():
        if prefix:
            emulator.server.add_prefix_route(method, path, handler)
        else:
            emulator.server.add_route(method, path, handler)
    return service
