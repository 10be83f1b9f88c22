"""The emulator is its own distribution, built only on the plugin's protocol modules and voicekit's
public API; the production plugin never imports it (issue 13, item 2)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import voicekit_dashscope
import voicekit_dashscope_emulator

EMULATOR = Path(voicekit_dashscope_emulator.__file__).parent
PLUGIN = Path(voicekit_dashscope.__file__).parent
ALIAS = PLUGIN / "emulator"  # the deprecated forwarding package, the one place that may name the emulator

# what of voicekit-dashscope the emulator may build on: the I/O-free protocol modules and the data
# they share with the clients (regions and model catalogue, error types)
PLUGIN_MODULES_ALLOWED = ("voicekit_dashscope.protocol", "voicekit_dashscope.regions", "voicekit_dashscope.errors",
                          "voicekit_dashscope.asr.models")


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) of every import in ``path``, nested ones included."""
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.module, a.name, node.lineno) for a in node.names]
    return found


def _plugin_sources() -> list[Path]:
    return sorted(p for p in PLUGIN.rglob("*.py") if ALIAS not in p.parents)


def test_the_production_plugin_never_names_the_emulator() -> None:
    sources = _plugin_sources()
    assert PLUGIN / "cli.py" in sources and len(sources) > 20
    bad = [f"{p.relative_to(PLUGIN.parent)}:{line} imports {mod}"
           for p in sources for mod, name, line in _imports(p)
           if mod.startswith(("voicekit_dashscope_emulator", "voicekit_dashscope.emulator"))
           or (mod == "voicekit_dashscope" and name == "emulator")]
    assert bad == []


@pytest.mark.slow
def test_importing_every_plugin_module_loads_no_emulator_module() -> None:
    """At run time too (a lazy or dynamic import would slip past the source scan)."""
    names = sorted(".".join(p.relative_to(PLUGIN.parent).with_suffix("").parts).removesuffix(".__init__")
                   for p in _plugin_sources())
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n"
            "    if not name.endswith('__main__'):\n"
            "        importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('voicekit_dashscope_emulator',"
            " 'voicekit_dashscope.emulator')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout) == []


def test_the_emulator_builds_on_protocol_modules_and_public_names_only() -> None:
    sources = sorted(EMULATOR.rglob("*.py"))
    assert EMULATOR / "realtime.py" in sources
    private, outside = [], []
    for p in sources:
        for mod, name, line in _imports(p):
            where = f"{p.name}:{line} {mod}" + (f".{name}" if name else "")
            if not mod.startswith("voicekit"):
                continue
            if any(part.startswith("_") for part in mod.split(".")) or (name or "").startswith("_"):
                private.append(where)
            if mod.startswith("voicekit_dashscope.") or mod == "voicekit_dashscope":
                if not mod.startswith(PLUGIN_MODULES_ALLOWED):
                    outside.append(where)
            if mod.startswith("voicekit.testing"):
                outside.append(where)  # the test kit is not product code's to use (EnergyVAD is in voicekit.vad)
    assert private == []
    assert outside == []


def test_the_old_import_paths_still_work_and_say_where_to_go() -> None:
    for name in [m for m in sys.modules if m == "voicekit_dashscope.emulator" or
                 m.startswith("voicekit_dashscope.emulator.")]:
        del sys.modules[name]
    with pytest.warns(DeprecationWarning, match="import voicekit_dashscope_emulator"):
        import voicekit_dashscope.emulator as old
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import voicekit_dashscope.emulator.app as old_app
        from voicekit_dashscope.emulator.files import UrlPolicy, voice_print
        from voicekit_dashscope.emulator.realtime import OmniScript, RealtimeService, memory_connector

    import voicekit_dashscope_emulator.app as new_app
    from voicekit_dashscope_emulator import speakers, testing, urls

    assert old_app is new_app  # the same module, so one set of classes
    assert old.DashScopeEmulator is voicekit_dashscope_emulator.DashScopeEmulator
    assert (UrlPolicy, voice_print) == (urls.UrlPolicy, speakers.voice_print)
    assert (OmniScript, RealtimeService) == (voicekit_dashscope_emulator.OmniScript,
                                             voicekit_dashscope_emulator.RealtimeService)
    assert memory_connector is testing.memory_connector


@pytest.mark.slow
def test_emulate_dashscope_comes_from_the_emulator_distribution() -> None:
    from importlib.metadata import entry_points

    eps = {e.name: e for e in entry_points(group="voicekit.cli")}
    assert eps["dashscope-emulator"].dist is not None
    assert eps["dashscope-emulator"].dist.name == "voicekit-dashscope-emulator"
    assert eps["dashscope"].dist is not None and eps["dashscope"].dist.name == "voicekit-dashscope"
    out = subprocess.run([sys.executable, "-m", "voicekit.cli.main", "emulate", "dashscope", "--help"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "--omni-script" in out.stdout and "--allow-url-prefix" in out.stdout


def test_every_emulator_module_has_one_concern_and_stays_small() -> None:
    """The emulator was split by concern (realtime: state, turns, replies, script and voices; files:
    audio, URLs, speakers, uploads, results); no module grows back past 450 lines."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in EMULATOR.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 450} == {}
