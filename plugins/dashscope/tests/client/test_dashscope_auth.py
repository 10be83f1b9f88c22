"""Keys never leak (reprs, errors, log lines), regions resolve, and keys only travel over TLS."""

from __future__ import annotations

import pickle

import pytest
import structlog
from structlog.testing import capture_logs
from testkit.common import ToneScript, fixture_emulator, stream_through
from voicekit_dashscope.asr.task import FunASRRealtime
from voicekit_dashscope.auth import ApiKey, resolve_api_key, scrub, structlog_processor
from voicekit_dashscope.client.task import RetryPolicy, Timeouts
from voicekit_dashscope.errors import AuthenticationError, DashScopeError, TaskFailedError
from voicekit_dashscope.regions import Endpoints, check_transport, get_region
from voicekit_dashscope.vocabulary import VocabularyClient

from voicekit.errors import ConfigError

SECRET = "sk-leakcheck-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def test_api_key_is_redacted_everywhere() -> None:
    key = ApiKey(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key) and SECRET not in f"{key}"
    assert key.reveal() == SECRET and key.bearer() == f"Bearer {SECRET}"
    assert scrub(f"url?key={SECRET}&x") == "url?key=<redacted…b1a0>&x"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    err = DashScopeError(f"boom {SECRET}", server_message=f"echo {SECRET}")
    assert SECRET not in str(err) and SECRET not in (err.server_message or "")
    event = structlog_processor(None, "info", {"event": f"x {SECRET}", "obj": [SECRET], "n": 3})
    assert SECRET not in str(event) and event["n"] == 3


def test_key_from_environment_or_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        resolve_api_key(None)
    monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
    assert resolve_api_key(None) == ApiKey(SECRET)
    assert resolve_api_key("sk-explicit-000000000") == ApiKey("sk-explicit-000000000")
    with pytest.raises(ConfigError, match="whitespace"):
        ApiKey("sk bad key")


def test_regions_and_tls() -> None:
    assert Endpoints.resolve("singapore").inference_url == "wss://dashscope-intl.aliyuncs.com/api-ws/v1/inference"
    assert Endpoints.resolve("beijing").customization_url == (
        "https://dashscope.aliyuncs.com/api/v1/services/audio/asr/customization")
    assert Endpoints.resolve("ap-southeast-1", workspace="ws-123").inference_url == (
        "wss://ws-123.ap-southeast-1.maas.aliyuncs.com/api-ws/v1/inference")
    assert get_region("us").host == "dashscope-us.aliyuncs.com"
    emu = Endpoints.resolve(base_url="http://127.0.0.1:8765/anything")
    assert emu.inference_url == "ws://127.0.0.1:8765/api-ws/v1/inference"
    assert check_transport("ws://[::1]:9/x") and check_transport("http://localhost:1/")
    with pytest.raises(ConfigError, match="plain http://"):
        check_transport("http://10.0.0.5:8000/api")
    with pytest.raises(ConfigError, match="unknown DashScope region"):
        get_region("mars")
    with pytest.raises(ConfigError, match="workspace"):
        get_region("us").host_for("ws1")


async def test_no_log_line_or_error_contains_the_key(script: ToneScript) -> None:
    """Drive failures that print keys' neighbours: refused handshake, task failure, bad vocabulary."""
    texts: list[str] = []
    with capture_logs() as logs:
        async with fixture_emulator(script, api_keys={"sk-only-this-one-0000"}) as emu:
            asr = FunASRRealtime(api_key=SECRET, base_url=emu.base_url,
                                 retry=RetryPolicy(max_retries=1, backoff_initial=0.01),
                                 timeouts=Timeouts(ping_interval=0.2, ping_timeout=0.5))
            texts.append(repr(asr))
            with pytest.raises(AuthenticationError) as info:
                await stream_through(asr, script.audio[:16000])
            texts += [str(info.value), repr(info.value), repr(asr.api_key)]
            client = VocabularyClient(SECRET, base_url=emu.http_base_url)
            texts.append(repr(client))
            with pytest.raises(DashScopeError) as vinfo:
                await client.list()
            texts += [str(vinfo.value)]
        async with fixture_emulator(script) as emu:
            asr = FunASRRealtime(api_key=SECRET, base_url=emu.base_url, vocabulary_id=f"vocab-{SECRET}")
            with pytest.raises(TaskFailedError) as tinfo:
                await stream_through(asr, script.audio[:16000])
            texts += [str(tinfo.value), tinfo.value.server_message or ""]
    assert logs, "the failures were logged"
    texts += [str(entry) for entry in logs]
    assert "redacted" in " ".join(texts)
    leaks = [t for t in texts if SECRET in t]
    assert leaks == []


def test_voicekit_logging_scrubs_registered_keys() -> None:
    import io

    from voicekit.logging import configure

    ApiKey(SECRET)  # registering a key installs the scrubber into voicekit's logging chain
    buf = io.StringIO()
    try:
        configure("debug", json=True, stream=buf)
        structlog.get_logger("test").error("echo " + SECRET, key=SECRET, nested={"k": SECRET})
    finally:
        structlog.reset_defaults()
    out = buf.getvalue()
    assert "echo" in out and "redacted" in out and SECRET not in out
