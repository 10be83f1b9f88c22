"""DashScope regions, their hosts, and the rule that keys travel only over TLS.

A region is chosen by name (``region="singapore"``, ``"beijing"``, ``"us"`` or the region ids
``ap-southeast-1``, ``cn-beijing``, ``us-east-1``). A workspace id selects the newer
workspace-dedicated domain (``{workspace}.{region}.maas.aliyuncs.com``). ``base_url`` overrides
everything (the emulator, a proxy). Plain ``ws://``/``http://`` is refused unless the host is a
loopback address, so an API key is never sent in clear text over a network.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

import attrs

from voicekit.errors import ConfigError
from voicekit_dashscope.errors import RegionError as RegionError  # re-exported: defined there

INFERENCE_PATH = "/api-ws/v1/inference"
REALTIME_PATH = "/api-ws/v1/realtime"
HTTP_API_PATH = "/api/v1"
CUSTOMIZATION_PATH = "/api/v1/services/audio/asr/customization"


@attrs.frozen
class Region:
    id: str
    name: str
    host: str
    maas_region: str | None  # for workspace-dedicated domains; None where none is documented
    realtime_asr: bool  # whether any WebSocket ASR model is documented there
    notes: str = ""

    def host_for(self, workspace: str | None) -> str:
        if workspace is None:
            return self.host
        if self.maas_region is None:
            raise ConfigError(f"region {self.name!r} has no workspace-dedicated domain; drop the workspace")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", workspace):
            raise ConfigError(f"workspace id {workspace!r} is not valid: letters, digits and '-' only")
        return f"{workspace}.{self.maas_region}.maas.aliyuncs.com"


REGIONS: dict[str, Region] = {
    "cn-beijing": Region("cn-beijing", "beijing", "dashscope.aliyuncs.com", "cn-beijing", True,
                         "Chinese mainland; the widest real-time model coverage"),
    "ap-southeast-1": Region("ap-southeast-1", "singapore", "dashscope-intl.aliyuncs.com", "ap-southeast-1",
                             True, "international (global excluding the Chinese mainland)"),
    "us-east-1": Region("us-east-1", "us", "dashscope-us.aliyuncs.com", None, False,
                        "US (Virginia); no real-time WebSocket ASR model is documented there"),
}
_ALIASES = {
    "beijing": "cn-beijing", "cn": "cn-beijing", "china": "cn-beijing", "mainland": "cn-beijing",
    "singapore": "ap-southeast-1", "intl": "ap-southeast-1", "international": "ap-southeast-1",
    "sg": "ap-southeast-1", "us": "us-east-1", "virginia": "us-east-1", "global": "us-east-1",
}
DEFAULT_REGION = "ap-southeast-1"


def get_region(name: str) -> Region:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in REGIONS:
        known = ", ".join(sorted({*REGIONS, *_ALIASES}))
        raise ConfigError(f"unknown DashScope region {name!r}; use one of: {known}")
    return REGIONS[key]


# -- which models each region offers -----------------------------------------------------------
#
# From the vendor's guide to choosing a speech model (its "Availability" lists), completed with the
# model lists of the per-family pages for the snapshot names. A model is offered only where listed;
# a region's host answers a model it does not offer like an unknown model.

_FUN_RT_INTL = ("fun-asr-realtime", "fun-asr-realtime-2025-11-07")
_FUN_FILE = ("fun-asr", "fun-asr-2025-11-07", "fun-asr-2025-08-25", "fun-asr-mtl", "fun-asr-mtl-2025-08-25")
_QWEN_ASR_RT = ("qwen3-asr-flash-realtime", "qwen3-asr-flash-realtime-2025-10-27",
                "qwen3-asr-flash-realtime-2026-02-10")
_QWEN_ASR_FILE = ("qwen3-asr-flash-filetrans", "qwen3-asr-flash-filetrans-2025-11-17",
                  "qwen3-asr-flash", "qwen3-asr-flash-2025-09-08")
_OMNI = ("qwen3.5-omni-plus-realtime", "qwen3.5-omni-plus-realtime-2026-03-15",
         "qwen3.5-omni-flash-realtime", "qwen3.5-omni-flash-realtime-2026-03-15",
         "qwen3-omni-flash-realtime", "qwen3-omni-flash-realtime-2025-12-01", "qwen3-omni-flash-realtime-2025-09-15",
         "qwen3.5-omni-plus", "qwen3.5-omni-flash", "qwen3-omni-flash")
_FUN_RT_BEIJING = (*_FUN_RT_INTL, "fun-asr-realtime-2026-02-28", "fun-asr-realtime-2025-09-15",
                   "fun-asr-flash-8k-realtime", "fun-asr-flash-8k-realtime-2026-01-28")
_LEGACY_RT = ("paraformer-realtime-v2", "paraformer-realtime-v1", "paraformer-realtime-8k-v2",
              "paraformer-realtime-8k-v1")
_LEGACY_FILE = ("paraformer-v2", "paraformer-8k-v2", "paraformer-v1", "paraformer-8k-v1", "paraformer-mtl-v1")

AVAILABILITY: dict[str, frozenset[str]] = {
    "cn-beijing": frozenset((*_FUN_RT_BEIJING, *_FUN_FILE, *_QWEN_ASR_RT, *_QWEN_ASR_FILE, *_OMNI,
                             *_LEGACY_RT, *_LEGACY_FILE)),
    "ap-southeast-1": frozenset((*_FUN_RT_INTL, *_FUN_FILE, *_QWEN_ASR_RT, *_QWEN_ASR_FILE, *_OMNI)),
    # "The US region also supports qwen3-asr-flash-us (non-real-time), which requires an API key
    # from the US region": nothing else.
    "us-east-1": frozenset(("qwen3-asr-flash-us", "qwen3-asr-flash-2025-09-08-us")),
}
LEGACY_MODELS = frozenset((*_LEGACY_RT, *_LEGACY_FILE))


def regional_model_name(model: str, region: str) -> str:
    """The name ``model`` goes by in ``region`` (the US region suffixes its models with ``-us``)."""
    r = get_region(region).id
    if r == "us-east-1" and not model.endswith("-us") and f"{model}-us" in AVAILABILITY[r]:
        return f"{model}-us"
    return model


def known_model(model: str) -> bool:
    return any(model in names for names in AVAILABILITY.values())


def model_regions(model: str) -> tuple[str, ...]:
    """The ids of the regions that offer ``model`` (under its own or its regional name), in table order."""
    return tuple(r for r, names in AVAILABILITY.items() if model in names or f"{model}-us" in names)


def offered_in(model: str, region: str) -> bool:
    r = get_region(region).id
    return regional_model_name(model, r) in AVAILABILITY[r]


def check_model_region(model: str, region: str) -> Region:
    """The :class:`Region` for ``region`` if it offers ``model``; :class:`RegionError` otherwise.

    Every DashScope plugin calls this before any network work, also when ``base_url`` points
    elsewhere (the emulator, a proxy): the region still decides which models the API key reaches.
    A model name in no availability list (a newer snapshot) is let through for the service to judge.
    """
    r = get_region(region)
    if not known_model(model) or offered_in(model, r.id):
        return r
    where = model_regions(model)
    names = ", ".join(f"{REGIONS[w].name} ({w})" for w in where)
    raise RegionError(f"{model} is not offered in region {r.name} ({r.id}); it is offered in: {names} — "
                      f"pass region={REGIONS[where[0]].name!r} with an API key from that region")


def emulator_refuses(model: str, region: str | None, *, openai_compatible: bool = False) -> bool:
    """Whether a host of ``region`` answers ``model`` (its wire name) like an unknown model.

    ``None`` emulates no particular region (every known model is served). The US region has no
    OpenAI-compatible endpoint for speech models.
    """
    if region is None:
        return False
    r = get_region(region).id
    return (openai_compatible and r == "us-east-1") or model not in AVAILABILITY[r]


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str) -> str:
    """Return ``url`` if it is safe to send a key to; raise :class:`ConfigError` otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("ws", "wss", "http", "https"):
        raise ConfigError(f"DashScope URL {url!r} must start with wss:// or https://")
    if not host:
        raise ConfigError(f"DashScope URL {url!r} has no host")
    if scheme in ("ws", "http") and not is_loopback(host):
        raise ConfigError(
            f"refusing to send the API key over plain {scheme}:// to {host}; use {scheme}s:// "
            "(plain text is only allowed to a loopback address such as the local emulator)"
        )
    return url


