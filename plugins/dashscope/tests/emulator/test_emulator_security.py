"""The emulator is not an open service: beyond loopback it needs a key list, and the file URLs it
fetches (file transcription, audio URLs of the synchronous APIs) are limited to loopback, its own
uploads and the prefixes the user allows, so it cannot be turned into a request forger."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import trio
from testkit.common import tone_script
from testkit.files import serve_files, wav_bytes
from voicekit_dashscope_emulator import FixtureEngine, running_emulator
from voicekit_dashscope_emulator.app import DashScopeEmulator, check_exposure, read_api_keys
from voicekit_dashscope_emulator.http import HttpResponse
from voicekit_dashscope_emulator.urls import UrlPolicy

from voicekit.errors import ConfigError

FAST = {"pending_delay": 0.1, "running_delay": 0.1, "vad": "energy"}
KEY = "sk-emulator-security-test"
#: TEST-NET-1 (RFC 5737): never routed, so a URL there is refused by policy or not at all
UNROUTED = "http://192.0.2.1/a.wav"


# -- binding ------------------------------------------------------------------------------------------

def test_a_public_address_needs_a_key_list() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "emulator.lan"):
        with pytest.raises(ConfigError, match=r"without an API key list.*--api-key"):
            check_exposure(host, None)
        with pytest.raises(ConfigError, match="without an API key list"):
            DashScopeEmulator(FixtureEngine([]), host=host)  # refused before anything listens
        check_exposure(host, {KEY})
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, None)
    with pytest.raises(ConfigError, match="key list is empty"):
        check_exposure("127.0.0.1", {" "})


@pytest.mark.slow  # a real `voicekit emulate dashscope` process
def test_the_cli_refuses_at_once_with_one_line() -> None:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "voicekit.cli.main", "emulate", "dashscope", "--host", "0.0.0.0",
                           "--port", "0"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "refusing to listen on '0.0.0.0' without an API key list" in proc.stderr
    assert time.monotonic() - start < 30  # no model was loaded first


def test_keys_from_flags_file_and_environment(tmp_path: Any) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# emulator keys\nsk-one\n\n  sk-two  # the second\n")
    assert read_api_keys(["sk-flag"], str(keys), environ={"DASHSCOPE_EMULATOR_API_KEYS": "sk-a, sk-b sk-c"}) == {
        "sk-flag", "sk-one", "sk-two", "sk-a", "sk-b", "sk-c"}
    assert read_api_keys(None, None, environ={}) is None
    assert read_api_keys([" "], None, environ={"DASHSCOPE_EMULATOR_API_KEYS": " , "}) is None
    with pytest.raises(ConfigError, match="cannot read the API keys file"):
        read_api_keys(None, str(tmp_path / "missing.txt"), environ={})


# -- which URLs are fetched ---------------------------------------------------------------------------

def test_url_policy() -> None:
    default = UrlPolicy()
    for url in ("http://127.0.0.1:8000/a.wav", "http://localhost/a.wav", "https://[::1]:9/x", "http://127.0.0.2/a"):
        assert default.allows(url), url
    for url in ("http://example.com/a.wav", "http://10.0.0.5/a.wav", "http://169.254.169.254/latest/meta-data",
                "http://127.0.0.1@example.com/", "http://2130706433/", "file:///etc/passwd", "ftp://127.0.0.1/a",
                "http://[::ffff:10.0.0.1]/", "gopher://127.0.0.1:25/", "not a url"):
        assert not default.allows(url), url
    allowed = UrlPolicy(("https://files.example.com/audio/",))
    assert allowed.allows("https://files.example.com/audio/a.wav")
    for url in ("http://files.example.com/audio/a.wav",  # another scheme
                "https://files.example.com:8443/audio/a.wav",  # another port
                "https://files.example.com/private/a.wav",  # outside the path
                "https://files.example.com/audio/../private/a.wav", "https://files.example.com/audio/%2e%2e/p",
                "https://files.example.com.evil.example/audio/a.wav", "https://evil.example/audio/a.wav"):
        assert not allowed.allows(url), url
    with pytest.raises(ConfigError, match="not an http"):
        UrlPolicy(("files.example.com",))


async def _file_task(base: str, urls: list[str]) -> list[dict[str, Any]]:
    """Submit a fun-asr file task over the REST API and wait for its per-file results."""
    headers = {"Authorization": f"Bearer {KEY}", "X-DashScope-Async": "enable"}
    async with httpx.AsyncClient(base_url=base, headers=headers, trust_env=False) as client:
        reply = await client.post("/services/audio/asr/transcription",
                                  json={"model": "fun-asr", "input": {"file_urls": urls}})
        assert reply.status_code == 200, reply.text
        task = reply.json()["output"]["task_id"]
        with trio.fail_after(20):
            while (out := (await client.get(f"/tasks/{task}")).json()["output"])["task_status"] in (
                    "PENDING", "RUNNING"):
                await trio.sleep(0.05)
    return list(out["results"])


async def test_file_urls_beyond_loopback_are_refused_without_a_request() -> None:
    script = tone_script(1, seed=3)
    pages = {"/a.wav": wav_bytes(script.audio),
             "/redirect.wav": HttpResponse(302, b"", "text/plain", (("location", UNROUTED),))}
    async with running_emulator(FixtureEngine(script.sentences, key="tone", partial_every=0), files=FAST) as emu, \
            serve_files(pages) as web:
        start = trio.current_time()
        results = await _file_task(emu.http_base_url, [web + "/a.wav", UNROUTED, "http://169.254.169.254/x",
                                                       web + "/redirect.wav"])
        # refused by policy, not after a connection attempt (the download timeout is 10 s)
        assert trio.current_time() - start < 8
        assert emu.stats["file_urls_refused"] == 2
    ok, unrouted, metadata, redirect = results
    assert ok["subtask_status"] == "SUCCEEDED"
    for refused in (unrouted, metadata):
        assert refused["subtask_status"] == "FAILED" and refused["code"] == "InvalidFile.DownloadFailed"
        assert "--allow-url-prefix" in refused["message"] and "loopback" in refused["message"]
    # a loopback URL that redirects elsewhere is not followed
    assert redirect["subtask_status"] == "FAILED" and redirect["code"] == "InvalidFile.DownloadFailed"


async def test_an_allowed_prefix_is_fetched() -> None:
    """The file server is on loopback, named by its IPv4-mapped IPv6 address, which the default
    policy does not count as loopback (Python < 3.13): refused by default, fetched once allowed."""
    script = tone_script(1, seed=5)
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    async with serve_files({"/audio/a.wav": wav_bytes(script.audio)}) as web:
        port = web.rsplit(":", 1)[1]
        url = f"http://[::ffff:127.0.0.1]:{port}/audio/a.wav"
        if not UrlPolicy().allows(url):
            async with running_emulator(engine, files=FAST) as emu:
                (refused,) = await _file_task(emu.http_base_url, [url])
            assert refused["subtask_status"] == "FAILED" and "--allow-url-prefix" in refused["message"]
        async with running_emulator(engine, files=FAST,
                                    allow_url_prefixes=(f"http://[::ffff:127.0.0.1]:{port}/audio/",)) as emu:
            (fetched,) = await _file_task(emu.http_base_url, [url])
            (outside,) = await _file_task(emu.http_base_url, [url.replace("/audio/", "/other/")])
    assert fetched["subtask_status"] == "SUCCEEDED", fetched
    assert outside["subtask_status"] == "FAILED"
    if not UrlPolicy().allows(url):  # refused by the policy, not by the file server's 404
        assert "--allow-url-prefix" in outside["message"]


async def test_audio_urls_of_the_synchronous_api_are_limited_too() -> None:
    async with running_emulator(FixtureEngine([]), files=FAST) as emu:
        async with httpx.AsyncClient(trust_env=False) as client:
            reply = await client.post(
                f"http://127.0.0.1:{emu.port}/compatible-mode/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={"model": "qwen3-asr-flash", "messages": [{"role": "user", "content": [
                    {"type": "input_audio", "input_audio": {"data": UNROUTED}}]}]})
    assert reply.status_code == 400, reply.text
    assert "--allow-url-prefix" in reply.text
