"""What each DashScope speech model can do, as data (the model chooser reads these records).

Two layers:

* :data:`GUIDE` — the vendor's own guide to choosing a speech model, row by row: its comparison
  table (mode, API, accuracy enhancement, emotion, speaker diarization, languages, maximum
  duration) and its two pick lists (real-time, non-real-time) with each model's series and
  advantage. :func:`guide_record` applies a row to a plugin's capability record, and every
  DashScope ASR plugin publishes its record through it, so the records cannot drift from the guide.
  Which models each region offers lives in :mod:`voicekit_dashscope.regions` (the guide's
  availability lists).
* :data:`MODELS` — the task-protocol (Fun-ASR / Paraformer real-time) models with their protocol
  details (sample rates, parameters).

Where the guide and the other documentation conflict, the guide wins and the conflict is noted in
the record's ``notes`` (Fun-ASR real-time hotwords outside the Chinese mainland; Qwen3-ASR context
text, which the guide does not count as an accuracy enhancement; Qwen3-Omni emotion).
"""

from __future__ import annotations

import re

import attrs

from voicekit.asr.base import ASRCapabilities
from voicekit.errors import ConfigError
from voicekit_dashscope.regions import LEGACY_MODELS, model_regions

FUN_ASR_LANGS = ("zh", "en", "ja")
PARAFORMER_LANGS = ("zh", "en", "ja", "yue", "ko", "de", "fr", "ru")
BJ, SG, US = "cn-beijing", "ap-southeast-1", "us-east-1"

# -- the guide -----------------------------------------------------------------------------------

REAL_TIME, NON_REAL_TIME = "Real-time", "Non-real-time"
WEBSOCKET, ASYNC_REST, OPENAI_HTTP = "WebSocket", "Asynchronous REST", "HTTP (OpenAI-compatible)"
HOTWORD_MAINLAND, HOTWORD, PROMPT_CONTEXT, NONE = "Hotword (Chinese mainland only)", "Hotword", "Prompt context", "--"
SUPPORTED, NOT_SUPPORTED = "Supported", "Not supported"
STREAMING, FILE_LIMIT, PER_REQUEST, MINUTES_120 = "Streaming", "12 hours / 2 GB", "Per-request limit", "120 minutes"
_L_FUN = "Chinese, English, Japanese, and dialects"
_L_PARA = "Chinese, English, Japanese, Korean, German, French, and Russian"
_L_OMNI3 = ("Chinese, English, Japanese, Korean, German, French, Italian, Spanish, Portuguese, and Russian; "
            "Chinese dialects: Sichuanese, Shanghainese, Cantonese, Min Nan, Shaanxi, Nanjing, Tianjin, and Beijing")


@attrs.frozen
class GuideRow:
    """One row of the guide's full comparison table, in the guide's words (the model column was
    reconstructed: see docs/chooser.md, "Where the records come from")."""

    model: str
    mode: str
    api: str
    enhancement: str
    emotion: str
    diarization: str
    languages: str
    max_duration: str
    series: str = ""
    advantage: str = ""  # from the guide's real-time / non-real-time pick lists ("" if not listed)


