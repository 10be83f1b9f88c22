"""``voicekit serve --trusted-proxy``: behind a reverse proxy the per-address limit counts the
client the proxy names in X-Forwarded-For (or Forwarded), and nobody else's header is believed.

One server in this process over real loopback sockets; "clients" and "proxies" are connections
from different loopback addresses (127.0.0.2, .3, ...), with the forwarding headers a proxy (or a
client pretending) would send. The fleet test runs the same behind a real HAProxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from servekit import conversation_starts, upgrade  # type: ignore[import-not-found]  # next to this file
from servekit import serving as serving_recipe  # type: ignore[import-not-found]

from voicekit.cli.main import main
from voicekit.errors import ConfigError
from voicekit.plugins.build import load_assistant, make_vad
from voicekit.serve.http import Request, client_address
from voicekit.serve.server import ServeConfig, SessionRecipe, VoiceServer
from voicekit.testing.fakes import FakeASR

PER_ADDRESS = 2


@asynccontextmanager
async def serving(**config: Any) -> AsyncIterator[tuple[VoiceServer, int]]:
    recipe = SessionRecipe(asr=FakeASR(["go forward ten meters"]), assistant=load_assistant("robot"),
                           vad_factory=lambda: make_vad("webrtc", sample_rate=16000))
    async with serving_recipe(recipe, max_pending_per_address=PER_ADDRESS, hello_timeout=30, **config) as server:
        assert server.port is not None
        yield server, server.port




async def silent(stack: AsyncExitStack, port: int, source: str, headers: dict[str, str]) -> None:
    """A WebSocket that never says hello: it holds a place in its client's share of the pool."""
    status, answer, stream = await upgrade(port, source, headers)
    assert status == 101, answer
    await stack.enter_async_context(stream)


async def refused(port: int, source: str, headers: dict[str, str]) -> bytes:
    status, answer, stream = await upgrade(port, source, headers)
    await stream.aclose()
    assert status == 429, answer
    return answer




async def test_an_untrusted_clients_forwarding_headers_are_ignored() -> None:
    # no proxy is trusted (the default), or one that is not this client: its headers name nobody
    for config in ({}, {"trusted_proxies": ["127.0.0.9"]}):
        with trio.fail_after(30):
            async with serving(**config) as (server, port), AsyncExitStack() as stack:
                for i in range(PER_ADDRESS):
                    await silent(stack, port, "127.0.0.2", {"X-Forwarded-For": f"203.0.113.{i + 1}",
                                                            "Forwarded": f"for=203.0.113.{i + 1}"})
                answer = await refused(port, "127.0.0.2", {"X-Forwarded-For": "203.0.113.99",
                                                           "Forwarded": "for=203.0.113.99"})
                assert b"too many connections from 127.0.0.2 " in answer, answer
                assert server.stats.rejected_address == 1
                await conversation_starts(port, "127.0.0.3", {})  # another address has its own share


async def test_a_trusted_proxys_header_names_the_client() -> None:
    with trio.fail_after(30):
        async with serving(trusted_proxies=["127.0.0.2", "127.0.0.8/29"]) as (server, port), \
                AsyncExitStack() as stack:
            # the proxy at 127.0.0.2 forwards client 203.0.113.7 twice: that client's share is taken
            for _ in range(PER_ADDRESS):
                await silent(stack, port, "127.0.0.2", {"X-Forwarded-For": "203.0.113.7"})
            # a third connection of that client is refused, whatever the client put in front of the
            # address the proxy appended, and through a chain of two trusted proxies
            answer = await refused(port, "127.0.0.2", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
            assert b"too many connections from 203.0.113.7 " in answer, answer
            answer = await refused(port, "127.0.0.2", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.10"})
            assert b"too many connections from 203.0.113.7 " in answer, answer
            # other clients behind the same proxy have shares of their own
            await conversation_starts(port, "127.0.0.2", {"X-Forwarded-For": "203.0.113.8"})
            await conversation_starts(port, "127.0.0.2", {"X-Forwarded-For": "203.0.113.7, [2001:db8::1]:4711"})
            # the proxy itself (a health check: no header) is not one of them
            for _ in range(PER_ADDRESS):
                await silent(stack, port, "127.0.0.2", {})
            await conversation_starts(port, "127.0.0.2", {"X-Forwarded-For": "203.0.113.9"})
            # Forwarded is not the header this server was told the proxy sets: ignored
            answer = await refused(port, "127.0.0.2", {"Forwarded": "for=203.0.113.50"})
            assert b"too many connections from 127.0.0.2 " in answer, answer
            assert server.stats.rejected_address == 3


async def test_forwarded_header_rfc_7239() -> None:
    with trio.fail_after(30):
        async with serving(trusted_proxies=["127.0.0.2"], proxy_header="forwarded") as (_, port), \
                AsyncExitStack() as stack:
            for _ in range(PER_ADDRESS):
                await silent(stack, port, "127.0.0.2", {"Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=http'})
            answer = await refused(port, "127.0.0.2", {"Forwarded": "for=192.0.2.60, for=\"[2001:db8:cafe::17]\""})
            assert b"too many connections from 2001:db8:cafe::17 " in answer, answer
            # X-Forwarded-For is not the header this server was told the proxy sets: ignored
            await conversation_starts(port, "127.0.0.2", {"X-Forwarded-For": "2001:db8:cafe::17"})
            # 'unknown' names nobody: the connection counts against the proxy
            await conversation_starts(port, "127.0.0.2", {"Forwarded": "for=unknown"})


def test_bad_trusted_proxy_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"--trusted-proxy 'proxy\.example' is not an IP address or CIDR"):
        ServeConfig(trusted_proxies=["proxy.example"])
    assert main(["serve", "robot", "--port", "0", "--tts", "none", "--trusted-proxy", "10.0.0.0/33"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--trusted-proxy '10.0.0.0/33' is not an IP address or CIDR" in err
    assert ServeConfig(trusted_proxies=["10.0.0.0/24", "::1"]).trusts("10.0.0.77")
    assert ServeConfig(trusted_proxies=["10.0.0.0/24"]).trusts("::ffff:10.0.0.5")
    assert not ServeConfig().trusts("127.0.0.1")


def test_a_forwarded_client_is_one_address_however_written() -> None:
    """The client a trusted proxy names counts as one address with or without a port and as an
    IPv4-mapped IPv6 address; a mapped trusted hop is walked past like its IPv4 form."""
    cfg = ServeConfig(trusted_proxies=["127.0.0.2", "10.0.0.0/8"])
    for value in ("192.0.2.7", "::ffff:192.0.2.7", "192.0.2.7:5555", "[::ffff:192.0.2.7]:5555",
                  "192.0.2.7, ::ffff:10.1.2.3", 'for="[::ffff:192.0.2.7]:1"'):
        header = "forwarded" if value.startswith("for=") else "x-forwarded-for"
        request = Request("GET", "/ws", {header: value})
        assert client_address("127.0.0.2", request, cfg.trusts, header) == "192.0.2.7", value
    assert client_address("127.0.0.3", Request("GET", "/ws", {"x-forwarded-for": "192.0.2.7"}), cfg.trusts,
                          "x-forwarded-for") == "127.0.0.3"
