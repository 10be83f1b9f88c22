"""The ``session`` object of ``session.update``: typed config, parsing, and what the server echoes."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from voicekit_dashscope.protocol._util import Fields, dict_of, tuple_or_none
from voicekit_dashscope.protocol.realtime._models import RealtimeModel

F = Fields("realtime event")

class _Unset(enum.Enum):
    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET



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
                                                converter=dict_of, hash=False)

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

    modalities: tuple[str, ...] | None = attrs.field(default=None, converter=tuple_or_none)
    voice: str | _Unset | None = UNSET
    instructions: str | None = None
    input_audio_format: str | None = None
    output_audio_format: str | None = None
    sample_rate: int | None = None
    input_format: AudioFormat | None = None
    output_format: AudioFormat | None = None
    transcription: Transcription | _Unset | None = UNSET
    turn_detection: TurnDetection | _Unset | None = UNSET
    tools: tuple[ToolSpec, ...] | None = attrs.field(default=None, converter=tuple_or_none)
    enable_search: bool | None = None
    smooth_output: bool | _Unset | None = UNSET
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=dict_of, hash=False)

    @property
    def manual(self) -> bool:
        return self.turn_detection is None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for key, write in _WIRE:
            value = write(self)
            if value is not _SKIP:
                d[key] = value
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    def _audio_json(self) -> dict[str, Any] | object:
        audio: dict[str, Any] = {}
        if self.input_format is not None:
            audio["input"] = {"format": self.input_format.to_json()}
        if self.output_format is not None:
            audio["output"] = {"format": self.output_format.to_json()}
        return audio or _SKIP

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

_SKIP = object()  # a field that is not sent


def _unless_none(name: str) -> Callable[[SessionConfig], Any]:
    return lambda c: _SKIP if getattr(c, name) is None else getattr(c, name)


def _unless_unset(name: str, to_json: Callable[[Any], Any] = lambda v: v) -> Callable[[SessionConfig], Any]:
    def write(c: SessionConfig) -> Any:
        value = getattr(c, name)
        return _SKIP if value is UNSET else None if value is None else to_json(value)
    return write


# The ``session`` object's keys in the order they are sent, each with how it is written.
_WIRE: tuple[tuple[str, Callable[[SessionConfig], Any]], ...] = (
    ("modalities", lambda c: _SKIP if c.modalities is None else list(c.modalities)),
    ("voice", _unless_unset("voice")),
    *((name, _unless_none(name)) for name in ("instructions", "input_audio_format", "output_audio_format",
                                               "sample_rate")),
    ("audio", SessionConfig._audio_json),
    ("input_audio_transcription", _unless_unset("transcription", lambda t: t.to_json())),
    ("turn_detection", _unless_unset("turn_detection", lambda t: t.to_json())),
    ("tools", lambda c: _SKIP if c.tools is None else [t.to_json() for t in c.tools]),
    ("enable_search", _unless_none("enable_search")),
    ("smooth_output", _unless_unset("smooth_output")),
    *((name, _unless_none(name)) for name in _SAMPLING),
)


def parse_session(d: Mapping[str, Any], path: str = "session") -> SessionConfig:
    """A ``session`` object (from ``session.update``) as a :class:`SessionConfig`.

    Every field is type-checked (a wrong type raises :class:`ProtocolError` naming its path);
    whether a value suits the model is :func:`check_session`'s business."""
    kw: dict[str, Any] = {"extra": {k: v for k, v in d.items() if k not in _KNOWN}}
    kw["modalities"] = F.strings(d, "modalities", f"{path}.modalities")
    for name, read in _SCALARS:
        kw[name] = read(d, name, f"{path}.{name}")
    for name, read in _SET_WHEN_PRESENT:
        if name in d:
            kw[name] = read(d, name, f"{path}.{name}")
    audio = F.mapping(d, "audio", f"{path}.audio")
    if audio is not None:
        kw.update(_parse_audio(audio, f"{path}.audio"))
    if "input_audio_transcription" in d:
        kw["transcription"] = _parse_transcription(d["input_audio_transcription"],
                                                   f"{path}.input_audio_transcription")
    if "turn_detection" in d:
        kw["turn_detection"] = _parse_turn_detection(d["turn_detection"], f"{path}.turn_detection")
    tools = F.array(d, "tools", f"{path}.tools")
    if tools is not None:
        kw["tools"] = tuple(_parse_tool(t, f"{path}.tools[{i}]") for i, t in enumerate(tools))
    return SessionConfig(**kw)


