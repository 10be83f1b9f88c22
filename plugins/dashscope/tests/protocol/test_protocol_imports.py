"""Every DashScope protocol module is sans-IO: importing it loads no trio, httpx, PyAV or trio-websocket.

Each module is imported in a fresh interpreter (the test process has them all loaded already), so
a module that pulls in an I/O library, directly or through the core, fails here by name.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest
import voicekit_dashscope.protocol as protocol

IO_LIBRARIES = ("trio", "httpx", "av", "trio_websocket")


def _protocol_modules() -> list[str]:
    names = [protocol.__name__]
    for info in pkgutil.walk_packages(protocol.__path__, protocol.__name__ + "."):
        names.append(info.name)
    return sorted(names)


def test_the_protocol_package_has_the_expected_modules() -> None:
    names = set(_protocol_modules())
    for expected in ("task", "realtime", "realtime._state", "realtime._events", "files", "compat", "vocabulary",
                     "_util"):
        assert f"voicekit_dashscope.protocol.{expected}" in names, sorted(names)


@pytest.mark.parametrize("module", _protocol_modules())
def test_protocol_module_imports_without_io_libraries(module: str) -> None:
    code = (f"import sys, json, importlib; importlib.import_module({module!r}); "
            f"print(json.dumps([m for m in {list(IO_LIBRARIES)!r} if m in sys.modules]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing {module} loads {', '.join(loaded)}; protocol modules must stay sans-IO"
