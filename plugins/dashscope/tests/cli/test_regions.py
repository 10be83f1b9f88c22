"""Which models each region offers: checked by every plugin before any network work (also with
``base_url``), and mirrored by the emulator when told which region it emulates.

The emulators here are ``voicekit emulate dashscope --region ...`` subprocesses on loopback, one per
region, shared by the module. A host answers a model its region does not offer exactly like an
unknown model (task protocol: ``task-failed`` ``ModelNotFound``; file API: 400 ``InvalidParameter``
"Model not found"; OpenAI-compatible API: 404 ``model_not_found``), which is what the real service
does, since each region's host only knows its own models.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from testkit.common import FAKE_KEY
from voicekit_dashscope.regions import AVAILABILITY, RegionError, check_model_region, model_regions

from voicekit.plugins import load

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
CLOSED = "http://127.0.0.1:9"  # nothing listens there: a check that needs the network would fail differently


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "OPENAI_"))}


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """region → the emulator's ``scheme://host:port`` (one subprocess per emulated region)."""
    tmp = tmp_path_factory.mktemp("regions")
    fixtures = tmp / "fixtures.json"
    fixtures.write_text(json.dumps({"key": "order", "sentences": ["hello there"]}))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    hosts: dict[str, str] = {}
    try:
        for region in ("singapore", "beijing", "us"):
            log = (tmp / f"{region}.log").open("wb")
            proc = subprocess.Popen([VOICEKIT, "emulate", "dashscope", "--port", "0", "--region", region,
                                     "--fixtures", str(fixtures)],
                                    stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=_env())
            procs[region] = proc
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            while region not in hosts:
                line = proc.stdout.readline().decode()
                if not line or time.monotonic() > deadline:
                    pytest.fail(f"the {region} emulator did not start: {(tmp / f'{region}.log').read_text()}")
                m = re.search(r"DASHSCOPE_HTTP_BASE_URL=(http://[^/\s]+)", line)
                if m:
                    hosts[region] = m.group(1)
        yield hosts
        for region, proc in procs.items():
            assert proc.poll() is None, f"the {region} emulator died: {(tmp / f'{region}.log').read_text()}"
    finally:
        for proc in procs.values():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- the plugins refuse before any network work, with or without base_url -------------------------

@pytest.mark.parametrize(("plugin", "region", "model"), [
    ("fun-asr", "us", "fun-asr"),
    ("fun-asr-realtime", "us", "fun-asr-realtime"),
    ("qwen3-asr-flash-realtime", "us", "qwen3-asr-flash-realtime"),
    ("qwen3-asr-flash-filetrans", "us", "qwen3-asr-flash-filetrans"),
    ("qwen3.5-omni-plus", "us", "qwen3.5-omni-plus"),
    ("qwen3.5-omni-plus-realtime", "us", "qwen3.5-omni-plus-realtime"),
    ("paraformer-v2", "singapore", "paraformer-v2"),
    ("paraformer-8k-v2", "singapore", "paraformer-8k-v2"),
    ("paraformer-realtime", "singapore", "paraformer-realtime-v2"),
])
@pytest.mark.parametrize("base_url", [None, CLOSED])
def test_a_model_is_refused_where_it_is_not_offered(plugin: str, region: str, model: str,
                                                    base_url: str | None) -> None:
    with pytest.raises(RegionError) as exc:
        load("asr", plugin)(api_key=FAKE_KEY, region=region, base_url=base_url)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{model} is not offered in region {region} (")
    home = model_regions(model)[0]
    assert f"({home})" in msg and "pass region=" in msg


def test_fun_asr_in_the_us_is_refused_with_a_clear_error() -> None:
    with pytest.raises(RegionError, match=r"^fun-asr is not offered in region us \(us-east-1\); it is offered "
                                          r"in: beijing \(cn-beijing\), singapore \(ap-southeast-1\)"):
        load("asr", "fun-asr")(region="us", api_key=FAKE_KEY)


def test_models_are_accepted_where_the_guide_lists_them() -> None:
    para = load("asr", "paraformer-v2")(api_key=FAKE_KEY, region="beijing", base_url=CLOSED)
    assert para.spec.name == "paraformer-v2"
    assert load("asr", "fun-asr-realtime")(api_key=FAKE_KEY, region="singapore", base_url=CLOSED).model == \
        "fun-asr-realtime"
    # the US region offers qwen3-asr-flash (non-real-time) under its US name, native API only
    us = load("asr", "qwen3-asr-flash")(api_key=FAKE_KEY, region="us", api="native", base_url=CLOSED)
    assert us.model_name == "qwen3-asr-flash-us"
    with pytest.raises(Exception, match="no OpenAI-compatible endpoint in the US region"):
        load("asr", "qwen3-asr-flash")(api_key=FAKE_KEY, region="us", base_url=CLOSED)
    assert AVAILABILITY["us-east-1"] == {"qwen3-asr-flash-us", "qwen3-asr-flash-2025-09-08-us"}
    assert check_model_region("qwen3-asr-flash", "us").id == "us-east-1"


# -- the CLI: refused before the upload ----------------------------------------------------------

def _wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))
    return path


