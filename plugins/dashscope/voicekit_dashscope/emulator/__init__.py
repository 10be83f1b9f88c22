"""Deprecated: the emulator is the distribution ``voicekit-dashscope-emulator`` now.

Import :mod:`voicekit_dashscope_emulator` instead. This package only forwards the old names so
code written against ``voicekit_dashscope.emulator`` keeps working: ``voicekit_dashscope.emulator.X``
*is* ``voicekit_dashscope_emulator.X`` (the same module object), and the two old modules that were
split (``files``, ``realtime``) offer their old names. ``voicekit_dashscope`` itself never imports
this package, so the plugin runs without the emulator installed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import Any

try:
    import voicekit_dashscope_emulator as _emulator
except ImportError as exc:  # the plugin is installed without its emulator
    raise ImportError("voicekit_dashscope.emulator moved to the distribution voicekit-dashscope-emulator; "
                      "install it (pip install -e plugins/dashscope-emulator) and import "
                      "voicekit_dashscope_emulator") from exc

warnings.warn("voicekit_dashscope.emulator is deprecated: import voicekit_dashscope_emulator",
              DeprecationWarning, stacklevel=2)

_NEW = "voicekit_dashscope_emulator"
# old modules split by concern: old name -> the modules whose public names it offered
_SPLIT = {
    "files": ("files", "audio", "urls", "speakers", "uploads", "results"),
    "realtime": ("realtime", "omni", "testing"),
}


class _Forward(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``voicekit_dashscope.emulator.<name>`` and answers with the new module."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(__name__ + ".") or fullname.count(".") != __name__.count(".") + 1:
            return None
        name = fullname.rsplit(".", 1)[1]
        if name not in _SPLIT and importlib.util.find_spec(f"{_NEW}.{name}") is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        name = spec.name.rsplit(".", 1)[1]
        if name not in _SPLIT:
            return importlib.import_module(f"{_NEW}.{name}")
        module = types.ModuleType(spec.name, f"Deprecated: see {', '.join(f'{_NEW}.{m}' for m in _SPLIT[name])}.")
        for part in _SPLIT[name]:
            new = importlib.import_module(f"{_NEW}.{part}")
            for attr, value in vars(new).items():
                if not attr.startswith("_") and not isinstance(value, types.ModuleType):
                    module.__dict__.setdefault(attr, value)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


if not any(isinstance(f, _Forward) for f in sys.meta_path):
    sys.meta_path.insert(0, _Forward())

__all__ = list(_emulator.__all__)


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(_emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
