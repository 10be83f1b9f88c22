"""What ``voicekit serve`` is set up with: where it listens (and the rule that a non-loopback
address needs a token), its limits (:class:`ServeConfig`) and how each conversation is built
(:class:`SessionRecipe`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import attrs

from voicekit.asr.base import ASREngine
from voicekit.audio.sinks import AudioSink
from voicekit.audio.sources import AudioSource
from voicekit.errors import ConfigError
from voicekit.handlers.assistant import Assistant
from voicekit.serve.protocol import MAX_AUDIO_BYTES, MAX_TEXT_BYTES
from voicekit.session.interruption import InterruptionPolicy
from voicekit.session.session import Session, SessionConfig
from voicekit.tts.base import TTSEngine
from voicekit.vad.base import VADBackend

__all__ = ["PROXY_HEADERS", "ServeConfig", "SessionRecipe", "check_bind", "ip_of", "is_loopback"]

# -- binding rules ------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1). Other names count as
    non-loopback: we cannot know what they resolve to."""
    name = host.strip().lower().rstrip(".")
    if name in ("localhost", "ip6-localhost", "ip6-loopback") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if token is not None and not token.strip():
        raise ConfigError("--token is empty: pass a long random string (e.g. from 'openssl rand -hex 16')")
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host!r} without a token: anyone who can reach it could talk to the "
            "assistant. Pass --token SECRET (or set VOICEKIT_SERVE_TOKEN), or use --host 127.0.0.1")