GUIDE: tuple[GuideRow, ...] = (
    GuideRow("fun-asr-realtime", REAL_TIME, WEBSOCKET, HOTWORD_MAINLAND, NOT_SUPPORTED, NOT_SUPPORTED, _L_FUN,
             STREAMING, "Fun-ASR", "Hotword, dialect support, and multilingual mixed-language recognition"),
    GuideRow("fun-asr", NON_REAL_TIME, ASYNC_REST, HOTWORD, NOT_SUPPORTED, SUPPORTED, _L_FUN, FILE_LIMIT,
             "Fun-ASR", "Speaker diarization, hotword, and multilingual mixed-language recognition"),
    GuideRow("qwen3-asr-flash-realtime", REAL_TIME, WEBSOCKET, NONE, SUPPORTED, NOT_SUPPORTED, "26 languages",
             STREAMING, "Qwen3-ASR", "Emotion recognition"),
    GuideRow("qwen3-asr-flash-filetrans", NON_REAL_TIME, ASYNC_REST, NONE, SUPPORTED, NOT_SUPPORTED,
             "26 languages", FILE_LIMIT, "Qwen3-ASR", "Emotion recognition"),
    GuideRow("paraformer-realtime-v2", REAL_TIME, WEBSOCKET, HOTWORD, NOT_SUPPORTED, NOT_SUPPORTED, _L_PARA,
             STREAMING, "Paraformer (legacy)"),
    GuideRow("paraformer-v2", NON_REAL_TIME, ASYNC_REST, HOTWORD, NOT_SUPPORTED, SUPPORTED, _L_PARA, FILE_LIMIT,
             "Paraformer (legacy)"),
    GuideRow("paraformer-realtime-8k-v2", REAL_TIME, WEBSOCKET, HOTWORD, SUPPORTED, NOT_SUPPORTED, "Chinese",
             STREAMING, "Paraformer (legacy)"),
    GuideRow("paraformer-8k-v2", NON_REAL_TIME, ASYNC_REST, HOTWORD, NOT_SUPPORTED, NOT_SUPPORTED, "Chinese",
             FILE_LIMIT, "Paraformer (legacy)"),
    GuideRow("qwen3.5-omni-plus", NON_REAL_TIME, OPENAI_HTTP, PROMPT_CONTEXT, SUPPORTED, NOT_SUPPORTED,
             "113 languages", PER_REQUEST, "Qwen3.5-Omni",
             "Prompt context injection, 113 languages, and an OpenAI-compatible API"),
    GuideRow("qwen3.5-omni-flash", NON_REAL_TIME, OPENAI_HTTP, PROMPT_CONTEXT, SUPPORTED, NOT_SUPPORTED,
             "113 languages", PER_REQUEST, "Qwen3.5-Omni",
             "Lightweight, cost-effective, and an OpenAI-compatible HTTP API"),
    GuideRow("qwen3.5-omni-plus-realtime", REAL_TIME, WEBSOCKET, PROMPT_CONTEXT, SUPPORTED, NOT_SUPPORTED,
             "113 languages", MINUTES_120, "Qwen3.5-Omni",
             "Prompt context injection, semantic interruption, and 113 languages"),
    GuideRow("qwen3.5-omni-flash-realtime", REAL_TIME, WEBSOCKET, PROMPT_CONTEXT, SUPPORTED, NOT_SUPPORTED,
             "113 languages", MINUTES_120, "Qwen3.5-Omni", "Lightweight and cost-effective"),
    GuideRow("qwen3-omni-flash", NON_REAL_TIME, OPENAI_HTTP, PROMPT_CONTEXT, SUPPORTED, NOT_SUPPORTED, _L_OMNI3,
             PER_REQUEST, "Qwen3-Omni-Flash (previous generation)",
             "Prompt context injection, multimodal, and an OpenAI-compatible API"),
    GuideRow("qwen3-omni-flash-realtime", REAL_TIME, WEBSOCKET, PROMPT_CONTEXT, SUPPORTED, NOT_SUPPORTED,
             _L_OMNI3, MINUTES_120, "Qwen3-Omni (previous generation)", "Prompt context injection"),
)
GUIDE_BY_MODEL: dict[str, GuideRow] = {r.model: r for r in GUIDE}

# the guide's pick lists, in its order (its answer to "real-time or not?")
REAL_TIME_PICKS = ("fun-asr-realtime", "qwen3-asr-flash-realtime", "qwen3.5-omni-plus-realtime",
                   "qwen3.5-omni-flash-realtime", "qwen3-omni-flash-realtime")
NON_REAL_TIME_PICKS = ("fun-asr", "qwen3-asr-flash-filetrans", "qwen3.5-omni-plus", "qwen3.5-omni-flash",
                       "qwen3-omni-flash")
# its answer to "domain terminology?": prompt context (most flexible) or hotwords
TERMINOLOGY = (("context", "Qwen3.5-Omni"), ("hotwords", "Fun-ASR"))
DIARIZATION_MODELS = ("fun-asr", "fun-asr-mtl")  # "only the non-real-time Fun-ASR models"

LANGUAGE_CODES = {"Chinese": "zh", "English": "en", "Japanese": "ja", "Korean": "ko", "German": "de",
                  "French": "fr", "Russian": "ru", "Italian": "it", "Spanish": "es", "Portuguese": "pt"}
