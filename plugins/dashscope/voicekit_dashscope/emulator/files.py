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

Diarization (``diarization_enabled``) is a simple, honest method, not a neural model: every
utterance gets a voice print — the mean and spread of its log energies in 24 mel-spaced bands,
with the utterance's mean level removed — and utterances are grouped by average-linkage
agglomerative clustering on cosine distance, into ``speaker_count`` groups when given, else until
the closest groups are further apart than ``speaker_threshold``. Speakers are numbered in order of
first appearance. It separates clearly different voices and recording conditions; it is not meant
for overlapping or similar voices.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
import secrets
import uuid
import wave
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import numpy as np
import trio

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.asr.feed import forward
from voicekit.audio.frame import AudioFrame
from voicekit.logging import get_logger
from voicekit.vad.endpointer import Endpointer, EndpointerConfig
from voicekit_dashscope.emulator.biasing import apply_hotwords, split_words, spread
from voicekit_dashscope.emulator.http import HttpRequest, HttpResponse
from voicekit_dashscope.emulator.task import ENGINE_RATE, TaskSettings, make_engine_vad
from voicekit_dashscope.emulator.vocabulary import VocabularyStore
from voicekit_dashscope.protocol.files import FILE_MODELS, TASKS_PATH, UPLOADS_PATH, file_model
from voicekit_dashscope.regions import emulator_refuses

log = get_logger("voicekit.dashscope.emulator")
FILLERS = frozenset({"um", "uh", "er", "ah", "erm", "hmm", "mm", "嗯", "呃", "啊"})


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


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _error(status: int, code: str, message: str) -> HttpResponse:
    return HttpResponse.json(status, {"request_id": str(uuid.uuid4()), "code": code, "message": message})


class FileError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UrlPolicy:
    """Which ``http(s)`` file URLs the emulator fetches: loopback ones (``localhost``, 127.0.0.0/8,
    ``[::1]``) and those under one of ``prefixes`` (same scheme, host and port, and a path that
    starts with the prefix's path). ``oss://`` keys of its own upload store are always allowed.
    Anything else is refused without a request: an emulator reachable from the network must not
    fetch whatever a caller names (a server-side request forger). Redirects are never followed."""

    def __init__(self, prefixes: tuple[str, ...] = ()) -> None:
        self.prefixes: tuple[httpx.URL, ...] = tuple(self._prefix(p) for p in prefixes)

    def __repr__(self) -> str:
        return f"UrlPolicy({tuple(str(p) for p in self.prefixes)!r})"

    @staticmethod
    def _prefix(text: str) -> httpx.URL:
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, TypeError, ValueError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            from voicekit.errors import ConfigError

            raise ConfigError(f"URL prefix {text!r} is not an http(s) URL prefix; give one such as "
                              "https://files.example.com/audio/")
        return url

    def allows(self, url: str) -> bool:
        from voicekit.serve import is_loopback

        try:
            u = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            return False
        if u.scheme not in ("http", "https") or not u.host or {".", ".."} & set(u.path.split("/")):
            return False
        if is_loopback(u.host):
            return True
        return any((p.scheme, p.host, p.port) == (u.scheme, u.host, u.port) and u.path.startswith(p.path or "/")
                   for p in self.prefixes)

    def refusal(self, url: str) -> str:
        """Why ``url`` is not fetched, and what to do about it."""
        return (f"The audio file cannot be downloaded: this emulator fetches only loopback URLs and its own "
                f"uploads (oss://), not {url[:200]!r}; start it with --allow-url-prefix PREFIX to allow more.")


@attrs.define
class _Task:
    task_id: str
    owner: str
    model: str
    urls: list[str]
    params: dict[str, Any]
    oss_ok: bool
    submitted: dt.datetime
    submitted_at: float
    status: str = "PENDING"
    scheduled: dt.datetime | None = None
    ended: dt.datetime | None = None
    results: list[dict[str, Any]] = attrs.field(factory=list)
    billed: int = 0


# -- audio -------------------------------------------------------------------------------------

def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(samples × channels int16 array, rate) of a PCM16 WAV file."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2:
                raise FileError("DECODE_ERROR", f"only 16-bit PCM WAV is decoded (got {8 * w.getsampwidth()}-bit)")
            rate, ch = w.getframerate(), w.getnchannels()
            pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise FileError("DECODE_ERROR", f"the audio could not be decoded: {exc}") from None
    return np.frombuffer(pcm, "<i2").reshape(-1, ch), rate


