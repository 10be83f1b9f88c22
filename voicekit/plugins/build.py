"""Build components from plugin names and options (what the CLI and config files use)."""

from __future__ import annotations

import importlib
from typing import Any

from voicekit.asr.base import ASREngine
from voicekit.errors import ConfigError, PluginError
from voicekit.handlers.assistant import Assistant
from voicekit.plugins.registry import load
from voicekit.tts.base import TTSEngine
from voicekit.vad.base import VADBackend

DEFAULT_ASR = "moonshine"
DEFAULT_VAD = "webrtc"
DEFAULT_TTS = "espeak"


def _construct(group: str, name: str, factory: Any, options: dict[str, Any]) -> Any:
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for {group} plugin {name!r}: {exc}") from exc


def make_asr(name: str = DEFAULT_ASR, **options: Any) -> ASREngine:
    return _construct("asr", name, load("asr", name), options)  # type: ignore[no-any-return]


def make_vad(name: str = DEFAULT_VAD, **options: Any) -> VADBackend:
    return _construct("vad", name, load("vad", name), options)  # type: ignore[no-any-return]


def make_tts(name: str = DEFAULT_TTS, **options: Any) -> TTSEngine:
    return _construct("tts", name, load("tts", name), options)  # type: ignore[no-any-return]


def load_assistant(spec: str) -> Assistant:
    """An installed assistant by name, or ``package.module:attribute``."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"cannot load assistant {spec!r}: {exc}") from exc
    else:
        obj = load("assistants", spec)
    if callable(obj) and not isinstance(obj, Assistant):
        obj = obj()
    if not isinstance(obj, Assistant):
        raise PluginError(f"{spec!r} is a {type(obj).__name__}, not a voicekit Assistant")
    return obj


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` → dict; values parsed as int, float, bool or kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {pair!r} must look like key=value")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for conv in (int, float):
                try:
                    value = conv(raw)
                    break
                except ValueError:
                    pass
        out[key.replace("-", "_")] = value
    return out
