"""What each realtime model supports, as data (protocol notes sections 4 and 5)."""

from __future__ import annotations

import attrs

from voicekit.errors import ConfigError

ASR_EMOTIONS = ("surprised", "neutral", "happy", "sad", "disgusted", "angry", "fearful")
ASR_LANGUAGES = ("zh", "yue", "en", "ja", "de", "ko", "ru", "fr", "pt", "ar", "it", "es", "hi", "id",
                 "th", "tr", "uk", "vi", "cs", "da", "fil", "fi", "is", "ms", "no", "pl", "sv")
OMNI3_LANGUAGES = ("zh", "en", "fr", "de", "ru", "it", "es", "pt", "ja", "ko")



@attrs.frozen
class RealtimeModel:
    """What one realtime model supports. Evidence: protocol notes sections 4 and 5.

    ``tools`` is ``None`` where the documentation is unsure (qwen3-omni-flash). ``session_limit_s``
    is the documented maximum length of one WebSocket session (``None`` = not documented).
    """

    name: str
    family: str  # "qwen3-asr" | "qwen3.5-omni" | "qwen3-omni"
    output_audio: bool
    default_voice: str | None
    known_voices: tuple[str, ...]
    voice_count: int
    semantic_vad: bool
    tools: bool | None
    idle_timeout: bool
    nested_audio_format: bool
    smooth_output: bool
    session_limit_s: float | None
    input_rates: tuple[int, ...]
    output_rates: tuple[int, ...]
    default_output_rate: int | None
    input_formats: tuple[str, ...]
    transcription_event: str
    transcription_model: str | None
    languages: tuple[str, ...]
    language_count: int
    emotion: bool
    regions: tuple[str, ...]
    default_threshold: float
    default_silence_ms: int
    session_finish: str  # "documented" | "unsure" (one report of it being refused)
    notes: str = ""

    @property
    def is_omni(self) -> bool:
        return self.family != "qwen3-asr"


_BJ_SG = ("cn-beijing", "ap-southeast-1")
_OMNI35_VOICES = ("Tina", "Cherry", "Ethan", "Serena", "Chelsie")  # documented examples; 55 in all
_OMNI3_VOICES = ("Cherry", "Ethan", "Chelsie", "Serena")  # documented examples; 49 in all
TRANSCRIPTION_TEXT = "conversation.item.input_audio_transcription.text"
TRANSCRIPTION_DELTA = "conversation.item.input_audio_transcription.delta"

_ASR = RealtimeModel(
    name="qwen3-asr-flash-realtime", family="qwen3-asr", output_audio=False, default_voice=None,
    known_voices=(), voice_count=0, semantic_vad=False, tools=False, idle_timeout=False,
    nested_audio_format=False, smooth_output=False, session_limit_s=None, input_rates=(16000, 8000),
    output_rates=(), default_output_rate=None, input_formats=("pcm", "opus"),
    transcription_event=TRANSCRIPTION_TEXT, transcription_model=None, languages=ASR_LANGUAGES,
    language_count=27, emotion=True, regions=_BJ_SG, default_threshold=0.2, default_silence_ms=800,
    session_finish="documented",
    notes="transcription only; corpus.text context (up to 10,000 tokens) instead of hotwords; "
          "maximum session length undocumented")
_OMNI35_PLUS = RealtimeModel(
    name="qwen3.5-omni-plus-realtime", family="qwen3.5-omni", output_audio=True, default_voice="Tina",
    known_voices=_OMNI35_VOICES, voice_count=55, semantic_vad=True, tools=True, idle_timeout=True,
    nested_audio_format=True, smooth_output=False, session_limit_s=7200.0,
    input_rates=(8000, 16000, 24000, 48000), output_rates=(8000, 16000, 24000, 48000),
    default_output_rate=24000, input_formats=("pcm", "wav", "pcm16"),
    transcription_event=TRANSCRIPTION_DELTA, transcription_model="qwen3-asr-flash-realtime",
    languages=ASR_LANGUAGES, language_count=113, emotion=True, regions=_BJ_SG, default_threshold=0.5,
    default_silence_ms=800, session_finish="unsure",
    notes="semantic interruption (semantic_vad); 113 recognition / 36 generation languages (docs "
          "conflict); session.finish was once reported refused by the flash sibling")
_OMNI35_FLASH = attrs.evolve(_OMNI35_PLUS, name="qwen3.5-omni-flash-realtime",
                             notes="lighter qwen3.5 omni; web search availability conflicting; "
                                   "session.finish was reported refused (issue #140)")
_OMNI3_FLASH = RealtimeModel(
    name="qwen3-omni-flash-realtime", family="qwen3-omni", output_audio=True, default_voice="Cherry",
    known_voices=_OMNI3_VOICES, voice_count=49, semantic_vad=False, tools=None, idle_timeout=False,
    nested_audio_format=False, smooth_output=True, session_limit_s=7200.0, input_rates=(16000,),
    output_rates=(24000,), default_output_rate=24000, input_formats=("pcm16", "pcm"),
    transcription_event=TRANSCRIPTION_DELTA, transcription_model="gummy-realtime-v1",
    languages=OMNI3_LANGUAGES, language_count=10, emotion=False, regions=_BJ_SG, default_threshold=0.5,
    default_silence_ms=800, session_finish="unsure",
    notes="previous generation: server_vad only, legacy pcm16 in / pcm24 out fields; tool support "
          "undocumented; transcription model gummy-realtime-v1 or qwen3-asr (docs conflict)")

MODELS: dict[str, RealtimeModel] = {}
for _m, _snapshots in ((_ASR, ("qwen3-asr-flash-realtime-2025-10-27", "qwen3-asr-flash-realtime-2026-02-10")),
                       (_OMNI35_PLUS, ("qwen3.5-omni-plus-realtime-2026-03-15",)),
                       (_OMNI35_FLASH, ("qwen3.5-omni-flash-realtime-2026-03-15",)),
                       (_OMNI3_FLASH, ("qwen3-omni-flash-realtime-2025-12-01",
                                       "qwen3-omni-flash-realtime-2025-09-15"))):
    MODELS[_m.name] = _m
    for _s in _snapshots:
        MODELS[_s] = attrs.evolve(_m, name=_s)


def get_realtime_model(name: str, *, family: str | None = None) -> RealtimeModel:
    spec = MODELS.get(name)
    if spec is None or (family is not None and not spec.family.endswith(family) and spec.family != family):
        known = ", ".join(n for n, m in MODELS.items() if family is None or m.family == family)
        raise ConfigError(f"unknown DashScope realtime model {name!r}; use one of: {known}")
    return spec