DIALECT_CODES = frozenset({"yue"})  # Chinese dialects with a code of their own (Cantonese)


def guide_languages(text: str) -> tuple[str, ...] | int:
    """The language codes a guide cell names, or the count it gives ("26 languages" → 26)."""
    head = text.split(";")[0]
    if head.endswith(" languages") and head.split()[0].isdigit():
        return int(head.split()[0])
    words = [w.strip() for w in re.split(r",|\band\b", head)]
    return tuple(LANGUAGE_CODES[w] for w in words if w and w != "dialects")


# facts about models the guide has no row for, from their own pages
_OTHER: dict[str, dict[str, object]] = {
    # Qwen3-ASR synchronous API: OpenAI-compatible except in the US; like its series, no accuracy
    # enhancement in the guide's sense
    "qwen3-asr-flash": {"openai_compatible": True, "prompt_context": False,
                        "feature_regions": {"openai_compatible": (BJ, SG)}},
}


_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _generation(name: str, row: GuideRow | None) -> str:
    if name in LEGACY_MODELS:
        return "legacy"
    if row is not None and "previous generation" in row.series:
        return "previous"
    return "current"


def guide_record(caps: ASRCapabilities) -> ASRCapabilities:
    """``caps`` with the guide's facts about its model, and the regions that offer it."""
    row = GUIDE_BY_MODEL.get(caps.name)
    snapshot = row is None and _SNAPSHOT.sub("", caps.name) in GUIDE_BY_MODEL  # a dated snapshot of a row
    if snapshot:
        row = GUIDE_BY_MODEL[_SNAPSHOT.sub("", caps.name)]
    regions = model_regions(caps.name) or caps.regions
    changes: dict[str, object] = {"regions": regions, "generation": _generation(caps.name, row),
                                  "vendor_rank": GUIDE.index(row) if row is not None and not snapshot else None}
    if row is None:
        changes.update(_OTHER.get(caps.name, {}))
        return attrs.evolve(caps, **changes)  # type: ignore[arg-type]
    streaming = row.mode == REAL_TIME
    if streaming != (caps.mode == "streaming"):
        raise AssertionError(f"{caps.name}: the guide says {row.mode}, the plugin is {caps.mode}")
    notes = [caps.notes] if caps.notes else []
    changes.update(_features(row, streaming))
    if not snapshot:  # a snapshot keeps its own language list
        changes.update(_languages(caps, row, notes))
    changes.update(_limits(row))
    notes += _conflicts(caps, row)
    changes["notes"] = "; ".join(notes)
    return attrs.evolve(caps, **changes)  # type: ignore[arg-type]


def _features(row: GuideRow, streaming: bool) -> dict[str, object]:
    """The guide's API, accuracy enhancement, emotion, diarization and interruption columns."""
    return {
        "api": "websocket" if row.api == WEBSOCKET else "http",
        "openai_compatible": row.api == OPENAI_HTTP,
        "hotwords": row.enhancement.startswith(HOTWORD),
        "prompt_context": row.enhancement == PROMPT_CONTEXT,
        "feature_regions": {"hotwords": (BJ,)} if row.enhancement == HOTWORD_MAINLAND else {},
        "emotion": row.emotion == SUPPORTED,
        "diarization": row.diarization == SUPPORTED,
        "semantic_interruption": "semantic interruption" in row.advantage or (
            streaming and row.series == "Qwen3.5-Omni"),
    }


def _languages(caps: ASRCapabilities, row: GuideRow, notes: list[str]) -> dict[str, object]:
    """The guide's language list (with the plugin's dialects), or a note of how many it counts."""
    langs = guide_languages(row.languages)
    if isinstance(langs, tuple):
        dialects = tuple(c for c in caps.languages if c in DIALECT_CODES and "dialects" in row.languages)
        if "Cantonese" in row.languages and "yue" not in dialects:
            dialects += ("yue",)
        return {"languages": langs + dialects}
    if len(set(caps.languages) - DIALECT_CODES) != langs:
        notes.append(f"{row.languages} in all")
    return {}