@pytest.mark.slow  # the `emulators` subprocesses
def test_cli_refuses_a_beijing_model_in_singapore_before_uploading(emulators: dict[str, str],
                                                                   tmp_path: Path) -> None:
    clip = _wav(tmp_path / "clip.wav")
    r = subprocess.run([VOICEKIT, "dashscope", "transcribe", str(clip), "--model", "paraformer-v2", "--region",
                        "singapore", "--base-url", emulators["singapore"], "--api-key", FAKE_KEY],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode != 0 and r.stdout == ""
    assert "paraformer-v2 is not offered in region singapore" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # in Beijing the same command is accepted and reaches the (Beijing) emulator
    r = subprocess.run([VOICEKIT, "dashscope", "transcribe", str(clip), "--model", "paraformer-v2", "--region",
                        "beijing", "--base-url", emulators["beijing"], "--api-key", FAKE_KEY],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert "not offered" not in r.stderr, r.stderr


# -- the emulator answers like the region's host ---------------------------------------------------

def _submit(host: str, model: str) -> httpx.Response:
    return httpx.post(f"{host}/api/v1/services/audio/asr/transcription", timeout=30,
                      headers={"Authorization": f"Bearer {FAKE_KEY}", "X-DashScope-Async": "enable"},
                      json={"model": model, "input": {"file_urls": ["https://example.invalid/a.wav"]},
                            "parameters": {}})


@pytest.mark.slow  # the `emulators` subprocesses
def test_emulated_regions_refuse_models_they_do_not_offer(emulators: dict[str, str]) -> None:
    refused = _submit(emulators["singapore"], "paraformer-v2")
    assert refused.status_code == 400
    assert refused.json()["code"] == "InvalidParameter" and "Model not found" in refused.json()["message"]
    assert _submit(emulators["beijing"], "paraformer-v2").status_code == 200
    assert _submit(emulators["singapore"], "fun-asr").status_code == 200
    assert _submit(emulators["us"], "fun-asr").status_code == 400
    # the US host has no OpenAI-compatible speech endpoint; Singapore answers the same request
    body = {"model": "qwen3-asr-flash", "stream": True,
            "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]}
    us = httpx.post(f"{emulators['us']}/compatible-mode/v1/chat/completions", json=body, timeout=30,
                    headers={"Authorization": f"Bearer {FAKE_KEY}"})
    assert us.status_code == 404 and us.json()["error"]["code"] == "model_not_found"
    sg = httpx.post(f"{emulators['singapore']}/compatible-mode/v1/chat/completions", json=body, timeout=30,
                    headers={"Authorization": f"Bearer {FAKE_KEY}"})
    assert sg.status_code != 404


@pytest.mark.slow  # the `emulators` subprocesses and a `voicekit transcribe` subprocess per case
@pytest.mark.parametrize(("plugin", "client_region", "host_region", "answer"), [
    # a client that believes it is in Beijing, talking to a Singapore host (the task protocol)
    ("paraformer-realtime", "beijing", "singapore", "ModelNotFound"),
    # the realtime endpoint refuses the handshake for a model the US host does not offer
    ("qwen3-asr-flash-realtime", "singapore", "us", "404"),
])
def test_a_host_of_another_region_answers_like_the_service(emulators: dict[str, str], tmp_path: Path,
                                                           plugin: str, client_region: str, host_region: str,
                                                           answer: str) -> None:
    clip = _wav(tmp_path / "clip.wav")
    ws = emulators[host_region].replace("http://", "ws://")
    r = subprocess.run([VOICEKIT, "transcribe", str(clip), "--asr", plugin, "--asr-option", f"base_url={ws}",
                        "--asr-option", f"api_key={FAKE_KEY}", "--asr-option", f"region={client_region}"],
                       capture_output=True, text=True, timeout=180, env=_env())
    assert r.returncode != 0, r.stdout
    assert answer in r.stderr, r.stderr
    # and the host of the right region serves the same model
    ok = emulators[client_region].replace("http://", "ws://")
    r = subprocess.run([VOICEKIT, "transcribe", str(clip), "--asr", plugin, "--asr-option", f"base_url={ok}",
                        "--asr-option", f"api_key={FAKE_KEY}", "--asr-option", f"region={client_region}"],
                       capture_output=True, text=True, timeout=180, env=_env())
    assert r.returncode == 0, r.stderr