_KNOWN = frozenset({"modalities", "voice", "instructions", "input_audio_format", "output_audio_format",
                    "sample_rate", "audio", "input_audio_transcription", "turn_detection", "tools",
                    "enable_search", "smooth_output", *_SAMPLING})
# fields read the same way every time: (name, reader); ``None`` when absent
_SCALARS: tuple[tuple[str, Any], ...] = (
    ("instructions", F.text), ("input_audio_format", F.text), ("output_audio_format", F.text),
    ("sample_rate", F.integer), ("enable_search", F.flag),
    ("temperature", F.number), ("top_p", F.number), ("repetition_penalty", F.number),
    ("presence_penalty", F.number), ("top_k", F.integer), ("max_tokens", F.integer), ("seed", F.integer))
# fields where an explicit ``null`` differs from leaving the field out (``UNSET``)
_SET_WHEN_PRESENT: tuple[tuple[str, Any], ...] = (("voice", F.text), ("smooth_output", F.flag))
_DEFAULT_RATES = {"input": 16000, "output": 24000}


def _parse_audio(audio: Mapping[str, Any], path: str) -> dict[str, AudioFormat]:
    out: dict[str, AudioFormat] = {}
    for side, default_rate in _DEFAULT_RATES.items():
        sd = F.mapping(audio, side, f"{path}.{side}")
        fmt = F.mapping(sd, "format", f"{path}.{side}.format") if sd is not None else None
        if fmt is not None:
            p = f"{path}.{side}.format"
            out[f"{side}_format"] = AudioFormat(F.text(fmt, "type", f"{p}.type") or "pcm",
                                                F.integer(fmt, "sample_rate", f"{p}.sample_rate") or default_rate)
    return out


def _parse_transcription(tr: Any, p: str) -> Transcription | None:
    if tr is None:
        return None
    if not isinstance(tr, dict):
        raise F.fail(p, "an object or null", tr)
    corpus = F.mapping(tr, "corpus", f"{p}.corpus")
    return Transcription(
        language=F.text(tr, "language", f"{p}.language"),
        corpus_text=F.text(corpus, "text", f"{p}.corpus.text") if corpus is not None else None,
        model=F.text(tr, "model", f"{p}.model") if "model" in tr else UNSET)


def _parse_turn_detection(td: Any, p: str) -> TurnDetection | None:
    if td is None:
        return None
    if not isinstance(td, dict):
        raise F.fail(p, "an object or null", td)
    return TurnDetection(
        type=F.text(td, "type", f"{p}.type") or "server_vad",
        threshold=F.number(td, "threshold", f"{p}.threshold"),
        silence_duration_ms=F.integer(td, "silence_duration_ms", f"{p}.silence_duration_ms"),
        prefix_padding_ms=F.integer(td, "prefix_padding_ms", f"{p}.prefix_padding_ms"),
        idle_timeout_ms=F.integer(td, "idle_timeout_ms", f"{p}.idle_timeout_ms"),
        create_response=F.flag(td, "create_response", f"{p}.create_response"),
        interrupt_response=F.flag(td, "interrupt_response", f"{p}.interrupt_response"))


def _parse_tool(t: Any, p: str) -> ToolSpec:
    if not isinstance(t, dict):
        raise F.fail(p, "an object", t)
    fn = F.mapping(t, "function", f"{p}.function", required=True)
    assert fn is not None
    params = F.mapping(fn, "parameters", f"{p}.function.parameters")
    return ToolSpec(F.text(fn, "name", f"{p}.function.name", required=True) or "",
                    F.text(fn, "description", f"{p}.function.description") or "",
                    params if params is not None else {"type": "object", "properties": {}})


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