def _positive(owner: str, name: str) -> Callable[[Any, Any, Any], None]:
    def check(_: Any, __: Any, value: Any) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{owner} {name} must be a positive number, got {value!r}")
    return check


Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The headers a trusted proxy may name the client in (``--proxy-header``).
PROXY_HEADERS = ("x-forwarded-for", "forwarded")


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` (brackets allowed) as an IP address, an IPv4-mapped IPv6 one as its IPv4 address;
    None if it is not one."""
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _networks(value: Any) -> tuple[Network, ...]:
    """Addresses and CIDRs (``10.0.0.5``, ``10.0.0.0/24``, ``::1``) → networks; a bad one is a
    :class:`ConfigError` naming it."""
    if isinstance(value, str):
        value = [value]
    out: list[Network] = []
    for item in value:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            out.append(item)
            continue
        try:
            out.append(ipaddress.ip_network(str(item).strip().strip("[]"), strict=False))
        except ValueError:
            raise ConfigError(f"--trusted-proxy {item!r} is not an IP address or CIDR — give the proxy's "
                              "address, e.g. 10.0.0.5 or 10.0.0.0/24") from None
    return tuple(out)


def _proxy_header(_: Any, __: Any, value: Any) -> None:
    if value not in PROXY_HEADERS:
        raise ConfigError(f"--proxy-header must be one of {', '.join(PROXY_HEADERS)}, got {value!r}")


def _port(_: Any, __: Any, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigError(f"port must be 0..65535 (0 = any free port), got {value!r}")


@attrs.frozen(kw_only=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8765, validator=_port)
    token: str | None = attrs.field(default=None, repr=lambda t: "None" if t is None else "'***'")
    max_sessions: int = attrs.field(default=4, validator=_positive("serve", "max_sessions"))
    #: Connections that have not said a valid hello yet (HTTP requests, WebSockets before the hello):
    #: they never hold a session slot; this pool is bounded on its own (the oldest is dropped when full) ...
    max_pending: int = attrs.field(default=32, validator=_positive("serve", "max_pending"))
    #: ... and per client address (one more is refused with HTTP 429).
    max_pending_per_address: int = attrs.field(default=8, validator=_positive("serve", "max_pending_per_address"))
    hello_timeout: float = attrs.field(default=5.0, validator=_positive("serve", "hello_timeout"))
    #: A conversation whose client sends nothing for this long (before its end message) is closed.
    idle_timeout: float = attrs.field(default=60.0, validator=_positive("serve", "idle_timeout"))
    request_timeout: float = attrs.field(default=10.0, validator=_positive("serve", "request_timeout"))
    close_timeout: float = attrs.field(default=2.0, validator=_positive("serve", "close_timeout"))
    max_audio_bytes: int = attrs.field(default=MAX_AUDIO_BYTES, validator=_positive("serve", "max_audio_bytes"))
    max_text_bytes: int = attrs.field(default=MAX_TEXT_BYTES, validator=_positive("serve", "max_text_bytes"))
    #: Extra page origins allowed to open the WebSocket (``"*"`` = any); the server's own is always allowed.
    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Admission: no new conversation while the event loop wakes up later than this (seconds, the
    #: mean over the last second): the running conversations would be slowed down.
    max_loop_lag: float = attrs.field(default=0.25, validator=_positive("serve", "max_loop_lag"))
    #: A conversation whose oldest unprocessed audio is older than this (seconds) has fallen
    #: behind real time: it is reported and closed (1013, ``overloaded``).
    max_backlog: float = attrs.field(default=1.5, validator=_positive("serve", "max_backlog"))
    #: A conversation whose backlog passes this (seconds) and whose VAD has a cheaper fallback
    #: (:attr:`SessionRecipe.vad_fallback`) switches to it, reported; it is shed (``max_backlog``)
    #: only if it still lags.
    vad_fallback_backlog: float = attrs.field(default=0.5, validator=_positive("serve", "vad_fallback_backlog"))
    #: After :meth:`VoiceServer.drain` starts, running conversations have this long to finish.
    drain_timeout: float = attrs.field(default=30.0, validator=_positive("serve", "drain_timeout"))
    #: Answer a WebSocket upgrade with HTTP 503 + Retry-After when not ready (full, lagging,
    #: draining), for a proxy that retries another worker; otherwise the connection is accepted
    #: and the refusal comes after the hello as a ``busy`` error and close 1013, which a browser
    #: can read (it cannot read an HTTP status).
    refuse_at_upgrade: bool = False
    #: Proxies (addresses or networks) whose word on the client's address is believed: for a
    #: connection from one of them, the client is read from ``proxy_header`` (right to left,
    #: past other trusted proxies), and the per-address limit counts that client. From anyone
    #: else the header is ignored. None by default: the header is never believed.
    trusted_proxies: tuple[Network, ...] = attrs.field(default=(), converter=_networks)
    #: ``x-forwarded-for`` (HAProxy's ``option forwardfor``, nginx's ``$proxy_add_x_forwarded_for``)
    #: or ``forwarded`` (RFC 7239): the one the trusted proxies set; the other is ignored.
    proxy_header: str = attrs.field(default="x-forwarded-for", validator=_proxy_header)

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        ip = ip_of(address) if self.trusted_proxies else None
        return ip is not None and any(ip in net for net in self.trusted_proxies)


# -- what a conversation is made of --------------------------------------------------------------

def _live_config() -> SessionConfig:
    return SessionConfig(realtime=True, audio_policy="drop_oldest")


@attrs.define(kw_only=True)
class SessionRecipe:
    """How to build one :class:`Session` per connection. The ASR engine, TTS engine and assistant
    are shared (their per-conversation state lives in the session); the VAD backend and the
    interruption policy are stateful, so each session gets its own from the factories."""

    asr: ASREngine
    vad_factory: Callable[[], VADBackend]
    assistant: Assistant | None = None
    tts: TTSEngine | None = None
    config: SessionConfig = attrs.Factory(_live_config)
    interruption: Callable[[], InterruptionPolicy] | None = None
    names: dict[str, str] = attrs.Factory(dict)
    #: A cheaper VAD (same rate and frame length) for a conversation that falls behind real time:
    #: each session's VAD is then a :class:`~voicekit.serve.fallback.FallbackVAD`.
    vad_fallback: Callable[[], VADBackend] | None = None

    @property
    def reply_rate(self) -> int | None:
        return self.tts.capabilities.sample_rate if self.tts is not None else None

    def build(self, source: AudioSource, sink: AudioSink | None) -> Session:
        vad = self.vad_factory()
        if self.vad_fallback is not None:
            from voicekit.serve.fallback import FallbackVAD

            vad = FallbackVAD(vad, self.vad_fallback, primary_name=self.names.get("vad", type(vad).__name__),
                              fallback_name=self.names.get("vad_fallback", "fallback"))
        return Session(source, asr=self.asr, vad=vad, assistant=self.assistant, tts=self.tts,
                       sink=sink, interruption=self.interruption() if self.interruption else None,
                       config=self.config, names=self.names)

