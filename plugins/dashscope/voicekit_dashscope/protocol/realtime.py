"""The DashScope *realtime* event protocol (``/api-ws/v1/realtime?model=...``), sans I/O.

Qwen3-ASR-Flash-Realtime (transcription only) and the Qwen-Omni realtime models (speech in,
speech and text out, tools) speak the same OpenAI-Realtime-style protocol: JSON text frames
``{"event_id": ..., "type": ..., ...}`` in both directions, audio as base64 inside
``input_audio_buffer.append`` (client) and ``response.audio.delta`` (server).

This module has no sockets and no clock:

* :data:`MODELS` — what each model supports (output audio, voices, semantic VAD, tools, session
  limit, audio rates, which transcription event it sends), as data;
* typed messages (attrs) for every client and server event, :func:`encode`,
  :func:`decode_client`, :func:`decode_server`;
* :class:`SessionConfig` and :func:`check_session` — the ``session.update`` payload and the
  per-model validation the emulator answers with an ``error`` event and the client runs before
  sending;
* two state machines, :class:`ClientRealtimeProtocol` and :class:`ServerRealtimeProtocol`, that
  reject traffic in the wrong order with typed errors.

Parsing is lenient where real peers differ (unknown fields are kept, ``null`` versus missing,
``pcm``/``pcm16`` spellings) and strict where a mistake would corrupt a conversation (wrong
types, unknown response ids, events out of order). Every decoding failure is a
:class:`RealtimeProtocolError`; every ordering failure a :class:`RealtimeStateError`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import random
import string
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import attrs

from voicekit.errors import ConfigError
from voicekit_dashscope.errors import DashScopeError, ProtocolError

MAX_FRAME_CHARS = 24 * 1024 * 1024  # a 15 MiB audio append is ~20 MiB of base64
MAX_APPEND_BYTES = 15 * 1024 * 1024
ASR_EMOTIONS = ("surprised", "neutral", "happy", "sad", "disgusted", "angry", "fearful")
ASR_LANGUAGES = ("zh", "yue", "en", "ja", "de", "ko", "ru", "fr", "pt", "ar", "it", "es", "hi", "id",
                 "th", "tr", "uk", "vi", "cs", "da", "fil", "fi", "is", "ms", "no", "pl", "sv")
OMNI3_LANGUAGES = ("zh", "en", "fr", "de", "ru", "it", "es", "pt", "ja", "ko")


# ============================================================================ errors


class RealtimeProtocolError(ProtocolError):
    """A realtime frame that is not valid: not JSON, not an object, wrong field types."""


class RealtimeStateError(ProtocolError):
    """A realtime event that is valid on its own but not allowed now (out of order)."""


class RealtimeServerError(DashScopeError):
    """The server answered with an ``error`` event. ``code``/``param`` are the server's."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 error_type: str | None = None, event_id: str | None = None) -> None:
        where = f" (parameter {param})" if param else ""
        super().__init__(f"DashScope realtime error {code or error_type or ''}{where}: {message}",
                         code=code, server_message=message)
        self.param = param
        self.error_type = error_type
        self.event_id = event_id


# ============================================================================ model table


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
_TRANSCRIPTION_TEXT = "conversation.item.input_audio_transcription.text"
_TRANSCRIPTION_DELTA = "conversation.item.input_audio_transcription.delta"

_ASR = RealtimeModel(
    name="qwen3-asr-flash-realtime", family="qwen3-asr", output_audio=False, default_voice=None,
    known_voices=(), voice_count=0, semantic_vad=False, tools=False, idle_timeout=False,
    nested_audio_format=False, smooth_output=False, session_limit_s=None, input_rates=(16000, 8000),
    output_rates=(), default_output_rate=None, input_formats=("pcm", "opus"),
    transcription_event=_TRANSCRIPTION_TEXT, transcription_model=None, languages=ASR_LANGUAGES,
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
    transcription_event=_TRANSCRIPTION_DELTA, transcription_model="qwen3-asr-flash-realtime",
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
    transcription_event=_TRANSCRIPTION_DELTA, transcription_model="gummy-realtime-v1",
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


# ============================================================================ ids


_ALNUM = string.ascii_letters + string.digits


class IdMaker:
    """Ids in the service's shape (``event_`` + 21 letters and digits). Seedable for tests."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def __call__(self, prefix: str) -> str:
        return prefix + "_" + "".join(self._rng.choice(_ALNUM) for _ in range(21))


# ============================================================================ session config


class _Unset(enum.Enum):
    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET
T = TypeVar("T")


def _mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def _opt_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class TurnDetection:
    """``session.turn_detection``. ``None`` fields are not sent (server defaults apply)."""

    type: str = "server_vad"
    threshold: float | None = None
    silence_duration_ms: int | None = None
    prefix_padding_ms: int | None = None
    idle_timeout_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


@attrs.frozen
class ToolSpec:
    """A function the model may call (Chat-Completions style)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "object", "properties": {}},
                                                converter=_mapping, hash=False)

    def to_json(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"name": self.name}
        if self.description:
            fn["description"] = self.description
        fn["parameters"] = dict(self.parameters)
        return {"type": "function", "function": fn}


@attrs.frozen
class AudioFormat:
    """A nested ``audio.input.format`` / ``audio.output.format`` (qwen3.5 models)."""

    type: str = "pcm"
    sample_rate: int = 16000

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "sample_rate": self.sample_rate}


@attrs.frozen
class Transcription:
    """``session.input_audio_transcription``: language and context (ASR), or the fixed model (Omni)."""

    language: str | None = None
    corpus_text: str | None = None
    model: str | _Unset | None = UNSET

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.model is not UNSET:
            d["model"] = self.model
        if self.language is not None:
            d["language"] = self.language
        if self.corpus_text is not None:
            d["corpus"] = {"text": self.corpus_text}
        return d