#: The guide's maximum-duration column → the record's limits.
_LIMITS: dict[str, dict[str, object]] = {
    STREAMING: {"max_duration_s": None},
    FILE_LIMIT: {"max_duration_s": 12 * 3600.0, "max_file_bytes": 2 * 1024 ** 3},
    MINUTES_120: {"max_duration_s": 120 * 60.0},
}


def _limits(row: GuideRow) -> dict[str, object]:
    return _LIMITS.get(row.max_duration, {})


def _conflicts(caps: ASRCapabilities, row: GuideRow) -> list[str]:
    """Notes where the guide and the other documentation disagree (the guide wins)."""
    notes = []
    if row.enhancement == HOTWORD_MAINLAND:
        notes.append("hotwords in the Chinese mainland (Beijing) only, per the vendor's model guide "
                     "(its hotword page lists Singapore too)")
    if caps.name.startswith("qwen3-asr"):
        notes.append("context text biasing exists in the protocol, but the vendor's guide lists no accuracy "
                     "enhancement for Qwen3-ASR")
    return notes


# -- the task-protocol models --------------------------------------------------------------------

@attrs.frozen
class ModelSpec:
    name: str
    family: str
    sample_rates: tuple[int, ...]
    languages: tuple[str, ...]
    regions: tuple[str, ...]
    hotwords: bool = True
    context: bool = False
    emotion: bool = False
    special_word_filter: bool = False
    disfluency_removal: bool = False
    noise_threshold: bool = False
    any_rate: bool = False  # accepts any sample rate (Paraformer v2)
    notes: str = ""

    def capabilities(self) -> ASRCapabilities:
        return guide_record(ASRCapabilities(
            name=self.name, family=self.family, mode="streaming", api="websocket",
            languages=self.languages, hotwords=self.hotwords, prompt_context=self.context,
            emotion=self.emotion, word_timestamps=True, partials=True, sample_rates=self.sample_rates,
            regions=self.regions, offline=False, server_endpointing=True, notes=self.notes,
            max_duration_s=None))


_FUN_NOTE = ("docs conflict on sample rate (16 kHz vs any) and languages (3 vs 31); "
             "16 kHz and zh/en/ja are the safe choice")

MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("fun-asr-realtime", "fun-asr", (16000,), FUN_ASR_LANGS, (BJ, SG), context=True,
              special_word_filter=True, noise_threshold=True,
              notes="stable alias (currently the 2025-11-07 snapshot); " + _FUN_NOTE),
    ModelSpec("fun-asr-realtime-2025-11-07", "fun-asr", (16000,), FUN_ASR_LANGS, (BJ, SG), context=True,
              special_word_filter=True, noise_threshold=True, notes=_FUN_NOTE),
    ModelSpec("fun-asr-realtime-2026-02-28", "fun-asr", (16000,), FUN_ASR_LANGS, (BJ,),
              special_word_filter=True, noise_threshold=True, notes="latest snapshot; Beijing only"),
    ModelSpec("fun-asr-realtime-2025-09-15", "fun-asr", (16000,), ("zh", "en"), (BJ,),
              special_word_filter=True, noise_threshold=True, notes="Beijing only"),
    ModelSpec("fun-asr-flash-8k-realtime", "fun-asr", (8000,), ("zh",), (BJ,), hotwords=False,
              noise_threshold=True, notes="8 kHz telephony; hotword support undocumented"),
    ModelSpec("paraformer-realtime-v2", "paraformer", (8000, 16000, 22050, 24000, 44100, 48000),
              PARAFORMER_LANGS, (BJ,), disfluency_removal=True, any_rate=True,
              notes="any sample rate; Beijing only"),
    ModelSpec("paraformer-realtime-8k-v2", "paraformer", (8000,), ("zh",), (BJ,), emotion=True,
              disfluency_removal=True,
              notes="8 kHz telephony; emotion tag on final sentences when semantic punctuation is off"),
)}
# the regions come from the availability lists (one source of truth); the ones above are a fallback
MODELS = {n: attrs.evolve(m, regions=model_regions(n) or m.regions) for n, m in MODELS.items()}


def get_model(name: str, family: str | None = None) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None or (family is not None and spec.family != family):
        known = ", ".join(n for n, m in MODELS.items() if family is None or m.family == family)
        raise ConfigError(f"unknown {family or 'DashScope'} real-time model {name!r}; use one of: {known}")
    return spec