def _with_path(base: str, path: str, *, ws: bool) -> str:
    """Scheme and host of ``base`` (any path in it is ignored) with the standard ``path``."""
    parts = urlsplit(base.strip())
    scheme = parts.scheme.lower()
    if ws and scheme in ("http", "https"):
        scheme = {"http": "ws", "https": "wss"}[scheme]
    if not ws and scheme in ("ws", "wss"):
        scheme = {"ws": "http", "wss": "https"}[scheme]
    return check_transport(urlunsplit((scheme, parts.netloc, path, "", "")))


@attrs.frozen
class Endpoints:
    """Where to connect for one region (or one overriding base URL)."""

    inference_url: str
    customization_url: str
    region: Region | None

    @property
    def http_host(self) -> str:
        """``scheme://host[:port]`` of the HTTP APIs (file transcription, uploads, compatible mode)."""
        parts = urlsplit(self.customization_url)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def resolve(cls, region: str = DEFAULT_REGION, *, workspace: str | None = None,
                base_url: str | None = None) -> Endpoints:
        """``base_url`` (e.g. ``ws://127.0.0.1:8765`` for the emulator) wins over the region."""
        if base_url:
            return cls(_with_path(base_url, INFERENCE_PATH, ws=True),
                       _with_path(base_url, CUSTOMIZATION_PATH, ws=False), None)
        r = get_region(region)
        host = r.host_for(workspace)
        from voicekit_dashscope.auth import env_base_urls

        ws_env, http_env = env_base_urls()  # the official SDK's variables: option > environment > region
        if ws_env or http_env:
            return cls(_with_path(ws_env, INFERENCE_PATH, ws=True) if ws_env else f"wss://{host}{INFERENCE_PATH}",
                       _with_path(http_env, CUSTOMIZATION_PATH, ws=False) if http_env
                       else f"https://{host}{CUSTOMIZATION_PATH}", None)
        return cls(f"wss://{host}{INFERENCE_PATH}", f"https://{host}{CUSTOMIZATION_PATH}", r)