_SAMPLING = ("temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "presence_penalty", "seed")


@attrs.frozen(kw_only=True)
class SessionConfig:
    """The ``session`` object of ``session.update``. ``None``/``UNSET`` fields are not sent;
    ``turn_detection=None`` means *manual mode* and is sent as ``null``."""

    modalities: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    voice: str | _Unset | None = UNSET
    instructions: str | None = None
    input_audio_format: str | None = None
    output_audio_format: str | None = None
    sample_rate: int | None = None
    input_format: AudioFormat | None = None
    output_format: AudioFormat | None = None
    transcription: Transcription | _Unset | None = UNSET
    turn_detection: TurnDetection | _Unset | None = UNSET
    tools: tuple[ToolSpec, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    enable_search: bool | None = None
    smooth_output: bool | _Unset | None = UNSET
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)

    @property
    def manual(self) -> bool:
        return self.turn_detection is None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.modalities is not None:
            d["modalities"] = list(self.modalities)
        if self.voice is not UNSET:
            d["voice"] = self.voice
        if self.instructions is not None:
            d["instructions"] = self.instructions
        if self.input_audio_format is not None:
            d["input_audio_format"] = self.input_audio_format
        if self.output_audio_format is not None:
            d["output_audio_format"] = self.output_audio_format
        if self.sample_rate is not None:
            d["sample_rate"] = self.sample_rate
        if self.input_format is not None or self.output_format is not None:
            audio: dict[str, Any] = {}
            if self.input_format is not None:
                audio["input"] = {"format": self.input_format.to_json()}
            if self.output_format is not None:
                audio["output"] = {"format": self.output_format.to_json()}
            d["audio"] = audio
        if self.transcription is not UNSET:
            d["input_audio_transcription"] = None if self.transcription is None else self.transcription.to_json()
        if self.turn_detection is not UNSET:
            d["turn_detection"] = None if self.turn_detection is None else self.turn_detection.to_json()
        if self.tools is not None:
            d["tools"] = [t.to_json() for t in self.tools]
        if self.enable_search is not None:
            d["enable_search"] = self.enable_search
        if self.smooth_output is not UNSET:
            d["smooth_output"] = self.smooth_output
        for name in _SAMPLING:
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    def merged(self, update: SessionConfig) -> SessionConfig:
        """This config with every field ``update`` sets replacing ours."""
        changes: dict[str, Any] = {}
        defaults = SessionConfig()
        for f in attrs.fields(SessionConfig):
            value = getattr(update, f.name)
            if f.name == "extra":
                changes["extra"] = {**self.extra, **update.extra}
            elif value is not getattr(defaults, f.name):
                changes[f.name] = value
        return attrs.evolve(self, **changes)

    # -- effective values for a model

    def input_rate(self, model: RealtimeModel) -> int:
        if self.input_format is not None:
            return self.input_format.sample_rate
        if self.sample_rate is not None:
            return self.sample_rate
        return 16000

    def output_rate(self, model: RealtimeModel) -> int:
        if self.output_format is not None:
            return self.output_format.sample_rate
        return model.default_output_rate or 24000

    def turn_type(self) -> str | None:
        if self.turn_detection is None:
            return None
        if self.turn_detection is UNSET:
            return "server_vad"
        return self.turn_detection.type


# ---- parsing helpers (every failure names the field) ------------------------------------------


def _fail(path: str, expected: str, value: Any) -> RealtimeProtocolError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return RealtimeProtocolError(f"realtime event field {path!r} must be {expected}, got {shown}")


def _get_str(d: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise RealtimeProtocolError(f"realtime event is missing the string field {path!r}")
        return None
    if not isinstance(v, str):
        raise _fail(path, "a string", v)
    return v


def _get_int(d: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> int | None:
    v = d.get(key)
    if v is None:
        if required:
            raise RealtimeProtocolError(f"realtime event is missing the integer field {path!r}")
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            return int(v)
        raise _fail(path, "an integer", v)
    return v


def _get_num(d: Mapping[str, Any], key: str, path: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(path, "a number", v)
    return float(v)


def _get_bool(d: Mapping[str, Any], key: str, path: str) -> bool | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise _fail(path, "true or false", v)
    return v


def _get_dict(d: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> dict[str, Any] | None:
    v = d.get(key)
    if v is None:
        if required:
            raise RealtimeProtocolError(f"realtime event is missing the object field {path!r}")
        return None
    if not isinstance(v, dict):
        raise _fail(path, "an object", v)
    return v


def _get_list(d: Mapping[str, Any], key: str, path: str) -> list[Any] | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, list):
        raise _fail(path, "a list", v)
    return v


def _b64(value: str, path: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise RealtimeProtocolError(f"realtime event field {path!r} is not valid base64") from None


def parse_session(d: Mapping[str, Any], path: str = "session") -> SessionConfig:
    """A ``session`` object (from ``session.update``) as a :class:`SessionConfig`."""
    known = {"modalities", "voice", "instructions", "input_audio_format", "output_audio_format",
             "sample_rate", "audio", "input_audio_transcription", "turn_detection", "tools",
             "enable_search", "smooth_output", *_SAMPLING}
    kw: dict[str, Any] = {}
    mods = _get_list(d, "modalities", f"{path}.modalities")
    if mods is not None:
        if not all(isinstance(m, str) for m in mods):
            raise _fail(f"{path}.modalities", "a list of strings", mods)
        kw["modalities"] = tuple(mods)
    if "voice" in d:
        kw["voice"] = _get_str(d, "voice", f"{path}.voice")
    kw["instructions"] = _get_str(d, "instructions", f"{path}.instructions")
    kw["input_audio_format"] = _get_str(d, "input_audio_format", f"{path}.input_audio_format")
    kw["output_audio_format"] = _get_str(d, "output_audio_format", f"{path}.output_audio_format")
    kw["sample_rate"] = _get_int(d, "sample_rate", f"{path}.sample_rate")
    audio = _get_dict(d, "audio", f"{path}.audio")
    if audio is not None:
        for side in ("input", "output"):
            sd = _get_dict(audio, side, f"{path}.audio.{side}")
            if sd is None:
                continue
            fmt = _get_dict(sd, "format", f"{path}.audio.{side}.format")
            if fmt is None:
                continue
            kw[f"{side}_format"] = AudioFormat(
                _get_str(fmt, "type", f"{path}.audio.{side}.format.type") or "pcm",
                _get_int(fmt, "sample_rate", f"{path}.audio.{side}.format.sample_rate")
                or (16000 if side == "input" else 24000))
    if "input_audio_transcription" in d:
        tr = d["input_audio_transcription"]
        if tr is None:
            kw["transcription"] = None
        else:
            p = f"{path}.input_audio_transcription"
            if not isinstance(tr, dict):
                raise _fail(p, "an object or null", tr)
            corpus = _get_dict(tr, "corpus", f"{p}.corpus")
            kw["transcription"] = Transcription(
                language=_get_str(tr, "language", f"{p}.language"),
                corpus_text=_get_str(corpus, "text", f"{p}.corpus.text") if corpus is not None else None,
                model=_get_str(tr, "model", f"{p}.model") if "model" in tr else UNSET)
    if "turn_detection" in d:
        td = d["turn_detection"]
        if td is None:
            kw["turn_detection"] = None
        else:
            p = f"{path}.turn_detection"
            if not isinstance(td, dict):
                raise _fail(p, "an object or null", td)
            kw["turn_detection"] = TurnDetection(
                type=_get_str(td, "type", f"{p}.type") or "server_vad",
                threshold=_get_num(td, "threshold", f"{p}.threshold"),
                silence_duration_ms=_get_int(td, "silence_duration_ms", f"{p}.silence_duration_ms"),
                prefix_padding_ms=_get_int(td, "prefix_padding_ms", f"{p}.prefix_padding_ms"),
                idle_timeout_ms=_get_int(td, "idle_timeout_ms", f"{p}.idle_timeout_ms"),
                create_response=_get_bool(td, "create_response", f"{p}.create_response"),
                interrupt_response=_get_bool(td, "interrupt_response", f"{p}.interrupt_response"))
    tools = _get_list(d, "tools", f"{path}.tools")
    if tools is not None:
        specs = []
        for i, t in enumerate(tools):
            p = f"{path}.tools[{i}]"
            if not isinstance(t, dict):
                raise _fail(p, "an object", t)
            fn = _get_dict(t, "function", f"{p}.function", required=True)
            assert fn is not None
            params = _get_dict(fn, "parameters", f"{p}.function.parameters")
            specs.append(ToolSpec(_get_str(fn, "name", f"{p}.function.name", required=True) or "",
                                  _get_str(fn, "description", f"{p}.function.description") or "",
                                  params if params is not None else {"type": "object", "properties": {}}))
        kw["tools"] = tuple(specs)
    kw["enable_search"] = _get_bool(d, "enable_search", f"{path}.enable_search")
    if "smooth_output" in d:
        kw["smooth_output"] = _get_bool(d, "smooth_output", f"{path}.smooth_output")
    for name in ("temperature", "top_p", "repetition_penalty", "presence_penalty"):
        kw[name] = _get_num(d, name, f"{path}.{name}")
    for name in ("top_k", "max_tokens", "seed"):
        kw[name] = _get_int(d, name, f"{path}.{name}")
    kw["extra"] = {k: v for k, v in d.items() if k not in known}
    return SessionConfig(**kw)


@attrs.frozen
class SessionIssue:
    """One reason a session config is refused: the parameter path and a message to act on."""

    param: str
    message: str
    code: str = "invalid_value"


def check_session(model: RealtimeModel, cfg: SessionConfig, *, lenient_formats: bool = True) -> list[SessionIssue]:
    """Every documented constraint ``cfg`` breaks for ``model`` (empty when it is acceptable)."""
    issues: list[SessionIssue] = []

    def bad(param: str, message: str) -> None:
        issues.append(SessionIssue(f"session.{param}", message))

    if cfg.modalities is not None:
        mods = sorted(cfg.modalities)
        if model.is_omni:
            if mods not in (["text"], ["audio", "text"]):
                bad("modalities", f"Invalid modalities: {list(cfg.modalities)}. Supported combinations are: "
                                  "['text'] and ['audio', 'text'].")
        elif mods != ["text"]:
            bad("modalities", f"{model.name} only produces text: modalities must be ['text']")
    if not model.output_audio and isinstance(cfg.voice, str):
        bad("voice", f"{model.name} does not speak, so it takes no voice; leave voice unset")
    if isinstance(cfg.voice, str) and not cfg.voice.strip():
        bad("voice", "voice must be a voice name such as 'Tina' or 'Cherry'")
    if cfg.input_audio_format is not None:
        allowed = model.input_formats if (lenient_formats or not model.is_omni) else model.input_formats[:2]
        if cfg.input_audio_format not in allowed:
            bad("input_audio_format", f"Invalid value: {cfg.input_audio_format!r}. Supported values are: "
                + ", ".join(repr(f) for f in allowed) + ".")
    if model.is_omni and cfg.output_audio_format is not None and cfg.output_audio_format not in (
            "pcm", "pcm16", "pcm24"):
        bad("output_audio_format", f"Invalid value: {cfg.output_audio_format!r}. Supported values are: 'pcm'.")
    if cfg.sample_rate is not None and not model.is_omni and cfg.sample_rate not in model.input_rates:
        bad("sample_rate", f"sample_rate must be 16000 or 8000 for {model.name}, not {cfg.sample_rate}")
    for side, fmt, rates in (("input", cfg.input_format, model.input_rates),
                             ("output", cfg.output_format, model.output_rates)):
        if fmt is None:
            continue
        if not model.nested_audio_format:
            bad(f"audio.{side}.format", f"{model.name} does not take the nested audio format; "
                                        "use input_audio_format/output_audio_format")
            continue
        if fmt.type not in ("pcm", "wav"):
            bad(f"audio.{side}.format.type", f"audio format type must be 'pcm' or 'wav', not {fmt.type!r}")
        if fmt.sample_rate not in rates:
            bad(f"audio.{side}.format.sample_rate",
                f"sample rate must be one of {', '.join(map(str, rates))}, not {fmt.sample_rate}")
    td = cfg.turn_detection
    if isinstance(td, TurnDetection):
        kinds = ("server_vad", "semantic_vad") if model.semantic_vad else ("server_vad",)
        if td.type not in kinds:
            hint = " (semantic_vad is only for the qwen3.5-omni realtime models)" if td.type == "semantic_vad" else ""
            bad("turn_detection.type", f"turn_detection.type must be one of {', '.join(kinds)}, "
                                       f"not {td.type!r}{hint}")
        if td.threshold is not None and not -1.0 <= td.threshold <= 1.0:
            bad("turn_detection.threshold", f"threshold must be within [-1.0, 1.0], not {td.threshold}")
        if td.silence_duration_ms is not None and not 200 <= td.silence_duration_ms <= 6000:
            bad("turn_detection.silence_duration_ms",
                f"silence_duration_ms must be within [200, 6000], not {td.silence_duration_ms}")
        if td.idle_timeout_ms is not None:
            if not model.idle_timeout or td.type != "server_vad":
                bad("turn_detection.idle_timeout_ms",
                    "idle_timeout_ms is only for qwen3.5-omni realtime models with server_vad")
            elif not 5000 <= td.idle_timeout_ms <= 30000:
                bad("turn_detection.idle_timeout_ms",
                    f"idle_timeout_ms must be within [5000, 30000], not {td.idle_timeout_ms}")
    if cfg.tools:
        if model.tools is False:
            bad("tools", f"{model.name} does not support function calling")
        if cfg.enable_search:
            bad("tools", "enable_search cannot be combined with tools; drop one of them")
        names = [t.name for t in cfg.tools]
        for t in cfg.tools:
            if not t.name or len(t.name) > 64 or not all(c.isalnum() or c in "_-" for c in t.name):
                bad("tools", f"tool name {t.name!r} must be 1-64 letters, digits, '_' or '-'")
        if len(set(names)) != len(names):
            bad("tools", "two tools have the same name")
    if cfg.smooth_output is not UNSET and cfg.smooth_output is not None and not model.smooth_output:
        bad("smooth_output", "smooth_output is only for qwen3-omni-flash-realtime")
    if cfg.temperature is not None and not 0.0 <= cfg.temperature < 2.0:
        bad("temperature", f"temperature must be within [0, 2), not {cfg.temperature}")
    if cfg.top_p is not None and not 0.0 < cfg.top_p <= 1.0:
        bad("top_p", f"top_p must be within (0, 1], not {cfg.top_p}")
    if cfg.presence_penalty is not None and not -2.0 <= cfg.presence_penalty <= 2.0:
        bad("presence_penalty", f"presence_penalty must be within [-2, 2], not {cfg.presence_penalty}")
    if cfg.seed is not None and not (cfg.seed == -1 or 0 <= cfg.seed <= 2**31 - 1):
        bad("seed", f"seed must be within [0, 2^31-1], not {cfg.seed}")
    return issues


def default_session(model: RealtimeModel, session_id: str) -> dict[str, Any]:
    """The ``session`` object the server reports in ``session.created``."""
    td = {"type": "server_vad", "threshold": model.default_threshold, "silence_duration_ms": model.default_silence_ms}
    if not model.is_omni:
        return {"id": session_id, "object": "realtime.session", "model": model.name, "modalities": ["text"],
                "input_audio_format": "pcm", "sample_rate": 16000, "input_audio_transcription": None,
                "turn_detection": td}
    td = {**td, "prefix_padding_ms": 300, "create_response": True, "interrupt_response": True}
    d: dict[str, Any] = {"id": session_id, "object": "realtime.session", "model": model.name,
                         "modalities": ["text", "audio"], "voice": model.default_voice,
                         "input_audio_format": "pcm" if model.nested_audio_format else "pcm16",
                         "output_audio_format": "pcm" if model.nested_audio_format else "pcm24",
                         "input_audio_transcription": {"model": model.transcription_model},
                         "turn_detection": td, "tools": [], "tool_choice": "auto"}
    if model.nested_audio_format:
        d["audio"] = {"input": {"format": {"type": "pcm", "sample_rate": 16000}},
                      "output": {"format": {"type": "pcm", "sample_rate": 24000}}}
    return d


def effective_session(model: RealtimeModel, base: Mapping[str, Any], cfg: SessionConfig) -> dict[str, Any]:
    """The full config the server echoes in ``session.updated`` after applying ``cfg``."""
    out = dict(base)
    upd = cfg.to_json()
    td = upd.get("turn_detection", UNSET)
    for k, v in upd.items():
        if k == "turn_detection" or k == "input_audio_transcription":
            continue
        out[k] = v
    if td is not UNSET:
        if td is None:
            out["turn_detection"] = None
        else:
            prev = base.get("turn_detection") or {}
            merged = {**prev, **td}
            merged.setdefault("threshold", model.default_threshold)
            merged.setdefault("silence_duration_ms", model.default_silence_ms)
            out["turn_detection"] = merged
    if "input_audio_transcription" in upd:
        tr = upd["input_audio_transcription"]
        if tr is not None and model.is_omni:
            tr = {**tr, "model": model.transcription_model}
        out["input_audio_transcription"] = tr
    if model.is_omni and "max_tokens" not in out:
        out["max_tokens"] = 16384
    return out


# ============================================================================ messages


@attrs.frozen(kw_only=True)
class _Event:
    TYPE: ClassVar[str] = ""
    event_id: str | None = None


# ---- client events


@attrs.frozen(kw_only=True)
class SessionUpdate(_Event):
    TYPE: ClassVar[str] = "session.update"
    session: SessionConfig


@attrs.frozen(kw_only=True)
class AudioAppend(_Event):
    TYPE: ClassVar[str] = "input_audio_buffer.append"
    audio: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True)
class AudioCommit(_Event):
    TYPE: ClassVar[str] = "input_audio_buffer.commit"


@attrs.frozen(kw_only=True)
class AudioClear(_Event):
    TYPE: ClassVar[str] = "input_audio_buffer.clear"


@attrs.frozen(kw_only=True)
class ImageAppend(_Event):
    TYPE: ClassVar[str] = "input_image_buffer.append"
    image: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True)
class ResponseCreate(_Event):
    TYPE: ClassVar[str] = "response.create"
    instructions: str | None = None
    modalities: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class ResponseCancel(_Event):
    TYPE: ClassVar[str] = "response.cancel"


@attrs.frozen(kw_only=True)
class ItemCreate(_Event):
    """``conversation.item.create``; documented for ``function_call_output`` items."""

    TYPE: ClassVar[str] = "conversation.item.create"
    item: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)

    @classmethod
    def function_output(cls, call_id: str, output: str, *, item_id: str | None = None,
                        event_id: str | None = None) -> ItemCreate:
        item: dict[str, Any] = {"type": "function_call_output", "call_id": call_id, "output": output}
        if item_id is not None:
            item = {"id": item_id, **item}
        return cls(item=item, event_id=event_id)


@attrs.frozen(kw_only=True)
class ItemTruncate(_Event):
    """OpenAI's ``conversation.item.truncate``. **Not** in DashScope's documented event list; sent
    only when the client is configured to, and accepted by the emulator only when told to."""

    TYPE: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    content_index: int = 0
    audio_end_ms: int = 0


@attrs.frozen(kw_only=True)
class SessionFinish(_Event):
    TYPE: ClassVar[str] = "session.finish"


ClientEvent = (SessionUpdate | AudioAppend | AudioCommit | AudioClear | ImageAppend | ResponseCreate
               | ResponseCancel | ItemCreate | ItemTruncate | SessionFinish)

# ---- server events


@attrs.frozen
class ErrorInfo:
    type: str = "invalid_request_error"
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "code": self.code, "message": self.message, "param": self.param,
                "event_id": self.event_id}

    def exception(self) -> RealtimeServerError:
        return RealtimeServerError(self.message, code=self.code, param=self.param, error_type=self.type,
                                   event_id=self.event_id)


@attrs.frozen(kw_only=True)
class ErrorEvent(_Event):
    TYPE: ClassVar[str] = "error"
    error: ErrorInfo


@attrs.frozen(kw_only=True)
class SessionCreated(_Event):
    TYPE: ClassVar[str] = "session.created"
    session: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)


