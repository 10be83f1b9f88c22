"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists what it re-exports and where each name lives; a name's module is imported the
first time the name is used, so ``import voicekit`` or ``import voicekit.events`` does not load
trio, PyAV, numpy or structlog. Usage, in a package's ``__init__.py``::

    __all__ = ["Session"]
    if TYPE_CHECKING:  # what type checkers and IDEs read
        from voicekit.session.session import Session as Session
    else:
        __getattr__, __dir__ = attach(__name__, {"Session": "voicekit.session.session"})
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping


def attach(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each public name to the
    module that defines it (a name mapped to its own module, ``"events": "voicekit.events"``,
    re-exports the module itself). Submodules of the package stay reachable as attributes."""

    def __getattr__(name: str) -> object:
        module_name = exports.get(name)
        if module_name is not None:
            module = importlib.import_module(module_name)
            value = module if module_name == f"{package}.{name}" else getattr(module, name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")  # a submodule, as eager imports left it
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # resolved once; later look-ups are plain
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
