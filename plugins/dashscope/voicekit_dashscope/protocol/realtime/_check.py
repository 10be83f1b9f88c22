"""Which ``session.update`` values each realtime model accepts: :func:`check_session`.

The numeric limits are data (:data:`RANGES`); the rules that depend on the model are small
functions, run in a fixed order so the first issue is always the same one. The emulator answers
the first issue with an ``error`` event; the client refuses to send a config with any.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from voicekit_dashscope.protocol.realtime._models import RealtimeModel
from voicekit_dashscope.protocol.realtime._session import UNSET, SessionConfig, TurnDetection


@attrs.frozen
class SessionIssue:
    """One reason a session config is refused: the parameter path and a message to act on."""

    param: str
    message: str
    code: str = "invalid_value"


@attrs.frozen
class Range:
    """The documented interval of one numeric setting; ``also`` lists allowed values outside it
    (``seed: -1``). ``field`` is the dotted path below ``session``."""

    field: str
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    also: tuple[float, ...] = ()

    @property
    def shown(self) -> str:
        """The interval as the messages write it, e.g. ``[0, 2)``."""
        def num(x: float) -> str:
            return "2^31-1" if x == 2**31 - 1 else str(x)
        return f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"

    def contains(self, value: float) -> bool:
        if value in self.also:
            return True
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def value(self, cfg: SessionConfig) -> Any:
        obj: Any = cfg
        for part in self.field.split("."):
            obj = getattr(obj, part, None)
        return obj

    def issue(self, cfg: SessionConfig) -> SessionIssue | None:
        v = self.value(cfg)
        if v is None or self.contains(v):
            return None
        name = self.field.rsplit(".", 1)[-1]
        return SessionIssue(f"session.{self.field}", f"{name} must be within {self.shown}, not {v}")


TURN_RANGES = (Range("turn_detection.threshold", -1.0, 1.0),
               Range("turn_detection.silence_duration_ms", 200, 6000))
IDLE_TIMEOUT_RANGE = Range("turn_detection.idle_timeout_ms", 5000, 30000)
SAMPLING_RANGES = (Range("temperature", 0, 2, hi_open=True),
                   Range("top_p", 0, 1, lo_open=True),
                   Range("presence_penalty", -2, 2),
                   Range("seed", 0, 2**31 - 1, also=(-1,)))
RANGES = (*TURN_RANGES, IDLE_TIMEOUT_RANGE, *SAMPLING_RANGES)
OMNI_MODALITIES = (["text"], ["audio", "text"])
OUTPUT_AUDIO_FORMATS = ("pcm", "pcm16", "pcm24")
NESTED_FORMAT_TYPES = ("pcm", "wav")

Rule = Callable[[RealtimeModel, SessionConfig, bool], Iterator[tuple[str, str]]]


def check_session(model: RealtimeModel, cfg: SessionConfig, *, lenient_formats: bool = True) -> list[SessionIssue]:
    """Every documented constraint ``cfg`` breaks for ``model`` (empty when it is acceptable).

    ``lenient_formats=False`` holds the Omni models to their first two documented input formats."""
    issues = [SessionIssue(f"session.{param}", message)
              for rule in _RULES for param, message in rule(model, cfg, lenient_formats)]
    issues += [i for r in SAMPLING_RANGES if (i := r.issue(cfg)) is not None]
    return issues


def _modalities(model: RealtimeModel, cfg: SessionConfig, _: bool) -> Iterator[tuple[str, str]]:
    if cfg.modalities is None:
        return
    mods = sorted(cfg.modalities)
    if model.is_omni and mods not in OMNI_MODALITIES:
        yield "modalities", (f"Invalid modalities: {list(cfg.modalities)}. Supported combinations are: "
                             "['text'] and ['audio', 'text'].")
    elif not model.is_omni and mods != ["text"]:
        yield "modalities", f"{model.name} only produces text: modalities must be ['text']"


def _voice(model: RealtimeModel, cfg: SessionConfig, _: bool) -> Iterator[tuple[str, str]]:
    if not isinstance(cfg.voice, str):
        return
    if not model.output_audio:
        yield "voice", f"{model.name} does not speak, so it takes no voice; leave voice unset"
    if not cfg.voice.strip():
        yield "voice", "voice must be a voice name such as 'Tina' or 'Cherry'"


def _flat_formats(model: RealtimeModel, cfg: SessionConfig, lenient: bool) -> Iterator[tuple[str, str]]:
    if cfg.input_audio_format is not None:
        allowed = model.input_formats if (lenient or not model.is_omni) else model.input_formats[:2]
        if cfg.input_audio_format not in allowed:
            yield "input_audio_format", (f"Invalid value: {cfg.input_audio_format!r}. Supported values are: "
                                         + ", ".join(repr(f) for f in allowed) + ".")
    out = cfg.output_audio_format
    if model.is_omni and out is not None and out not in OUTPUT_AUDIO_FORMATS:
        yield "output_audio_format", f"Invalid value: {out!r}. Supported values are: 'pcm'."
    if cfg.sample_rate is not None and not model.is_omni and cfg.sample_rate not in model.input_rates:
        yield "sample_rate", f"sample_rate must be 16000 or 8000 for {model.name}, not {cfg.sample_rate}"


def _nested_formats(model: RealtimeModel, cfg: SessionConfig, _: bool) -> Iterator[tuple[str, str]]:
    for side, fmt, rates in (("input", cfg.input_format, model.input_rates),
                             ("output", cfg.output_format, model.output_rates)):
        if fmt is None:
            continue
        if not model.nested_audio_format:
            yield (f"audio.{side}.format", f"{model.name} does not take the nested audio format; "
                                           "use input_audio_format/output_audio_format")
            continue
        if fmt.type not in NESTED_FORMAT_TYPES:
            yield f"audio.{side}.format.type", f"audio format type must be 'pcm' or 'wav', not {fmt.type!r}"
        if fmt.sample_rate not in rates:
            yield (f"audio.{side}.format.sample_rate",
                   f"sample rate must be one of {', '.join(map(str, rates))}, not {fmt.sample_rate}")


def _turn_detection(model: RealtimeModel, cfg: SessionConfig, _: bool) -> Iterator[tuple[str, str]]:
    td = cfg.turn_detection
    if not isinstance(td, TurnDetection):
        return
    kinds = ("server_vad", "semantic_vad") if model.semantic_vad else ("server_vad",)
    if td.type not in kinds:
        hint = " (semantic_vad is only for the qwen3.5-omni realtime models)" if td.type == "semantic_vad" else ""
        yield "turn_detection.type", f"turn_detection.type must be one of {', '.join(kinds)}, not {td.type!r}{hint}"
    for r in TURN_RANGES:
        if (issue := r.issue(cfg)) is not None:
            yield issue.param.removeprefix("session."), issue.message
    if td.idle_timeout_ms is None:
        return
    if not model.idle_timeout or td.type != "server_vad":
        yield ("turn_detection.idle_timeout_ms",
               "idle_timeout_ms is only for qwen3.5-omni realtime models with server_vad")
    elif (issue := IDLE_TIMEOUT_RANGE.issue(cfg)) is not None:
        yield issue.param.removeprefix("session."), issue.message


def _tools(model: RealtimeModel, cfg: SessionConfig, _: bool) -> Iterator[tuple[str, str]]:
    if not cfg.tools:
        return
    if model.tools is False:
        yield "tools", f"{model.name} does not support function calling"
    if cfg.enable_search:
        yield "tools", "enable_search cannot be combined with tools; drop one of them"
    for t in cfg.tools:
        if not t.name or len(t.name) > 64 or not all(c.isalnum() or c in "_-" for c in t.name):
            yield "tools", f"tool name {t.name!r} must be 1-64 letters, digits, '_' or '-'"
    names = [t.name for t in cfg.tools]
    if len(set(names)) != len(names):
        yield "tools", "two tools have the same name"


def _smooth_output(model: RealtimeModel, cfg: SessionConfig, _: bool) -> Iterator[tuple[str, str]]:
    if cfg.smooth_output is not UNSET and cfg.smooth_output is not None and not model.smooth_output:
        yield "smooth_output", "smooth_output is only for qwen3-omni-flash-realtime"


_RULES: tuple[Rule, ...] = (_modalities, _voice, _flat_formats, _nested_formats, _turn_detection, _tools,
                            _smooth_output)