@attrs.frozen(kw_only=True)
class SessionUpdated(_Event):
    TYPE: ClassVar[str] = "session.updated"
    session: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)


@attrs.frozen(kw_only=True)
class SessionFinished(_Event):
    TYPE: ClassVar[str] = "session.finished"


@attrs.frozen(kw_only=True)
class SpeechStarted(_Event):
    TYPE: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


@attrs.frozen(kw_only=True)
class SpeechStopped(_Event):
    TYPE: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


@attrs.frozen(kw_only=True)
class AudioCommitted(_Event):
    TYPE: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


@attrs.frozen(kw_only=True)
class AudioCleared(_Event):
    TYPE: ClassVar[str] = "input_audio_buffer.cleared"


@attrs.frozen(kw_only=True)
class ItemCreated(_Event):
    TYPE: ClassVar[str] = "conversation.item.created"
    item: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)
    previous_item_id: str | None = None


@attrs.frozen(kw_only=True)
class TranscriptionText(_Event):
    """Partial user transcript (Qwen3-ASR): ``text`` is confirmed, ``stash`` still tentative."""

    TYPE: ClassVar[str] = _TRANSCRIPTION_TEXT
    item_id: str
    content_index: int = 0
    text: str = ""
    stash: str = ""
    language: str | None = None
    emotion: str | None = None

    @property
    def display(self) -> str:
        return self.text + self.stash


