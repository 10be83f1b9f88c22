"""Typed plugin options: each plugin declares its settings as data, the core checks and converts them.

A plugin class lists its settings in a ``options`` class attribute, a tuple of :class:`Option`::

    class MyASR:
        options = (
            Option("model", "enum", "tiny", choices=("tiny", "base"), help="model size"),
            Option("hotwords", "list", (), help="words to favour"),
            Option("api_key", "secret", None, help="key (default: $MY_KEY)"),
        )

:func:`coerce_options` is what :func:`voicekit.plugins.build.make_asr` (and the CLI's
``--asr-option KEY=VALUE``) goes through: an unknown key is refused with the valid ones and the
closest match; a text value is parsed for the option's kind (a list is comma separated, a number,
a boolean ``true/false/yes/no/on/off/1/0``, one of an enum's choices, JSON for ``json``); a
Python value of the wrong type is refused. Every refusal is one line naming the plugin, the key,
the expected type and the value (cut short; a secret is never shown).

Kinds: ``str``, ``secret`` (a string that is never echoed), ``int``, ``float``, ``bool``,
``enum``, ``list`` (items of kind ``item``: ``str``, ``int`` or ``float``), ``json`` (a JSON
value from text; any value from Python) and ``object`` (settable from Python only).
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from voicekit.errors import ConfigError

KINDS = ("str", "secret", "int", "float", "bool", "enum", "list", "json", "object")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_SHOW = 40  # characters of a bad value shown in an error


def _check_kind(_: Any, __: Any, value: str) -> None:
    if value not in KINDS:
        raise ValueError(f"option kind {value!r} is not one of {', '.join(KINDS)}")


def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class Option:
    """One setting of a plugin: name, kind, default and a line of help."""

    name: str
    kind: str = attrs.field(validator=_check_kind)
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    item: str = "str"  # the kind of a list's items: str, int or float
    minimum: float | None = None
    maximum: float | None = None
    convert: Callable[[Any], Any] | None = attrs.field(default=None, eq=False, repr=False)
    """Applied to the checked value before it reaches the plugin (e.g. an int → a policy object)."""

    @property
    def type_name(self) -> str:
        """How the type reads in ``voicekit plugins NAME`` and in errors."""
        if self.kind == "enum":
            return "one of " + "|".join(self.choices)
        if self.kind == "list":
            item = {"str": "text", "int": "integers", "float": "numbers"}.get(self.item, self.item)
            return f"a list of {item} (comma separated)"
        if self.kind == "object":
            return "Python object (API only)"
        if self.kind == "int" and self.choices:
            return "one of " + "|".join(self.choices)
        return {"str": "text", "secret": "text (secret)", "int": "an integer", "float": "a number",
                "bool": "true or false", "json": "JSON"}[self.kind]

    def shown_default(self) -> str:
        if self.kind == "secret" and self.default:
            return "<redacted>"
        if self.default is None:
            return "-"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, (list, tuple)):
            return ",".join(map(str, self.default)) or "(empty)"
        return str(self.default)


def _cut(value: Any) -> str:
    """A bad value as shown in an error: text quoted, anything else as its repr; cut short."""
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ")
    text = text if len(text) <= _SHOW else text[:_SHOW] + "…"
    return repr(text) if isinstance(value, str) else text


def _number(kind: str, raw: str) -> int | float:
    text = raw.strip().replace("_", "")
    if kind == "int":
        return int(text)
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not finite")
    return value


class _Bad(Exception):
    """A value that does not fit an option (turned into one ConfigError line)."""


def _parse_item(kind: str, raw: str) -> Any:
    if kind == "str":
        return raw
    try:
        return _number(kind, raw)
    except ValueError:
        raise _Bad(kind) from None


def _as_text(opt: Option, value: Any) -> Any:
    # a secret may also be a key object (e.g. an ApiKey), never a number
    if not isinstance(value, str) and (opt.kind == "str" or isinstance(value, (int, float, bytes))):
        raise _Bad(opt.type_name)
    return value


def _as_object(opt: Option, value: Any) -> Any:
    if isinstance(value, str):
        raise _Bad("a Python object: it cannot be set from text (use the Python API)")
    return value


def _as_json(opt: Option, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise _Bad("JSON") from None


def _as_bool(opt: Option, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Bad("true or false")


def _as_enum(opt: Option, value: Any) -> Any:
    if value in opt.choices:
        return value
    if isinstance(value, str):
        wanted = value.strip().lower()
        for choice in opt.choices:
            if choice.lower() == wanted:
                return choice
    raise _Bad(opt.type_name)


def _to_number(opt: Option, value: Any) -> int | float:
    """An int or float option's value before its range is checked."""
    if isinstance(value, bool):
        raise _Bad(opt.type_name)
    if isinstance(value, str):
        try:
            return _number(opt.kind, value)
        except ValueError:
            raise _Bad(opt.type_name) from None
    if opt.kind == "int" and isinstance(value, int):
        return value
    if opt.kind == "float" and isinstance(value, (int, float)):
        return float(value)
    raise _Bad(opt.type_name)


def _as_number(opt: Option, value: Any) -> int | float:
    number = _to_number(opt, value)
    if opt.choices and str(number) not in opt.choices:
        raise _Bad(opt.type_name)
    if opt.minimum is not None and number < opt.minimum:
        raise _Bad(f"{opt.type_name} >= {opt.minimum:g}")
    if opt.maximum is not None and number > opt.maximum:
        raise _Bad(f"{opt.type_name} <= {opt.maximum:g}")
    return number


def _list_item(opt: Option, item: Any) -> Any:
    if isinstance(item, str):
        try:
            return _parse_item(opt.item, item)
        except _Bad:
            raise _Bad(opt.type_name) from None
    if opt.item in ("int", "float") and (isinstance(item, bool) or not isinstance(item, (int, float))):
        raise _Bad(opt.type_name)
    return item


