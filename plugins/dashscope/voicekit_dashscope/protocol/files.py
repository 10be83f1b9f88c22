"""The DashScope asynchronous file-transcription protocol, as values and pure functions.

Three model families share one task framework (submit → poll ``/api/v1/tasks/{id}`` → fetch a
result file) but differ in details:

* ``funasr`` / ``paraformer``: ``input.file_urls`` (array), result under ``output.results[]``
  (one per file, each with ``subtask_status``), billed ``usage.duration``; the result file has
  ``properties``, sentence ids from 1 and ``speaker_id`` when diarization is on;
* ``qwen3-filetrans``: ``input.file_url`` (one string), result under ``output.result``, billed
  ``usage.seconds``; the result file has ``audio_info``, sentence ids from 0, and per-sentence
  ``language`` and ``emotion``; no diarization.

Nothing here does I/O: the client (:mod:`voicekit_dashscope.client.files`) and the emulator
(:mod:`voicekit_dashscope.emulator.files`) both build and parse with these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from voicekit.asr.base import TranscriptResult, Word
from voicekit.errors import ConfigError
from voicekit_dashscope.errors import BadResponseError as BadResponseError  # re-exported: defined there
from voicekit_dashscope.errors import FileFailedError as FileFailedError
from voicekit_dashscope.errors import FileLimitError as FileLimitError
from voicekit_dashscope.errors import FileTaskError as FileTaskError
from voicekit_dashscope.errors import TaskCanceledError as TaskCanceledError
from voicekit_dashscope.errors import TaskUnknownError as TaskUnknownError
from voicekit_dashscope.errors import WaitTimeoutError as WaitTimeoutError
from voicekit_dashscope.protocol._util import Fields

Family = Literal["funasr", "paraformer", "qwen3-filetrans"]
TRANSCRIPTION_PATH = "/api/v1/services/audio/asr/transcription"
TASKS_PATH = "/api/v1/tasks"
UPLOADS_PATH = "/api/v1/uploads"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})
GB = 1024 ** 3
HOURS_12 = 12 * 3600.0

_FUN_LANGS = ("zh", "en", "ja", "ko", "vi", "th", "id", "ms", "tl", "hi", "ar", "fr", "de", "es", "pt", "ru",
              "it", "nl", "sv", "da", "fi", "no", "el", "pl", "cs", "hu", "ro", "bg", "hr", "sk", "et", "ga",
              "lv", "lt", "mt", "sl")
QWEN_LANGS = ("zh", "yue", "en", "ja", "de", "ko", "ru", "fr", "pt", "ar", "it", "es", "hi", "id", "th", "tr",
               "uk", "vi", "cs", "da", "fil", "fi", "is", "ms", "no", "pl", "sv")


@attrs.frozen
class FileModel:
    """One file-transcription model and its documented limits (protocol reference §3, §5)."""

    name: str
    family: Family
    languages: tuple[str, ...]
    regions: tuple[str, ...]
    diarization: bool
    emotion: bool
    vocabulary: bool  # vocabulary_id hotword lists
    context_text: bool  # parameters.text context biasing
    max_bytes: int = 2 * GB
    max_duration_s: float | None = HOURS_12  # paraformer: documented as 12 h by one source, unlimited by another
    sample_rate: int = 16000

    @property
    def single_url(self) -> bool:
        return self.family == "qwen3-filetrans"


FILE_MODELS: dict[str, FileModel] = {m.name: m for m in (
    FileModel("fun-asr", "funasr", _FUN_LANGS, ("cn-beijing", "ap-southeast-1"), True, False, True, False),
    FileModel("fun-asr-mtl", "funasr", _FUN_LANGS, ("cn-beijing", "ap-southeast-1"), True, False, True, False),
    FileModel("paraformer-v2", "paraformer", ("zh", "en", "ja", "yue", "ko", "de", "fr", "ru"),
              ("cn-beijing",), True, False, True, False),
    FileModel("paraformer-8k-v2", "paraformer", ("zh",), ("cn-beijing",), True, False, True, False,
              sample_rate=8000),
    FileModel("qwen3-asr-flash-filetrans", "qwen3-filetrans", QWEN_LANGS, ("cn-beijing", "ap-southeast-1"),
              False, True, False, True),
)}
_ALIASES = {"fun-asr-2025-11-07": "fun-asr", "fun-asr-2025-08-25": "fun-asr", "fun-asr-mtl-2025-08-25": "fun-asr-mtl",
            "qwen3-asr-flash-filetrans-2025-11-17": "qwen3-asr-flash-filetrans"}


def file_model(name: str) -> FileModel:
    """The spec of a file-transcription model; :class:`ConfigError` names the known ones."""
    spec = FILE_MODELS.get(_ALIASES.get(name, name))
    if spec is None:
        raise ConfigError(f"{name!r} is not a DashScope file-transcription model; use one of "
                          f"{', '.join(FILE_MODELS)}")
    return spec


# -- errors ------------------------------------------------------------------------------------

# -- requests ----------------------------------------------------------------------------------

@attrs.frozen
class FileOptions:
    """The documented parameters; each is sent only when set and only to the models that take it."""

    vocabulary_id: str | None = None
    channel_id: tuple[int, ...] = ()
    diarization: bool = False
    speaker_count: int | None = None
    language: str | None = None  # language_hints[0] for Fun-ASR/paraformer; language for qwen3
    disfluency_removal: bool = False
    context: str | None = None  # qwen3-asr-flash-filetrans parameters.text
    word_timestamps: bool = True  # qwen3: enable_words; always on for Fun-ASR/paraformer
    enable_itn: bool = False
    extra: Mapping[str, Any] = attrs.field(factory=dict)


def build_submit(model: str, urls: Sequence[str], options: FileOptions = FileOptions()) -> dict[str, Any]:
    """The submit body for ``model``; refuses options the model does not take, naming the fix."""
    spec = file_model(model)
    if not urls:
        raise ConfigError("no file URL given: pass at least one http(s):// or oss:// URL")
    params: dict[str, Any] = {}
    if options.channel_id:
        params["channel_id"] = list(options.channel_id)
    if options.speaker_count is not None and not 2 <= options.speaker_count <= 100:
        raise ConfigError(f"speaker_count must be between 2 and 100, not {options.speaker_count}")
    if options.language is not None and options.language not in spec.languages:
        raise ConfigError(f"{spec.name} does not list language {options.language!r}; "
                          f"use one of {', '.join(spec.languages)}")
    if spec.family == "qwen3-filetrans":
        if len(urls) != 1:
            raise ConfigError(f"{spec.name} takes exactly one file per task (got {len(urls)}); "
                              "submit one task per file")
        if options.diarization:
            raise ConfigError(f"{spec.name} has no speaker diarization; use fun-asr or paraformer-v2")
        if options.vocabulary_id:
            raise ConfigError(f"{spec.name} takes no vocabulary_id; pass domain terms as context text")
        inp: dict[str, Any] = {"file_url": urls[0]}
        if options.language:
            params["language"] = options.language
        params["enable_words"] = bool(options.word_timestamps)
        if options.enable_itn:
            params["enable_itn"] = True
        if options.context:
            params["text"] = options.context
    else:
        if options.context:
            raise ConfigError(f"{spec.name} takes no context text; use a vocabulary_id hotword list")
        inp = {"file_urls": list(urls)}
        if options.language:
            params["language_hints"] = [options.language]
        if options.vocabulary_id:
            params["vocabulary_id"] = options.vocabulary_id
        if options.diarization:
            params["diarization_enabled"] = True
            if options.speaker_count is not None:
                params["speaker_count"] = options.speaker_count
        if options.disfluency_removal:
            params["disfluency_removal_enabled"] = True
    params.update(options.extra)
    return {"model": model, "input": inp, "parameters": params}


# -- task status -------------------------------------------------------------------------------

@attrs.frozen
class FileOutcome:
    """One file of a task: ``SUCCEEDED`` with a ``transcription_url``, or ``FAILED`` with a code."""

    file_url: str | None
    status: str
    transcription_url: str | None = None
    code: str | None = None
    message: str | None = None


@attrs.frozen
class TaskInfo:
    task_id: str
    status: str
    files: tuple[FileOutcome, ...] = ()
    code: str | None = None
    message: str | None = None
    usage_seconds: float | None = None
    metrics: Mapping[str, int] = attrs.field(factory=dict)
    request_id: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


def parse_task(body: Any) -> TaskInfo:
    """A submit or query answer (either family's layout)."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), dict):
        raise BadResponseError(f"task answer has no 'output' object: {str(body)[:200]}")
    out = body["output"]
    task_id, status = out.get("task_id"), out.get("task_status")
    if not isinstance(task_id, str) or not isinstance(status, str):
        raise BadResponseError(f"task answer lacks task_id/task_status: {str(out)[:200]}")
    files: list[FileOutcome] = []
    raw = out.get("results")
    if isinstance(raw, list):
        items = raw
    elif isinstance(out.get("result"), dict):
        items = [out["result"]]
    else:
        items = []
    for r in items:
        if not isinstance(r, dict):
            continue
        st = r.get("subtask_status") or ("SUCCEEDED" if r.get("transcription_url") else status)
        files.append(FileOutcome(r.get("file_url"), st, r.get("transcription_url"), r.get("code"), r.get("message")))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    seconds = usage.get("duration", usage.get("seconds")) if usage else None
    metrics = out.get("task_metrics") if isinstance(out.get("task_metrics"), dict) else {}
    return TaskInfo(task_id, status, tuple(files), out.get("code"), out.get("message"),
                    float(seconds) if isinstance(seconds, (int, float)) else None, metrics, body.get("request_id"))


# -- result files ------------------------------------------------------------------------------

@attrs.frozen
class FileWord:
    text: str
    begin_ms: int
    end_ms: int
    punctuation: str = ""


@attrs.frozen
class FileSentence:
    sentence_id: int
    begin_ms: int
    end_ms: int
    text: str
    channel_id: int = 0
    speaker_id: int | None = None
    words: tuple[FileWord, ...] = ()
    emotion: str | None = None
    language: str | None = None


@attrs.frozen
class FileTranscript:
    """One transcribed file: every sentence of every requested channel."""

    file_url: str | None
    sentences: tuple[FileSentence, ...]
    text_by_channel: Mapping[int, str] = attrs.field(factory=dict)
    sample_rate: int | None = None
    duration_ms: int | None = None
    audio_format: str | None = None

    @property
    def text(self) -> str:
        return " ".join(t for _, t in sorted(self.text_by_channel.items()) if t)

    @property
    def speakers(self) -> tuple[int, ...]:
        return tuple(sorted({s.speaker_id for s in self.sentences if s.speaker_id is not None}))

    def results(self) -> list[TranscriptResult]:
        """Final :class:`TranscriptResult` s in time order; speakers are ``speaker_N`` (or ``channel_N``)."""
        channels = {s.channel_id for s in self.sentences}
        out = []
        for i, s in enumerate(sorted(self.sentences, key=lambda s: (s.begin_ms, s.channel_id)), 1):
            speaker = (f"speaker_{s.speaker_id}" if s.speaker_id is not None
                       else f"channel_{s.channel_id}" if len(channels) > 1 else None)
            words = tuple(Word((w.text + w.punctuation).strip(), w.begin_ms / 1000, w.end_ms / 1000, speaker=speaker)
                          for w in s.words)
            out.append(TranscriptResult(s.text, True, i, s.begin_ms / 1000, s.end_ms / 1000, words,
                                        language=s.language, emotion=s.emotion, speaker=speaker))
        return out


F = Fields("result file", BadResponseError)


def _objects(v: Any, path: str) -> list[dict[str, Any]]:
    """A list of objects (``None`` = empty)."""
    items = v or []
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise F.fail(path, "a list of objects", v)
    return items


def _parse_word(w: Mapping[str, Any]) -> FileWord:
    return FileWord(str(w.get("text", "")), F.as_whole(w.get("begin_time"), "word.begin_time"),
                    F.as_whole(w.get("end_time"), "word.end_time"), str(w.get("punctuation") or ""))


def _parse_sentence(s: Mapping[str, Any], channel: int) -> FileSentence:
    words = tuple(_parse_word(w) for w in _objects(s.get("words"), "sentence.words"))
    spk = s.get("speaker_id")
    return FileSentence(F.as_whole(s.get("sentence_id", 0), "sentence.sentence_id"),
                        F.as_whole(s.get("begin_time"), "sentence.begin_time"),
                        F.as_whole(s.get("end_time"), "sentence.end_time"),
                        str(s.get("text") or ""), channel, spk if isinstance(spk, int) else None, words,
                        s.get("emotion"), s.get("language"))


def parse_result_file(body: Any) -> FileTranscript:
    """A result file of either layout (``properties`` for Fun-ASR/paraformer, ``audio_info`` for qwen3)."""
    if not isinstance(body, dict) or not isinstance(body.get("transcripts"), list):
        raise BadResponseError(f"result file has no 'transcripts' list: {str(body)[:200]}")
    sentences: list[FileSentence] = []
    texts: dict[int, str] = {}
    for tr in _objects(body["transcripts"], "transcripts"):
        ch = F.as_whole(tr.get("channel_id", 0), "transcript.channel_id")
        texts[ch] = str(tr.get("text") or "")
        sentences += [_parse_sentence(s, ch) for s in _objects(tr.get("sentences"), "transcript.sentences")]
    props: dict[str, Any] = body["properties"] if isinstance(body.get("properties"), dict) else {}
    info: dict[str, Any] = body["audio_info"] if isinstance(body.get("audio_info"), dict) else {}
    rate = props.get("original_sampling_rate", info.get("sample_rate"))
    dur = props.get("original_duration_in_milliseconds")
    return FileTranscript(body.get("file_url"), tuple(sentences), texts,
                          rate if isinstance(rate, int) else None, dur if isinstance(dur, int) else None,
                          props.get("audio_format", info.get("format")))


def poll_intervals(first: float = 1.0, cap: float = 5.0) -> Any:
    """The SDK's back-off: 1, 1, 1, 2, 2, 2, 4, 4, 4, 5, … (doubles after every third poll)."""
    interval, n = first, 0
    while True:
        yield interval
        n += 1
        if n % 3 == 0:
            interval = min(cap, interval * 2)
