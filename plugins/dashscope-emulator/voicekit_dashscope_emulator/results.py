"""What the emulated file-transcription API answers: task records and their views, and the result
documents (sentences, words, speakers, channels, billing) built from an engine's final results."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from voicekit.asr.base import TranscriptResult
from voicekit_dashscope.protocol.files import file_model
from voicekit_dashscope.protocol.vocabulary import Hotword
from voicekit_dashscope_emulator.biasing import apply_hotwords, split_words, spread
from voicekit_dashscope_emulator.http import HttpResponse

FILLERS = frozenset({"um", "uh", "er", "ah", "erm", "hmm", "mm", "嗯", "呃", "啊"})


def error_response(status: int, code: str, message: str) -> HttpResponse:
    """The service's error body: ``request_id``, ``code``, ``message``."""
    return HttpResponse.json(status, {"request_id": str(uuid.uuid4()), "code": code, "message": message})


def stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


@attrs.define
class FileTask:
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


# -- the task view (GET /api/v1/tasks/{id}) ------------------------------------------------------

def _single_url_view(task: FileTask, out: dict[str, Any], body: dict[str, Any], metrics: dict[str, int]) -> None:
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


def _many_urls_view(task: FileTask, out: dict[str, Any], body: dict[str, Any], metrics: dict[str, int]) -> None:
    out["task_metrics"] = metrics
    if task.status in ("SUCCEEDED", "FAILED"):
        out["results"] = task.results
        if task.status == "FAILED":
            out["code"], out["message"] = task.results[0]["code"], task.results[0]["message"]
        else:
            body["usage"] = {"duration": task.billed}


def task_view(task: FileTask) -> dict[str, Any]:
    """The body of a task query: status, times, metrics, and the results or error once ended."""
    out: dict[str, Any] = {"task_id": task.task_id, "task_status": task.status, "submit_time": stamp(task.submitted)}
    if task.scheduled:
        out["scheduled_time"] = stamp(task.scheduled)
    if task.ended:
        out["end_time"] = stamp(task.ended)
    done = [r for r in task.results if r["subtask_status"] in ("SUCCEEDED", "FAILED")]
    metrics = {"TOTAL": len(task.urls), "SUCCEEDED": sum(r["subtask_status"] == "SUCCEEDED" for r in done),
               "FAILED": sum(r["subtask_status"] == "FAILED" for r in done)}
    body: dict[str, Any] = {"request_id": str(uuid.uuid4()), "output": out}
    view = _single_url_view if file_model(task.model).single_url else _many_urls_view
    view(task, out, body, metrics)
    return body


# -- the result document (transcription_url) -----------------------------------------------------

@attrs.frozen
class ResultOptions:
    """What a task's parameters ask of each file's result."""

    single_url: bool  # qwen3-asr-flash-filetrans's layout (one file, language and emotion per sentence)
    channels: list[int]
    language: str | None
    hotwords: tuple[Hotword, ...] = ()
    diarize: bool = False
    speaker_count: int | None = None
    drop_fillers: bool = False
    words: bool = True  # word timings in each sentence
    context: str | None = None


def sentence_text(text: str, opts: ResultOptions) -> str:
    """A final's text with the vocabulary applied and, if asked, the fillers removed."""
    text = apply_hotwords(text.strip(), list(opts.hotwords)) if opts.hotwords else text.strip()
    if opts.drop_fillers:
        text = " ".join(w for w in text.split() if w.lower().strip(",.!?") not in FILLERS)
    return text


def sentence(r: TranscriptResult, sentence_id: int, opts: ResultOptions, speaker: int | None,
             default_language: Callable[[], str | None]) -> dict[str, Any]:
    text = sentence_text(r.text, opts)
    begin, end = _span_ms(r)
    s: dict[str, Any] = {"begin_time": begin, "end_time": end, "text": text, "sentence_id": sentence_id}
    if opts.single_url:
        s.update(_audio_info(r, opts, default_language))
    if speaker is not None:
        s["speaker_id"] = speaker
    if opts.words:
        s["words"] = [{"begin_time": a, "end_time": b, "text": w, "punctuation": pu}
                      for a, b, w, pu in spread(split_words(text), begin, end)]
    return s


def _span_ms(r: TranscriptResult) -> tuple[int, int]:
    """(begin, end) in ms; a result without times starts at 0 and ends where it starts."""
    return round((r.start or 0) * 1000), round((r.end or r.start or 0) * 1000)


def _audio_info(r: TranscriptResult, opts: ResultOptions, default_language: Callable[[], str | None]) -> dict[str, Any]:
    """A single-URL model's language (the engine's, else the one asked, else the engine's default) and emotion."""
    return {"language": r.language or opts.language or default_language(), "emotion": r.emotion or "neutral"}


def channel_transcript(channel: int, sentences: list[dict[str, Any]], single_url: bool) -> dict[str, Any]:
    tr: dict[str, Any] = {"channel_id": channel, "text": " ".join(s["text"] for s in sentences),
                          "sentences": sentences}
    if not single_url:
        tr["content_duration_in_milliseconds"] = sum(s["end_time"] - s["begin_time"] for s in sentences)
    return tr


def result_document(url: str, single_url: bool, channels: int, rate: int, duration_ms: int,
                    transcripts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"file_url": url}
    if single_url:
        doc["audio_info"] = {"format": "wav", "sample_rate": rate}
    else:
        doc["properties"] = {"audio_format": "pcm_s16le", "channels": list(range(channels)),
                             "original_sampling_rate": rate, "original_duration_in_milliseconds": duration_ms}
    doc["transcripts"] = list(transcripts)
    return doc


def billed_seconds(single_url: bool, transcripts: Sequence[dict[str, Any]], duration_ms: int) -> int:
    """Whole seconds billed: the file's duration (single-URL models) or the speech in it."""
    if single_url:
        return max(1, math.ceil(duration_ms / 1000))
    speech_ms: int = sum(s["end_time"] - s["begin_time"] for tr in transcripts for s in tr["sentences"])
    return max(1, math.ceil(speech_ms / 1000))