@attrs.frozen(kw_only=True)
class TranscriptionDelta(TranscriptionText):
    """The Omni models' name for the same partial-transcript event."""

    TYPE: ClassVar[str] = _TRANSCRIPTION_DELTA


@attrs.frozen(kw_only=True)
class TranscriptionCompleted(_Event):
    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int = 0
    transcript: str = ""
    language: str | None = None
    emotion: str | None = None


@attrs.frozen(kw_only=True)
class TranscriptionFailed(_Event):
    TYPE: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int = 0
    error: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)


@attrs.frozen(kw_only=True)
class ResponseCreated(_Event):
    TYPE: ClassVar[str] = "response.created"
    response: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)

    @property
    def response_id(self) -> str:
        return str(self.response["id"])


@attrs.frozen(kw_only=True)
class ResponseDone(_Event):
    TYPE: ClassVar[str] = "response.done"
    response: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)

    @property
    def response_id(self) -> str:
        return str(self.response["id"])

    @property
    def status(self) -> str:
        return str(self.response.get("status") or "")


@attrs.frozen(kw_only=True)
class _ResponsePart(_Event):
    response_id: str
    item_id: str | None = None
    output_index: int = 0
    content_index: int = 0


@attrs.frozen(kw_only=True)
class OutputItemAdded(_Event):
    TYPE: ClassVar[str] = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)


