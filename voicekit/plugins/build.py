"""Build components from plugin names and options (what the CLI and config files use)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from voicekit.asr.base import ASREngine
from voicekit.errors import ConfigError, PluginError
from voicekit.handlers.assistant import Assistant
from voicekit.plugins.options import coerce_options
from voicekit.plugins.registry import load
from voicekit.tts.base import TTSEngine
from voicekit.vad.base import VADBackend

DEFAULT_ASR = "moonshine"
DEFAULT_VAD = "webrtc"
DEFAULT_TTS = "espeak"


def _construct(group: str, name: str, factory: Any, options: dict[str, Any]) -> Any:
    """Check ``options`` against the plugin's declared schema, then build the plugin.

    Text values (from ``--asr-option KEY=VALUE`` or a config file) are parsed for the option's
    type; Python values are checked. See :mod:`voicekit.plugins.options`.
    """
    what = f"{group} plugin {name!r}"
    checked = coerce_options(what, factory, options)
    try:
        return factory(**checked)
    except TypeError as exc:
        raise ConfigError(f"bad options for {what}: {str(exc)[:200]}") from None
    except ValueError as exc:  # a plugin's own check that did not use ConfigError
        raise ConfigError(f"bad options for {what}: {str(exc)[:200]}") from None


def make_asr(name: str = DEFAULT_ASR, **options: Any) -> ASREngine:
    return _construct("asr", name, load("asr", name), options)  # type: ignore[no-any-return]


def make_vad(name: str = DEFAULT_VAD, **options: Any) -> VADBackend:
    return _construct("vad", name, load("vad", name), options)  # type: ignore[no-any-return]


def make_tts(name: str = DEFAULT_TTS, **options: Any) -> TTSEngine:
    return _construct("tts", name, load("tts", name), options)  # type: ignore[no-any-return]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _import_from_cwd(module_name: str) -> Any:
    """Import ``module_name`` with the current folder importable, as ``python -m`` does."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path and os.curdir not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def load_assistant(spec: str) -> Assistant:
    """An installed assistant by name, or ``module:attribute`` (modules in the current folder too).

    Every failure — a missing module, a syntax error in it, an import that raises, a factory that
    raises — is a :class:`PluginError` with one line naming the spec and the cause.
    """
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise PluginError(f"cannot load assistant {spec!r}: write it as module:attribute, e.g. my_bot:assistant")
        try:
            module = _import_from_cwd(module_name)
        except SyntaxError as exc:
            where = f"{os.path.basename(exc.filename or module_name)}, line {exc.lineno}"
            raise PluginError(f"cannot load assistant {spec!r}: syntax error in {where}: {exc.msg} "
                              "— fix the module") from exc
        except ImportError as exc:
            raise PluginError(f"cannot load assistant {spec!r}: {exc} — run voicekit in the folder that "
                              "holds the module, or install it") from exc
        except Exception as exc:
            raise PluginError(f"cannot load assistant {spec!r}: importing {module_name!r} raised "
                              f"{type(exc).__name__}: {_first_line(exc)}") from exc
        try:
            obj = getattr(module, attr)
        except AttributeError as exc:
            raise PluginError(f"cannot load assistant {spec!r}: module {module_name!r} has no attribute "
                              f"{attr!r}") from exc
    else:
        obj = load("assistants", spec)
    if callable(obj) and not isinstance(obj, Assistant):
        try:
            obj = obj()
        except Exception as exc:
            raise PluginError(f"assistant factory {spec!r} raised {type(exc).__name__}: {_first_line(exc)} "
                              "— fix the factory") from exc
    if not isinstance(obj, Assistant):
        raise PluginError(f"{spec!r} is a {type(obj).__name__}, not a voicekit Assistant")
    return obj


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``["key=value", ...]`` → ``{key: "value"}``, text kept as given.

    The values are typed later, by the plugin's option schema (:func:`make_asr` and friends):
    ``hotwords=a,b`` becomes a list, ``retry=5`` a number, ``api_key=123…`` stays text.
    """
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = pair if len(pair) <= 40 else pair[:40] + "…"
            raise ConfigError(f"option {shown!r} must look like KEY=VALUE")
        out[key.replace("-", "_")] = raw
    return out