def resample_to_engine(a: np.ndarray, rate: int) -> np.ndarray:
    if rate == ENGINE_RATE:
        return a
    import soxr

    return np.asarray(soxr.resample(a.astype(np.float32) / 32768.0, rate, ENGINE_RATE) * 32767.0).clip(
        -32768, 32767).astype("<i2")


async def transcribe_channel(engine: Any, samples: np.ndarray, *, vad: str = "webrtc", end_silence_ms: int = 500,
                             language: str | None = None, hotwords: tuple[str, ...] = (),
                             context: str | None = None) -> list[TranscriptResult]:
    """Endpoint 16 kHz mono int16 ``samples`` and transcribe them with ``engine``; final results."""
    endpointer = Endpointer(make_engine_vad(TaskSettings(vad=vad)),
                            EndpointerConfig(pre_roll_ms=200, end_silence_ms=end_silence_ms, max_speech_ms=20000))
    finals: list[TranscriptResult] = []
    config = ASRConfig(sample_rate=ENGINE_RATE, language=language, hotwords=hotwords, context=context)
    async with engine.open_stream(config) as stream, trio.open_nursery() as nursery:
        async def pump() -> None:
            async for r in stream:
                if r.is_final and r.text.strip():
                    finals.append(r)

        nursery.start_soon(pump)
        frame = AudioFrame(samples.astype("<i2").tobytes(), ENGINE_RATE)
        chunks = frame.split(ENGINE_RATE // 10)
        for i, chunk in enumerate(chunks):
            items = list(endpointer.push(chunk))
            if i == len(chunks) - 1:
                items += list(endpointer.flush())
            await forward(stream, items)
            if i % 50 == 0:
                await trio.sleep(0)
        await stream.finish()
    return finals


# -- diarization -------------------------------------------------------------------------------

def _mel_bands(rate: int, n_fft: int, n_bands: int = 24) -> np.ndarray:
    def mel(f: np.ndarray | float) -> Any:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges_mel = np.linspace(mel(80.0), mel(min(7600.0, rate / 2)), n_bands + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    bank = np.zeros((n_bands, freqs.size), np.float32)
    for b in range(n_bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        bank[b] = np.clip(np.minimum(up, down), 0.0, None)
    return bank


def voice_print(samples: np.ndarray, rate: int = ENGINE_RATE) -> np.ndarray:
    """Mean and spread of log mel-band energies over the louder frames, level removed."""
    a = samples.astype(np.float32) / 32768.0
    n_fft, hop = 512, rate // 100
    if a.size < n_fft:
        a = np.pad(a, (0, n_fft - a.size))
    count = 1 + (a.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    frames = a[idx] * np.hanning(n_fft)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    logmel = np.log(power @ _mel_bands(rate, n_fft).T + 1e-10)
    energy = logmel.mean(axis=1)
    loud = logmel[energy >= np.percentile(energy, 40)] if count > 4 else logmel
    loud = loud - loud.mean(axis=1, keepdims=True)  # remove loudness, keep spectral shape
    return np.concatenate([loud.mean(axis=0), loud.std(axis=0)])


def cluster_speakers(prints: list[np.ndarray], speaker_count: int | None, threshold: float) -> list[int]:
    """Average-linkage agglomerative clustering on cosine distance; labels by first appearance."""
    n = len(prints)
    if n == 0:
        return []
    x = np.stack(prints)
    x = x - x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-9
    dist = 1.0 - x @ x.T
    groups: list[list[int]] = [[i] for i in range(n)]
    target = min(speaker_count, n) if speaker_count else 1
    while len(groups) > target:
        best, pair = math.inf, (0, 1)
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                d = float(dist[np.ix_(groups[i], groups[j])].mean())
                if d < best:
                    best, pair = d, (i, j)
        if speaker_count is None and best > threshold:
            break
        i, j = pair
        groups[i] += groups.pop(j)
    label_of = {m: g for g, members in enumerate(groups) for m in members}
    order: dict[int, int] = {}
    return [order.setdefault(label_of[i], len(order)) for i in range(n)]


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
        self.tasks: dict[str, _Task] = {}
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
        owner = self.owner(request.header("authorization"))
        if owner is None:
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        if self.settings.require_async_header and (request.header("x-dashscope-async") or "").lower() != "enable":
            return _error(403, "AccessDenied", "current user api does not support synchronous calls")
        try:
            body = request.json()
        except ValueError:
            return _error(400, "InvalidParameter", "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "InvalidParameter", "request body must be a JSON object")
        model = body.get("model")
        if not model:
            return _error(400, "BadRequest.EmptyModel", "Required parameter 'model' missing from request.")
        if not isinstance(body.get("input"), dict):
            return _error(400, "BadRequest.EmptyInput", "Required parameter 'input' missing from request.")
        try:
            spec = file_model(str(model))
            if emulator_refuses(str(model), self.region):
                raise ValueError(model)
        except Exception:
            return _error(400, "InvalidParameter", f"Model not found: {model} (file transcription knows "
                                                   f"{', '.join(FILE_MODELS)})")
        inp = body["input"]
        if spec.single_url:
            url = inp.get("file_url")
            if not isinstance(url, str) or not url:
                return _error(400, "InvalidParameter", f"{model} needs input.file_url (one string)")
            urls = [url]
        else:
            urls = inp.get("file_urls")
            if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
                return _error(400, "InvalidParameter", f"{model} needs input.file_urls (an array of URLs)")
            if len(urls) > self.settings.max_urls:
                return _error(400, "InvalidParameter",
                              f"too many file_urls: {len(urls)} (at most {self.settings.max_urls} per request)")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            return _error(400, "InvalidParameter", "parameters must be an object")
        oss_ok = (request.header("x-dashscope-ossresourceresolve") or "").lower() == "enable"
        if any(u.startswith("oss://") for u in urls) and not oss_ok:
            return _error(400, "InvalidParameter.DataInspection",
                          "oss:// URLs need the header X-DashScope-OssResourceResolve: enable")
        sc = params.get("speaker_count")
        if sc is not None and (not isinstance(sc, int) or not 2 <= sc <= 100):
            return _error(400, "InvalidParameter", "speaker_count must be an integer from 2 to 100")
        now = dt.datetime.now(dt.UTC)
        task = _Task(str(uuid.uuid4()), owner, str(model), list(urls), params, oss_ok, now, trio.current_time())
        self.tasks[task.task_id] = task
        self._count("file_tasks")
        assert self._nursery is not None, "FileTranscriptionService.run is not started"
        self._nursery.start_soon(self._work, task)
        return HttpResponse.json(200, {"request_id": str(uuid.uuid4()),
                                       "output": {"task_id": task.task_id, "task_status": "PENDING"}})

    # -- query / cancel

    def _view(self, task: _Task) -> dict[str, Any]:
        spec = file_model(task.model)
        out: dict[str, Any] = {"task_id": task.task_id, "task_status": task.status,
                               "submit_time": _stamp(task.submitted)}
        if task.scheduled:
            out["scheduled_time"] = _stamp(task.scheduled)
        if task.ended:
            out["end_time"] = _stamp(task.ended)
        done = [r for r in task.results if r["subtask_status"] in ("SUCCEEDED", "FAILED")]
        metrics = {"TOTAL": len(task.urls), "SUCCEEDED": sum(r["subtask_status"] == "SUCCEEDED" for r in done),
                   "FAILED": sum(r["subtask_status"] == "FAILED" for r in done)}
        body: dict[str, Any] = {"request_id": str(uuid.uuid4()), "output": out}
        if spec.single_url:
            if task.status in ("SUCCEEDED", "FAILED") and task.results:
                r = task.results[0]
                if r["subtask_status"] == "SUCCEEDED":
                    out["result"] = {"file_url": r["file_url"], "transcription_url": r["transcription_url"],
                                     "subtask_status": "SUCCEEDED"}
                else:
                    out["code"], out["message"] = r["code"], r["message"]
            if task.status == "SUCCEEDED":
                body["usage"] = {"seconds": task.billed}
            else:
                out["task_metrics"] = metrics
        else:
            out["task_metrics"] = metrics
            if task.status in ("SUCCEEDED", "FAILED"):
                out["results"] = task.results
                if task.status == "FAILED":
                    out["code"], out["message"] = task.results[0]["code"], task.results[0]["message"]
                else:
                    body["usage"] = {"duration": task.billed}
        return body

    async def query(self, request: HttpRequest) -> HttpResponse:
        owner = self.owner(request.header("authorization"))
        if owner is None:
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        rest = request.path[len(TASKS_PATH) + 1:].strip("/")
        task_id, _, action = rest.partition("/")
        task = self.tasks.get(task_id)
        if task is not None and (task.owner != owner
                                 or trio.current_time() - task.submitted_at > self.settings.retention):
            task = None
        if action == "cancel":
            if request.method != "POST":
                return _error(405, "MethodNotAllowed", "cancel is a POST")
            if task is None:
                return _error(400, "InvalidParameter", f"task {task_id} does not exist")
            if task.status != "PENDING":
                return _error(400, "InvalidParameter", f"only PENDING tasks can be cancelled (task is {task.status})")
            task.status = "CANCELED"
            task.ended = dt.datetime.now(dt.UTC)
            self._count("file_cancels")
            return HttpResponse.json(200, {"request_id": str(uuid.uuid4()),
                                           "output": {"task_id": task_id, "task_status": "CANCELED"}})
        if action:
            return _error(404, "NotFound", f"unknown task action {action!r}")
        self._count("file_queries")
        if task is None:
            return HttpResponse.json(200, {"request_id": str(uuid.uuid4()),
                                           "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
        return HttpResponse.json(200, self._view(task))

    async def result_file(self, request: HttpRequest) -> HttpResponse:
        token = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        item = self.files.get(token)
        if item is None or trio.current_time() > item[1]:
            return HttpResponse(404, b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>",
                                "application/xml")
        return HttpResponse(200, item[0])

    # -- work

    async def _work(self, task: _Task) -> None:
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
            except FileError as exc:
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

    async def _download(self, task: _Task, url: str) -> bytes:
        if url.startswith("oss://"):
            data = self.uploads.open(task.owner, url[len("oss://"):]) if self.uploads is not None else None
            if data is None:
                raise FileError("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.")
            return bytes(data)
        if not re.match(r"https?://", url):
            raise FileError("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.")
        if not self.url_policy.allows(url):
            self._count("file_urls_refused")
            raise FileError("InvalidFile.DownloadFailed", self.url_policy.refusal(url))
        try:
            async with httpx.AsyncClient(timeout=self.settings.download_timeout, follow_redirects=False,
                                         trust_env=False) as client, client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise FileError("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.")
                buf = bytearray()
                async for chunk in resp.aiter_bytes():
                    buf += chunk
                    if len(buf) > self.settings.max_download_bytes:
                        raise FileError("InvalidFile.TooLarge", "The audio file is larger than 2 GB.")
                return bytes(buf)
        except httpx.HTTPError:
            raise FileError("InvalidFile.DownloadFailed", "The audio file cannot be downloaded.") from None

    async def _transcribe(self, task: _Task, url: str) -> tuple[dict[str, Any], int]:
        spec = file_model(task.model)
        p = task.params
        data = await self._download(task, url)
        audio, rate = decode_wav(data)
        channels = p.get("channel_id") or [0]
        if not isinstance(channels, list) or any(not isinstance(c, int) or not 0 <= c < audio.shape[1]
                                                 for c in channels):
            raise FileError("InvalidParameter", f"channel_id {channels} does not fit a {audio.shape[1]}-channel file")
        if spec.single_url:
            language = p.get("language")
        else:
            hints = p.get("language_hints") or []
            language = hints[0] if hints else None
        hotwords: list[Any] = []
        vid = p.get("vocabulary_id")
        if isinstance(vid, str) and vid:
            v = self.store.get(vid, task.owner)
            if v is not None:  # a list for another model or owner is silently ignored, like the service
                hotwords = list(v.words)
        diarize = bool(p.get("diarization_enabled")) and not spec.single_url
        transcripts: list[dict[str, Any]] = []
        speech_ms = 0
        next_id = 0 if spec.single_url else 1
        for ch in channels:
            samples = resample_to_engine(audio[:, ch], rate)
            finals = await transcribe_channel(self.engine, samples, vad=self.settings.vad,
                                              end_silence_ms=self.settings.end_silence_ms, language=language,
                                              hotwords=tuple(h.text for h in hotwords),
                                              context=p.get("text") if spec.single_url else None)
            labels: list[int] = []
            if diarize:
                prints = [voice_print(samples[int((r.start or 0) * ENGINE_RATE):int((r.end or 0) * ENGINE_RATE)])
                          for r in finals]
                labels = cluster_speakers(prints, p.get("speaker_count"), self.settings.speaker_threshold)
            sentences = []
            for k, r in enumerate(finals):
                text = apply_hotwords(r.text.strip(), hotwords) if hotwords else r.text.strip()
                if p.get("disfluency_removal_enabled"):
                    text = " ".join(w for w in text.split() if w.lower().strip(",.!?") not in FILLERS)
                begin, end = round((r.start or 0) * 1000), round((r.end or r.start or 0) * 1000)
                speech_ms += end - begin
                s: dict[str, Any] = {"begin_time": begin, "end_time": end, "text": text, "sentence_id": next_id}
                next_id += 1
                if spec.single_url:
                    s["language"] = r.language or language or (getattr(self.engine, "capabilities", None)
                                                                and self.engine.capabilities.languages[0])
                    s["emotion"] = r.emotion or "neutral"
                if diarize:
                    s["speaker_id"] = labels[k]
                if not spec.single_url or p.get("enable_words"):
                    s["words"] = [{"begin_time": a, "end_time": b, "text": w, "punctuation": pu}
                                  for a, b, w, pu in spread(split_words(text), begin, end)]
                sentences.append(s)
            tr: dict[str, Any] = {"channel_id": ch, "text": " ".join(s["text"] for s in sentences),
                                  "sentences": sentences}
            if not spec.single_url:
                tr["content_duration_in_milliseconds"] = sum(s["end_time"] - s["begin_time"] for s in sentences)
            transcripts.append(tr)
        duration_ms = round(audio.shape[0] * 1000 / rate)
        doc: dict[str, Any] = {"file_url": url}
        if spec.single_url:
            doc["audio_info"] = {"format": "wav", "sample_rate": rate}
        else:
            doc["properties"] = {"audio_format": "pcm_s16le", "channels": list(range(audio.shape[1])),
                                 "original_sampling_rate": rate, "original_duration_in_milliseconds": duration_ms}
        doc["transcripts"] = transcripts
        billed = max(1, math.ceil(speech_ms / 1000)) if not spec.single_url else max(1, math.ceil(duration_ms / 1000))
        return doc, billed


def add_file_routes(emulator: Any, settings: FilesSettings | dict[str, Any] | None) -> FileTranscriptionService:
    """Create the service for a :class:`~voicekit_dashscope.emulator.app.DashScopeEmulator` and route it."""
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
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        return await uploads.policy_handler(request, owner)

    emulator.server.add_route("GET", UPLOADS_PATH, policy)
    # the synchronous audio APIs (qwen3-asr-flash, Omni over HTTP) share the engine and settings
    from voicekit_dashscope.emulator.compat import add_compat_routes

    service.url_policy = getattr(emulator, "url_policy", service.url_policy)
    service.compat = add_compat_routes(emulator, settings.vad)
    service.compat.url_policy = service.url_policy
    for method, path, handler, prefix in service.routes():
        if prefix:
            emulator.server.add_prefix_route(method, path, handler)
        else:
            emulator.server.add_route(method, path, handler)
    return service


# -- temporary uploads -------------------------------------------------------------------------

class UploadStore:
    """The upload-policy API and a fake OSS PostObject target, streamed to disk.

    The OSS target listens on its own loopback port (``upload_host`` in the policy) and writes the
    request body straight to a temporary file, so uploads of any size use constant memory. Files
    are bound to the API key that asked for the policy, like the real store.
    """

    def __init__(self, *, directory: str | None = None, policy_ttl: float = 300.0, max_file_mb: float = 1024.0,
                 host: str = "127.0.0.1") -> None:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="vk-dashscope-uploads-") if directory is None else None
        self.directory = directory or self._tmp.name  # type: ignore[union-attr]
        self.policy_ttl = policy_ttl
        self.max_file_mb = max_file_mb
        self.host = host
        self.port: int | None = None
        self.policies: dict[str, tuple[str, str, float]] = {}  # signature -> (owner, upload_dir, expires)
        self.objects: dict[str, tuple[str, str, int, int]] = {}  # key -> (owner, path, start, end)

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    def open(self, owner: str, key: str) -> bytes | None:
        item = self.objects.get(key)
        if item is None or item[0] != owner:
            return None
        _, path, start, end = item
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    async def policy_handler(self, request: HttpRequest, owner: str) -> HttpResponse:
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(request.target).query)
        if q.get("action") != ["getPolicy"] or not q.get("model"):
            return _error(400, "InvalidParameter", "use ?action=getPolicy&model=<model>")
        signature = secrets.token_urlsafe(20)
        upload_dir = f"dashscope-instant/{secrets.token_hex(8)}/{dt.date.today().isoformat()}/{secrets.token_hex(6)}"
        self.policies[signature] = (owner, upload_dir, trio.current_time() + self.policy_ttl)
        return HttpResponse.json(200, {"request_id": str(uuid.uuid4()), "data": {
            "policy": secrets.token_urlsafe(24), "signature": signature, "upload_dir": upload_dir,
            "upload_host": f"http://{self.host}:{self.port}", "expire_in_seconds": int(self.policy_ttl),
            "max_file_size_mb": self.max_file_mb, "capacity_limit_mb": 999999999,
            "oss_access_key_id": "LTAI-emulator", "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"}})

    async def _connection(self, stream: trio.abc.Stream) -> None:
        import h11

        conn = h11.Connection(h11.SERVER)
        status, body = 500, b""
        try:
            req: Any = None
            fd, path = _mkstemp(self.directory)
            size = 0
            with open(fd, "wb") as out:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(1 << 20)
                        if not data:
                            return
                        conn.receive_data(bytes(data))
                        continue
                    if isinstance(event, h11.Request):
                        req = event
                    elif isinstance(event, h11.Data):
                        out.write(event.data)
                        size += len(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
            status, body = self._accept(req, path, size)
        except Exception as exc:  # a broken upload must not stop the emulator
            log.warning("emulator_upload_error", error=f"{type(exc).__name__}: {exc}")
            status, body = 400, b"<Error><Code>MalformedPOSTRequest</Code></Error>"
        try:
            await stream.send_all(conn.send(h11.Response(status_code=status, headers=[
                ("content-type", "application/xml"), ("content-length", str(len(body))),
                ("connection", "close")])) or b"")
            await stream.send_all(conn.send(h11.Data(data=body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError, Exception):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    def _accept(self, req: Any, path: str, size: int) -> tuple[int, bytes]:
        ctype = dict((k.lower(), v) for k, v in req.headers).get(b"content-type", b"").decode()
        m = re.search(r"boundary=\"?([^\";]+)", ctype)
        if req.method != b"POST" or m is None:
            return 400, b"<Error><Code>InvalidArgument</Code><Message>multipart POST expected</Message></Error>"
        sep = b"--" + m.group(1).encode()
        with open(path, "rb") as f:
            head = f.read(256 * 1024)
            f.seek(max(0, size - 512))
            tail = f.read()
        fields: dict[str, str] = {}
        pos = 0
        file_start = None
        while True:
            i = head.find(sep, pos)
            if i < 0:
                break
            hdr_end = head.find(b"\r\n\r\n", i)
            if hdr_end < 0:
                break
            headers = head[i:hdr_end].decode("utf-8", "replace")
            name = re.search(r'name="([^"]*)"', headers)
            if name and name.group(1) == "file":
                file_start = hdr_end + 4
                break
            j = head.find(b"\r\n" + sep, hdr_end)
            if name and j >= 0:
                fields[name.group(1)] = head[hdr_end + 4:j].decode("utf-8", "replace")
            pos = j if j >= 0 else hdr_end
        closing = tail.rfind(b"\r\n" + sep)
        if file_start is None or closing < 0:
            return 400, b"<Error><Code>InvalidArgument</Code><Message>no file part (it must come last)</Message>" \
                b"</Error>"
        file_end = size - len(tail) + closing
        pol = self.policies.get(fields.get("Signature", ""))
        if pol is None or trio.current_time() > pol[2]:
            return 403, (b"<Error><Code>AccessDenied</Code>"
                         b"<Message>Invalid according to Policy: Policy expired.</Message></Error>")
        owner, upload_dir, _ = pol
        key = fields.get("key", "")
        if not key.startswith(upload_dir + "/"):
            return 403, (b"<Error><Code>AccessDenied</Code>"
                         b"<Message>key outside the policy's upload_dir</Message></Error>")
        if file_end - file_start > self.max_file_mb * 1024 * 1024:
            return 400, b"<Error><Code>EntityTooLarge</Code></Error>"
        self.objects[key] = (owner, path, file_start, file_end)
        return int(fields.get("success_action_status", "204")), b""


def _mkstemp(directory: str) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(dir=directory, suffix=".upload")