@attrs.frozen(kw_only=True)
class OutputItemDone(OutputItemAdded):
    TYPE: ClassVar[str] = "response.output_item.done"


@attrs.frozen(kw_only=True)
class ContentPartAdded(_ResponsePart):
    TYPE: ClassVar[str] = "response.content_part.added"
    part: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)


@attrs.frozen(kw_only=True)
class ContentPartDone(ContentPartAdded):
    TYPE: ClassVar[str] = "response.content_part.done"


@attrs.frozen(kw_only=True)
class AudioTranscriptDelta(_ResponsePart):
    TYPE: ClassVar[str] = "response.audio_transcript.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class AudioTranscriptDone(_ResponsePart):
    TYPE: ClassVar[str] = "response.audio_transcript.done"
    transcript: str = ""


@attrs.frozen(kw_only=True)
class AudioDelta(_ResponsePart):
    TYPE: ClassVar[str] = "response.audio.delta"
    delta: bytes = attrs.field(default=b"", repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True)
class AudioDone(_ResponsePart):
    TYPE: ClassVar[str] = "response.audio.done"


@attrs.frozen(kw_only=True)
class TextDelta(_ResponsePart):
    TYPE: ClassVar[str] = "response.text.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class TextDone(_ResponsePart):
    TYPE: ClassVar[str] = "response.text.done"
    text: str = ""


@attrs.frozen(kw_only=True)
class FunctionArgumentsDelta(_ResponsePart):
    TYPE: ClassVar[str] = "response.function_call_arguments.delta"
    call_id: str = ""
    delta: str = ""


@attrs.frozen(kw_only=True)
class FunctionArgumentsDone(_ResponsePart):
    TYPE: ClassVar[str] = "response.function_call_arguments.done"
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@attrs.frozen(kw_only=True)
class UnknownServerEvent(_Event):
    """A server event type this module does not know; kept so a newer server does not break us."""

    type: str
    raw: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)


ServerEvent = (ErrorEvent | SessionCreated | SessionUpdated | SessionFinished | SpeechStarted | SpeechStopped
               | AudioCommitted | AudioCleared | ItemCreated | TranscriptionText | TranscriptionDelta
               | TranscriptionCompleted | TranscriptionFailed | ResponseCreated | ResponseDone | OutputItemAdded
               | OutputItemDone | ContentPartAdded | ContentPartDone | AudioTranscriptDelta | AudioTranscriptDone
               | AudioDelta | AudioDone | TextDelta | TextDone | FunctionArgumentsDelta | FunctionArgumentsDone
               | UnknownServerEvent)