def _as_list(opt: Option, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        items: list[Any] = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = list(value)
    else:
        raise _Bad(opt.type_name)
    return tuple(_list_item(opt, item) for item in items)


#: One coercer per option kind: ``(option, value) -> checked value``, raising ``_Bad`` for a misfit.
_COERCERS: dict[str, Callable[[Option, Any], Any]] = {
    "str": _as_text, "secret": _as_text, "object": _as_object, "json": _as_json, "bool": _as_bool,
    "enum": _as_enum, "int": _as_number, "float": _as_number, "list": _as_list,
}


def _value(opt: Option, value: Any) -> Any:
    """``value`` (text from the CLI, or a Python value) checked and converted for ``opt``."""
    if value is None:
        return None  # "unset": every option accepts it and the plugin uses its default behaviour
    return _COERCERS[opt.kind](opt, value)


def declared(factory: Any) -> tuple[Option, ...] | None:
    """The options a plugin declares, or ``None`` for a plugin that declares none."""
    opts = getattr(factory, "options", None)
    if isinstance(opts, (tuple, list)) and all(isinstance(o, Option) for o in opts):
        return tuple(opts)
    return None


def _signature_keys(factory: Any) -> set[str] | None:
    """Keyword names a callable takes, or ``None`` when it takes ``**kwargs`` (or has no signature)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in sig.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def _guess(raw: str) -> Any:
    """Undeclared options of a plugin without a schema: int, float, bool, or the text itself."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    return raw


def unknown_key(what: str, key: str, valid: Iterable[str]) -> ConfigError:
    names = sorted(valid)
    hint = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{what} has no option {key!r}{mean}; its options are: {', '.join(names) or 'none'}")


def coerce_options(what: str, factory: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against the plugin's schema; return them converted for the factory.

    ``what`` names the plugin in errors, e.g. ``"asr plugin 'fun-asr-realtime'"``.
    """
    schema = declared(factory)
    out: dict[str, Any] = {}
    if schema is None:
        keys = _signature_keys(factory)
        for key, value in options.items():
            if keys is not None and key not in keys:
                raise unknown_key(what, key, keys)
            out[key] = _guess(value) if isinstance(value, str) else value
        return out
    by_name = {o.name: o for o in schema}
    for key, value in options.items():
        opt = by_name.get(key)
        if opt is None:
            raise unknown_key(what, key, by_name)
        try:
            checked = _value(opt, value)
        except _Bad as bad:
            shown = "<redacted>" if opt.kind == "secret" else _cut(value)
            raise ConfigError(f"{what}: option {key!r} expects {bad}, got {shown}") from None
        out[key] = opt.convert(checked) if (opt.convert is not None and checked is not None) else checked
    return out


# the plugin groups whose plugins take options, and how a user sets them
_OPTION_GROUPS = ("asr", "vad", "tts", "agents")


def _how_to_set(group: str) -> str:
    if group == "agents":
        return "options (--agent-option KEY=VALUE with --agent NAME, on voicekit run and voicekit serve):"
    return f"options (--{group}-option KEY=VALUE, or make_{group}(name, KEY=VALUE)):"


def describe(name: str, group: str, factory: Any) -> str:
    """The text ``voicekit plugins NAME`` prints: one line per option with type, default and help."""
    lines = [f"{'agent' if group == 'agents' else group} plugin {name}"]
    doc = inspect.getdoc(factory)
    if doc:
        lines.append("  " + doc.splitlines()[0])
    schema = declared(factory)
    if schema is None:
        keys = _signature_keys(factory)
        lines.append("  (this plugin declares no option types; accepted keys: "
                     + (", ".join(sorted(keys)) if keys else "any") + ")")
        return "\n".join(lines) + "\n"
    lines.append(_how_to_set(group))
    width = max((len(o.name) for o in schema), default=0)
    for o in schema:
        bounds = ""
        if o.kind in ("int", "float") and not o.choices and (o.minimum is not None or o.maximum is not None):
            low = "" if o.minimum is None else f"{o.minimum:g}"
            high = "" if o.maximum is None else f"{o.maximum:g}"
            bounds = f" in [{low}, {high}]" if low and high else (f" >= {low}" if low else f" <= {high}")
        lines.append(f"  {o.name:<{width}}  {o.type_name}{bounds}; default {o.shown_default()}")
        if o.help:
            lines.append(f"  {'':<{width}}  {o.help}")
    return "\n".join(lines) + "\n"


def as_json_rows(factory: Any) -> list[dict[str, Any]] | None:
    schema = declared(factory)
    if schema is None:
        return None
    return [{"name": o.name, "type": o.kind, "item": o.item if o.kind == "list" else None,
             "choices": list(o.choices) or None, "default": None if o.kind == "secret" else o.default,
             "help": o.help} for o in schema]


def show_plugin(name: str, *, as_json: bool = False) -> int:
    """``voicekit plugins NAME``: print the options of every installed plugin called ``name``."""
    from voicekit.errors import PluginError
    from voicekit.plugins.registry import load, names

    groups = [g for g in _OPTION_GROUPS if name in names(g)]
    if not groups:
        known = sorted({n for g in _OPTION_GROUPS for n in names(g)})
        hint = difflib.get_close_matches(name, known, n=1)
        mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise PluginError(f"no ASR, VAD, TTS or agent plugin named {name!r}{mean}; "
                          "run 'voicekit plugins' to list them")
    rows = []
    for group in groups:
        factory = load(group, name)
        if as_json:
            rows.append({"group": group, "name": name, "options": as_json_rows(factory)})
        else:
            print(describe(name, group, factory), end="")
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    return 0
