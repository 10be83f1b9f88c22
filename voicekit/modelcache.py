"""A process-wide, thread-safe, load-once cache for engine models.

Loading a speech model is slow and, for some native libraries, not safe to do from two threads at
once. Engines therefore never load a model themselves: they ask this cache, which loads each key
once per process, even when many sessions (in one trio run, in several trio runs on different
threads, or from worker threads) ask for it at the same moment. What a session changes while it
runs (decoder state, buffers) stays in the session's own stream objects; only the read-only model
is shared.

::

    from voicekit.modelcache import shared_model

    model = shared_model(("my-engine", path), lambda: load_my_model(path))

A loader that raises is not cached: the next caller tries again and gets the error itself.
``load_count(key)`` says how many times a key was actually loaded (1 after any number of callers),
and ``add_load_hook`` lets a program or a test watch loads as they happen.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

LoadHook = Callable[[Hashable], None]


class _Entry:
    __slots__ = ("lock", "ready", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = False
        self.value: Any = None


class ModelCache:
    """Models by key, each loaded once. Safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._loads: collections.Counter[Hashable] = collections.Counter()
        self._hooks: list[LoadHook] = []

    def get(self, key: Hashable, loader: Callable[[], T]) -> T:
        """The model for ``key``; the first caller runs ``loader()``, the others wait for it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
        if entry.ready:
            return entry.value  # type: ignore[no-any-return]
        with entry.lock:
            if not entry.ready:
                value = loader()
                entry.value = value
                entry.ready = True
                with self._lock:
                    self._loads[key] += 1
                    hooks = list(self._hooks)
                for hook in hooks:
                    hook(key)
        return entry.value  # type: ignore[no-any-return]

    def load_count(self, key: Hashable) -> int:
        """How many times ``key`` was loaded in this process (0 or 1 unless :meth:`forget` was called)."""
        with self._lock:
            return self._loads[key]

    def loaded(self) -> list[Hashable]:
        """The keys that are loaded now."""
        with self._lock:
            return [k for k, e in self._entries.items() if e.ready]

    def add_load_hook(self, hook: LoadHook) -> Callable[[], None]:
        """Call ``hook(key)`` after every real load; returns a function that removes the hook."""
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove

    def forget(self, key: Hashable) -> None:
        """Drop a model (the next caller loads it again); sessions still using it keep their reference."""
        with self._lock:
            self._entries.pop(key, None)


MODELS = ModelCache()
"""The process-wide cache every bundled engine uses."""


def shared_model(key: Hashable, loader: Callable[[], T]) -> T:
    """``MODELS.get(key, loader)``: the process-wide model for ``key``, loaded once."""
    return MODELS.get(key, loader)


def load_count(key: Hashable) -> int:
    return MODELS.load_count(key)


def add_load_hook(hook: LoadHook) -> Callable[[], None]:
    return MODELS.add_load_hook(hook)