RESPONSE_EVENTS = (OutputItemAdded, OutputItemDone, ContentPartAdded, ContentPartDone, AudioTranscriptDelta,
                   AudioTranscriptDone, AudioDelta, AudioDone, TextDelta, TextDone, FunctionArgumentsDelta,
                   FunctionArgumentsDone)

_CLIENT_TYPES: dict[str, type[_Event]] = {c.TYPE: c for c in (
    SessionUpdate, AudioAppend, AudioCommit, AudioClear, ImageAppend, ResponseCreate, ResponseCancel,
    ItemCreate, ItemTruncate, SessionFinish)}
_SERVER_TYPES: dict[str, type[_Event]] = {c.TYPE: c for c in (
    ErrorEvent, SessionCreated, SessionUpdated, SessionFinished, SpeechStarted, SpeechStopped, AudioCommitted,
    AudioCleared, ItemCreated, TranscriptionText, TranscriptionDelta, TranscriptionCompleted,
    TranscriptionFailed, ResponseCreated, ResponseDone, OutputItemAdded, OutputItemDone, ContentPartAdded,
    ContentPartDone, AudioTranscriptDelta, AudioTranscriptDone, AudioDelta, AudioDone, TextDelta, TextDone,
    FunctionArgumentsDelta, FunctionArgumentsDone)}


# ============================================================================ encode / decode


def encode(event: _Event) -> str:
    """One event as the JSON text of a WebSocket frame."""
    d: dict[str, Any] = {}
    if event.event_id is not None:
        d["event_id"] = event.event_id
    if isinstance(event, UnknownServerEvent):
        return json.dumps({**event.raw, **d, "type": event.type}, ensure_ascii=False)
    d["type"] = event.TYPE
    match event:
        case SessionUpdate():
            d["session"] = event.session.to_json()
        case AudioAppend():
            d["audio"] = base64.b64encode(event.audio).decode("ascii")
        case ImageAppend():
            d["image"] = base64.b64encode(event.image).decode("ascii")
        case ResponseCreate():
            if event.instructions is not None or event.modalities is not None:
                r: dict[str, Any] = {"instructions": event.instructions}
                if event.modalities is not None:
                    r["modalities"] = list(event.modalities)
                d["response"] = r
        case ErrorEvent():
            d["error"] = event.error.to_json()
        case AudioDelta():
            d.update(_part_ids(event))
            d["delta"] = base64.b64encode(event.delta).decode("ascii")
        case _:
            for f in attrs.fields(type(event)):
                if f.name == "event_id":
                    continue
                value = getattr(event, f.name)
                if value is None and f.name in ("language", "emotion", "previous_item_id"):
                    continue
                d[f.name] = dict(value) if isinstance(value, Mapping) else value
    return json.dumps(d, ensure_ascii=False)


def _part_ids(e: _ResponsePart) -> dict[str, Any]:
    return {"response_id": e.response_id, "item_id": e.item_id, "output_index": e.output_index,
            "content_index": e.content_index}


