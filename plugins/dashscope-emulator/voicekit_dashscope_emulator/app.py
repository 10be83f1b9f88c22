"""The DashScope emulator: every emulated endpoint on one loopback port.

Use it from tests::

    async with running_emulator(engine=FixtureEngine([...])) as emu:
        ...  # emu.ws_base_url, emu.http_base_url, emu.port

or start it in a nursery (``port = await nursery.start(emulator.serve)``), or from the command
line: ``voicekit emulate dashscope --port 8765``. Point the official SDK at it with
``DASHSCOPE_WEBSOCKET_BASE_URL=ws://127.0.0.1:PORT/api-ws/v1/inference`` and
``DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:PORT/api/v1``.

Authentication: by default any non-empty ``Authorization: Bearer …`` is accepted (each key
gets its own vocabularies); pass ``api_keys`` to accept only those. A missing or refused key
fails the WebSocket handshake with HTTP 401, like the real service. Listening on anything but
loopback needs ``api_keys`` (docs/security.md): the emulator transcribes for whoever reaches it
and fetches the file URLs it is given. Those URLs are limited by ``allow_url_prefixes``
(:class:`~voicekit_dashscope_emulator.files.UrlPolicy`: loopback URLs and the emulator's own
uploads by default).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from voicekit.errors import ConfigError
from voicekit.logging import get_logger
from voicekit_dashscope.regions import CUSTOMIZATION_PATH, HTTP_API_PATH, INFERENCE_PATH
from voicekit_dashscope_emulator.faults import FaultPlan
from voicekit_dashscope_emulator.http import HttpRequest, HttpResponse, HttpServer, ServerWebSocket
from voicekit_dashscope_emulator.task import TaskConnectionHandler, TaskSettings
from voicekit_dashscope_emulator.vocabulary import VocabularyStore

log = get_logger("voicekit.dashscope.emulator")


class ListenError(ConfigError, OSError):
    """The emulator cannot listen on the address it was given (port in use, no such address, ...)."""

    def __init__(self, errno: int, host: str, port: int, reason: str) -> None:
        super().__init__(errno, reason)
        self.message = (f"cannot listen on {host}:{port}: {reason} — another program may be using it; "
                        "pick another --port (0 picks a free one)")

    def __str__(self) -> str:
        return self.message


#: Environment variable with the accepted API keys (separated by commas or white space).
KEYS_ENV = "DASHSCOPE_EMULATOR_API_KEYS"


def read_api_keys(keys: list[str] | None = None, keys_file: str | None = None,
                  environ: dict[str, str] | None = None) -> set[str] | None:
    """The API keys the emulator accepts: ``--api-key`` values, the lines of ``--api-keys-file``
    (``#`` starts a comment) and ``$DASHSCOPE_EMULATOR_API_KEYS``; None when none is given (any
    key is then accepted, on loopback only)."""
    import os
    import re

    found = {k.strip() for k in keys or () if k.strip()}
    if keys_file:
        try:
            with open(keys_file, encoding="utf-8") as f:
                found |= {line.split("#", 1)[0].strip() for line in f} - {""}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the API keys file {keys_file!r}: "
                              f"{getattr(exc, 'strerror', None) or exc}; give one key per line") from None
    found |= set(re.split(r"[\s,]+", (os.environ if environ is None else environ).get(KEYS_ENV, "").strip())) - {""}
    return found or None


def check_exposure(host: str, api_keys: set[str] | None) -> None:
    """Refuse to listen beyond this machine without a key list."""
    from voicekit.serve import is_loopback

    if api_keys is not None and not {k for k in api_keys if k.strip()}:
        raise ConfigError("the API key list is empty: give at least one key (--api-key KEY)")
    if not is_loopback(host) and not api_keys:
        raise ConfigError(
            f"refusing to listen on {host!r} without an API key list: anyone who can reach it could use it "
            "and make it fetch URLs. Pass --api-key KEY (repeatable), --api-keys-file FILE or "
            f"${KEYS_ENV}, or use --host 127.0.0.1")


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class DashScopeEmulator:
    """A local stand-in for the DashScope speech services.

    ``engine`` is any object with ``open_stream(ASRConfig)`` (a voicekit ASR plugin instance or a
    :class:`~voicekit_dashscope_emulator.engines.FixtureEngine`); ``None`` loads the ``moonshine``
    plugin. ``faults`` is a fault spec (see :mod:`voicekit_dashscope_emulator.faults`).
    """

    def __init__(self, engine: Any = None, *, host: str = "127.0.0.1", port: int = 0,
                 faults: str | FaultPlan | None = None, api_keys: set[str] | None = None,
                 settings: TaskSettings | None = None, store: VocabularyStore | None = None,
                 realtime: Any = None, files: Any = None, region: str | None = None,
                 allow_url_prefixes: tuple[str, ...] | list[str] = ()) -> None:
        check_exposure(host, api_keys)  # before loading any model
        from voicekit_dashscope_emulator.urls import UrlPolicy

        self.url_policy = UrlPolicy(tuple(allow_url_prefixes))  # which file URLs it may fetch
        if engine is None:
            from voicekit_dashscope_emulator.engines import load_plugin_engine

            engine = load_plugin_engine("moonshine")
        self.engine = engine
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        self.api_keys = api_keys
        from voicekit_dashscope.regions import get_region

        # the region emulated: models it does not offer are answered like unknown models (None: all)
        self.region = get_region(region).id if region else None
        self.settings = attrs.evolve(settings or TaskSettings(), region=self.region)
        self.store = store or VocabularyStore()
        self.stats: dict[str, int] = {}
        self.server = HttpServer()
        self.server.add_websocket(INFERENCE_PATH, self._inference)
        self.server.add_route("POST", CUSTOMIZATION_PATH, self._customization)
        self.server.add_route("GET", "/health", self._health)
        # the realtime endpoint (Qwen3-ASR / Qwen-Omni); ``realtime`` is a dict of RealtimeService options
        from voicekit_dashscope.regions import REALTIME_PATH
        from voicekit_dashscope_emulator.realtime import RealtimeService

        self.realtime = RealtimeService(engine=self.engine, owner=self._owner, faults=self.faults,
                                        stats=self.stats, **dict(realtime or {}))
        self.server.add_websocket(REALTIME_PATH, self.realtime.handle)
        # file transcription + temporary uploads; ``files`` is a FilesSettings (or a dict of its fields)
        from voicekit_dashscope_emulator.files import add_file_routes

        self.files = add_file_routes(self, files)
        self.realtime.region = self.files.region = self.files.compat.region = self.region

    # -- addresses

    def _hostport(self) -> str:
        if self.port is None:
            raise RuntimeError("the emulator is not serving yet")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        """Value for ``DASHSCOPE_WEBSOCKET_BASE_URL``."""
        return f"ws://{self._hostport()}{INFERENCE_PATH}"

    @property
    def http_base_url(self) -> str:
        """Value for ``DASHSCOPE_HTTP_BASE_URL``."""
        return f"http://{self._hostport()}{HTTP_API_PATH}"

    @property
    def base_url(self) -> str:
        """Value for the plugins' ``base_url`` setting."""
        return f"ws://{self._hostport()}"

    # -- serving

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; reports the bound port through ``nursery.start``."""
        check_exposure(self.host, self.api_keys)
        try:
            listeners = await trio.open_tcp_listeners(self.requested_port, host=self.host)
        except OSError as exc:
            raise ListenError(exc.errno or 0, self.host, self.requested_port, exc.strerror or str(exc)) from None
        self.port = listeners[0].socket.getsockname()[1]
        log.info("emulator_listening", host=self.host, port=self.port)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.files.run)
            await nursery.start(self.server.serve, listeners)
            task_status.started(self.port)

    # -- auth

    def _owner(self, authorization: str | None) -> str | None:
        key = _bearer(authorization)
        if key is None:
            return None
        if self.api_keys is not None and key not in self.api_keys:
            return None
        return key

    # -- endpoints

    async def _inference(self, ws: ServerWebSocket) -> None:
        status = self.faults.take_reject()
        if status is not None:
            self.stats["rejected"] = self.stats.get("rejected", 0) + 1
            await ws.reject(status, {"code": "ServiceUnavailable", "message": "emulated rejection"})
            return
        owner = self._owner(ws.headers.get("authorization"))
        if owner is None:
            self.stats["unauthorized"] = self.stats.get("unauthorized", 0) + 1
            await ws.reject(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."})
            return
        self.stats["connections"] = self.stats.get("connections", 0) + 1
        handler = TaskConnectionHandler(ws, owner=owner, engine=self.engine, store=self.store,
                                        faults=self.faults, settings=self.settings, stats=self.stats)
        await handler.run()

    async def _customization(self, request: HttpRequest) -> HttpResponse:
        owner = self._owner(request.header("authorization"))
        if owner is None:
            return HttpResponse.json(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided.",
                                           "request_id": ""})
        return await self.store.http_handler(request, owner)

    async def _health(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse.json(200, {"status": "ok", "stats": self.stats})


@asynccontextmanager
async def running_emulator(engine: Any = None, **kwargs: Any) -> AsyncIterator[DashScopeEmulator]:
    """Start an emulator on a free loopback port for the duration of the block."""
    emu = DashScopeEmulator(engine, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(emu.serve)
        try:
            yield emu
        finally:
            nursery.cancel_scope.cancel()