def _load(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        raise RealtimeProtocolError("realtime frames are JSON text; got a binary frame")
    if len(frame) > MAX_FRAME_CHARS:
        raise RealtimeProtocolError(f"realtime frame of {len(frame)} characters is too large "
                                    f"(limit {MAX_FRAME_CHARS}); send audio in smaller appends")
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        shown = frame[:40] + ("..." if len(frame) > 40 else "")
        raise RealtimeProtocolError(f"realtime frame is not valid JSON: {shown!r}") from None
    if not isinstance(obj, dict):
        raise RealtimeProtocolError(f"realtime frame must be a JSON object, got {type(obj).__name__}")
    t = obj.get("type")
    if not isinstance(t, str) or not t:
        raise RealtimeProtocolError("realtime frame has no 'type' string")
    eid = obj.get("event_id")
    if eid is not None and not isinstance(eid, str):
        raise _fail("event_id", "a string", eid)
    return obj


def decode_client(frame: str | bytes) -> ClientEvent:
    """A client event; unknown types raise :class:`RealtimeProtocolError` (the server refuses them)."""
    d = _load(frame)
    t, eid = d["type"], d.get("event_id")
    cls = _CLIENT_TYPES.get(t)
    if cls is None:
        raise RealtimeProtocolError(f"invalid event type {t!r}")
    if cls is SessionUpdate:
        s = _get_dict(d, "session", "session", required=True)
        assert s is not None
        return SessionUpdate(session=parse_session(s), event_id=eid)
    if cls is AudioAppend:
        return AudioAppend(audio=_b64(_get_str(d, "audio", "audio", required=True) or "", "audio"), event_id=eid)
    if cls is ImageAppend:
        return ImageAppend(image=_b64(_get_str(d, "image", "image", required=True) or "", "image"), event_id=eid)
    if cls is ResponseCreate:
        r = _get_dict(d, "response", "response") or {}
        mods = _get_list(r, "modalities", "response.modalities")
        if mods is not None and not all(isinstance(m, str) for m in mods):
            raise _fail("response.modalities", "a list of strings", mods)
        return ResponseCreate(instructions=_get_str(r, "instructions", "response.instructions"),
                              modalities=tuple(mods) if mods is not None else None, event_id=eid)
    if cls is ItemCreate:
        item = _get_dict(d, "item", "item", required=True)
        assert item is not None
        _get_str(item, "type", "item.type", required=True)
        if item.get("type") == "function_call_output":
            _get_str(item, "call_id", "item.call_id", required=True)
            out = item.get("output")
            if not isinstance(out, str):
                raise _fail("item.output", "a string (serialise tool results as JSON text)", out)
        return ItemCreate(item=item, event_id=eid)
    if cls is ItemTruncate:
        return ItemTruncate(item_id=_get_str(d, "item_id", "item_id", required=True) or "",
                            content_index=_get_int(d, "content_index", "content_index") or 0,
                            audio_end_ms=_get_int(d, "audio_end_ms", "audio_end_ms", required=True) or 0,
                            event_id=eid)
    return cls(event_id=eid)  # type: ignore[return-value]  # commit, clear, cancel, finish: no fields


def decode_server(frame: str | bytes) -> ServerEvent:
    """A server event; unknown types become :class:`UnknownServerEvent`."""
    d = _load(frame)
    t, eid = d["type"], d.get("event_id")
    cls = _SERVER_TYPES.get(t)
    if cls is None:
        return UnknownServerEvent(type=t, raw=d, event_id=eid)
    if cls is ErrorEvent:
        e = _get_dict(d, "error", "error", required=True)
        assert e is not None
        return ErrorEvent(error=ErrorInfo(_get_str(e, "type", "error.type") or "error",
                                          _get_str(e, "code", "error.code"),
                                          _get_str(e, "message", "error.message") or "",
                                          _get_str(e, "param", "error.param"),
                                          _get_str(e, "event_id", "error.event_id")), event_id=eid)
    if cls in (SessionCreated, SessionUpdated):
        return cls(session=_get_dict(d, "session", "session", required=True) or {}, event_id=eid)
    if cls in (ResponseCreated, ResponseDone):
        r = _get_dict(d, "response", "response", required=True)
        assert r is not None
        _get_str(r, "id", "response.id", required=True)
        _get_str(r, "status", "response.status")
        return cls(response=r, event_id=eid)
    if cls is AudioDelta:
        return AudioDelta(delta=_b64(_get_str(d, "delta", "delta", required=True) or "", "delta"),
                          event_id=eid, **_decode_part_ids(d))
    kw: dict[str, Any] = {}
    for f in attrs.fields(cls):
        if f.name == "event_id":
            continue
        required = f.default is attrs.NOTHING
        if f.type in ("str", "str | None"):
            kw[f.name] = _get_str(d, f.name, f.name, required=required)
        elif f.type in ("int", "int | None"):
            kw[f.name] = _get_int(d, f.name, f.name, required=required)
        else:  # a mapping
            kw[f.name] = _get_dict(d, f.name, f.name, required=required)
        if kw[f.name] is None:
            if required:  # pragma: no cover - the getters raise first
                raise RealtimeProtocolError(f"realtime event {t!r} is missing {f.name!r}")
            if f.type in ("str", "int") or "Mapping" in str(f.type):
                del kw[f.name]
    return cls(event_id=eid, **kw)  # type: ignore[return-value]


def _decode_part_ids(d: Mapping[str, Any]) -> dict[str, Any]:
    return {"response_id": _get_str(d, "response_id", "response_id", required=True),
            "item_id": _get_str(d, "item_id", "item_id"),
            "output_index": _get_int(d, "output_index", "output_index") or 0,
            "content_index": _get_int(d, "content_index", "content_index") or 0}


# ============================================================================ state machines


class Phase(enum.Enum):
    CONNECTING = "connecting"  # waiting for session.created
    OPEN = "open"
    FINISHING = "finishing"  # session.finish sent / received
    FINISHED = "finished"


class ClientRealtimeProtocol:
    """The client's view of one realtime session.

    :meth:`send` encodes a client event after checking it is allowed now; :meth:`receive` decodes
    a server frame and checks it fits what came before. Both raise :class:`RealtimeStateError`
    for out-of-order traffic and :class:`RealtimeProtocolError` for malformed frames.
    """

    def __init__(self, model: RealtimeModel, *, ids: IdMaker | None = None) -> None:
        self.model = model
        self.ids = ids or IdMaker()
        self.phase = Phase.CONNECTING
        self.session: dict[str, Any] = {}
        self.session_id: str | None = None
        self.config = SessionConfig()  # what we asked for so far
        self.active_response: str | None = None
        self.responses: dict[str, str] = {}  # id -> last status ("in_progress", "completed", ...)
        self.cancel_event_ids: set[str] = set()
        self.updates_pending = 0
        self.audio_bytes = 0

    @property
    def manual(self) -> bool:
        return self.config.turn_detection is None

    def send(self, event: ClientEvent) -> str:
        if self.phase is Phase.CONNECTING:
            raise RealtimeStateError(f"cannot send {event.TYPE} before session.created arrives")
        if self.phase is not Phase.OPEN:
            raise RealtimeStateError(f"cannot send {event.TYPE} after session.finish")
        if event.event_id is None:
            event = attrs.evolve(event, event_id=self.ids("event"))
        match event:
            case SessionUpdate():
                issues = check_session(self.model, event.session)
                if issues:
                    raise ConfigError("; ".join(f"{i.param}: {i.message}" for i in issues))
                self.config = self.config.merged(event.session)
                self.updates_pending += 1
            case AudioAppend():
                if len(event.audio) > MAX_APPEND_BYTES:
                    raise RealtimeStateError(f"an audio append may carry at most 15 MiB, not {len(event.audio)} bytes")
                self.audio_bytes += len(event.audio)
            case AudioCommit():
                if not self.manual:
                    raise RealtimeStateError("input_audio_buffer.commit is for manual mode (turn_detection null); "
                                             "with server VAD the server commits by itself")
            case ResponseCancel():
                if self.active_response is None:
                    raise RealtimeStateError("response.cancel with no response in progress")
                assert event.event_id is not None
                self.cancel_event_ids.add(event.event_id)
            case ResponseCreate() | ItemCreate() | ItemTruncate() | ImageAppend():
                if not self.model.is_omni:
                    raise RealtimeStateError(f"{event.TYPE} is an Omni event; {self.model.name} only transcribes")
            case SessionFinish():
                self.phase = Phase.FINISHING
        return encode(event)

    def receive(self, frame: str | bytes) -> ServerEvent:
        event = decode_server(frame)
        if self.phase is Phase.CONNECTING:
            if isinstance(event, SessionCreated):
                self.phase = Phase.OPEN
                self.session = dict(event.session)
                sid = self.session.get("id")
                self.session_id = sid if isinstance(sid, str) else None
                return event
            if isinstance(event, ErrorEvent):
                return event
            raise RealtimeStateError(f"expected session.created first, got {_type(event)}")
        if self.phase is Phase.FINISHED:
            raise RealtimeStateError(f"{_type(event)} after session.finished")
        match event:
            case SessionCreated():
                raise RealtimeStateError("a second session.created on one connection")
            case SessionUpdated():
                self.session = dict(event.session)
                self.updates_pending = max(0, self.updates_pending - 1)
            case SessionFinished():
                if self.phase is not Phase.FINISHING:
                    raise RealtimeStateError("session.finished without session.finish")
                self.phase = Phase.FINISHED
            case ResponseCreated():
                rid = event.response_id
                if self.active_response is not None:
                    raise RealtimeStateError(f"response {rid} created while {self.active_response} is still "
                                             "in progress")
                self.active_response = rid
                self.responses[rid] = "in_progress"
            case ResponseDone():
                rid = event.response_id
                if rid not in self.responses:
                    raise RealtimeStateError(f"response.done for unknown response {rid}")
                self.responses[rid] = event.status or "completed"
                if self.active_response == rid:
                    self.active_response = None
                if len(self.responses) > 64:  # keep memory flat on long sessions
                    for old in list(self.responses)[:-32]:
                        del self.responses[old]
            case ErrorEvent():
                if event.error.event_id in self.cancel_event_ids:
                    self.cancel_event_ids.discard(event.error.event_id)
            case _ if isinstance(event, RESPONSE_EVENTS):
                rid = event.response_id
                if rid not in self.responses:
                    raise RealtimeStateError(f"{_type(event)} for unknown response {rid}")
        return event

    def is_stale(self, event: ServerEvent) -> bool:
        """True for a response event of a response that is no longer in progress (e.g. cancelled)."""
        rid = getattr(event, "response_id", None)
        return isinstance(event, RESPONSE_EVENTS) and rid != self.active_response


def _type(event: Any) -> str:
    return str(getattr(event, "type", None) or getattr(event, "TYPE", type(event).__name__))


@attrs.frozen
class Violation:
    """What the server should answer to a client frame it refuses."""

    reply: ErrorEvent
    fatal: bool = False


class ServerRealtimeProtocol:
    """The server's view of one realtime session (used by the emulator).

    :meth:`receive` returns the decoded client event, or a :class:`Violation` holding the
    ``error`` event to send back; it applies accepted ``session.update`` s to :attr:`config`.
    :meth:`send` encodes server events (filling ids) and tracks the response in progress.
    """

    def __init__(self, model: RealtimeModel, *, ids: IdMaker | None = None, accept_truncate: bool = False,
                 session_finish: bool = True, lock_format_after_audio: bool = True) -> None:
        self.model = model
        self.ids = ids or IdMaker()
        self.accept_truncate = accept_truncate
        self.session_finish = session_finish
        self.lock_format_after_audio = lock_format_after_audio
        self.phase = Phase.CONNECTING
        self.session_id = self.ids("sess")
        self.session: dict[str, Any] = default_session(model, self.session_id)
        self.config = SessionConfig(turn_detection=TurnDetection("server_vad", model.default_threshold,
                                                                 model.default_silence_ms))
        self.active_response: str | None = None
        self.audio_seen = False
        self.buffer_bytes = 0

    # -- client → server

    def _error(self, message: str, *, param: str | None = None, code: str = "invalid_value",
               event_id: str | None = None, fatal: bool = False) -> Violation:
        return Violation(ErrorEvent(error=ErrorInfo("invalid_request_error", code, message, param, event_id),
                                    event_id=self.ids("event")), fatal)

    def receive(self, frame: str | bytes) -> ClientEvent | Violation:
        try:
            event = decode_client(frame)
        except RealtimeProtocolError as exc:
            text = str(exc)
            code = "invalid_event_type" if text.startswith("invalid event type") else "invalid_request"
            return self._error(text, code=code)
        eid = event.event_id
        if isinstance(event, ItemTruncate) and not self.accept_truncate:
            return self._error(f"invalid event type {event.TYPE!r}", code="invalid_event_type", event_id=eid)
        if self.phase is Phase.FINISHING or self.phase is Phase.FINISHED:
            return self._error(f"{event.TYPE} after session.finish", code="invalid_state", event_id=eid)
        if not self.model.is_omni and isinstance(event, (ResponseCreate, ResponseCancel, ItemCreate, ImageAppend)):
            return self._error(f"invalid event type {event.TYPE!r}", code="invalid_event_type", event_id=eid)
        match event:
            case SessionUpdate():
                issues = check_session(self.model, event.session)
                if issues:
                    i = issues[0]
                    return self._error(i.message, param=i.param, code=i.code, event_id=eid)
                u = event.session
                if self.audio_seen and self.lock_format_after_audio and (
                        u.input_format is not None or u.sample_rate is not None
                        or (u.input_audio_format is not None and u.input_audio_format != self.config.input_audio_format)
                        or (u.turn_detection is not UNSET and u.turn_detection != self.config.turn_detection)):
                    return self._error("the input audio format and turn_detection cannot change after audio "
                                       "was sent; set them in the first session.update", param="session",
                                       event_id=eid)
                self.config = self.config.merged(event.session)
                self.session = effective_session(self.model, self.session, event.session)
            case AudioAppend():
                self.audio_seen = True
                self.buffer_bytes += len(event.audio)
            case AudioCommit():
                if not self.config.manual:
                    return self._error("input_audio_buffer.commit is not available in server VAD mode",
                                       code="invalid_state", event_id=eid)
                if self.buffer_bytes == 0:
                    return self._error("Error committing input audio buffer: the buffer is empty.",
                                       code="input_audio_buffer_commit_empty", event_id=eid)
                self.buffer_bytes = 0
            case AudioClear():
                self.buffer_bytes = 0
            case ResponseCancel():
                if self.active_response is None:
                    return self._error("Cancellation failed: no active response found.",
                                       code="response_cancel_not_active", event_id=eid)
            case ResponseCreate():
                if self.active_response is not None:
                    return self._error(f"Conversation already has an active response {self.active_response}",
                                       code="conversation_already_has_active_response", event_id=eid)
            case SessionFinish():
                if not self.session_finish:
                    return self._error(f"invalid event type {event.TYPE!r}", code="invalid_event_type", event_id=eid)
                self.phase = Phase.FINISHING
        return event

    # -- server → client

    def send(self, event: ServerEvent) -> str:
        if event.event_id is None:
            event = attrs.evolve(event, event_id=self.ids("event"))
        match event:
            case SessionCreated():
                if self.phase is not Phase.CONNECTING:
                    raise RealtimeStateError("session.created was already sent")
                self.phase = Phase.OPEN
            case ResponseCreated():
                if self.active_response is not None:
                    raise RealtimeStateError("a response is already in progress")
                self.active_response = event.response_id
            case ResponseDone():
                if self.active_response == event.response_id:
                    self.active_response = None
            case SessionFinished():
                self.phase = Phase.FINISHED
            case AudioCommitted():
                self.buffer_bytes = 0
        return encode(event)
