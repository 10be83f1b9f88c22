"""File transcription: voicekit's client against the emulator, over loopback HTTP.

The files are served by a second loopback HTTP server, as public URLs would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio
from testkit.common import FAKE_KEY, stream_through, tone_script
from testkit.files import closed_port, serve_files, wav_bytes
from voicekit_dashscope.client.files import FileTranscriber
from voicekit_dashscope.protocol.files import (
    BadResponseError,
    FileFailedError,
    FileOptions,
    TaskUnknownError,
    WaitTimeoutError,
    build_submit,
    poll_intervals,
)
from voicekit_dashscope_emulator import FixtureEngine, running_emulator, tone_audio
from voicekit_dashscope_emulator.http import HttpResponse

from voicekit.errors import ConfigError

FAST = {"pending_delay": 0.2, "running_delay": 0.2, "vad": "energy"}


def _client(emu: object) -> FileTranscriber:
    return FileTranscriber(FAKE_KEY, base_url=emu.http_base_url, poll_first=0.05, poll_cap=0.2)  # type: ignore[attr-defined]


def test_poll_backoff_matches_the_sdk() -> None:
    it = poll_intervals()
    assert [next(it) for _ in range(11)] == [1, 1, 1, 2, 2, 2, 4, 4, 4, 5, 5]


def test_submit_bodies_per_family() -> None:
    fun = build_submit("fun-asr", ["https://x/a.wav"], FileOptions(diarization=True, speaker_count=2,
                                                                   language="en", vocabulary_id="vocab-a-1"))
    assert fun == {"model": "fun-asr", "input": {"file_urls": ["https://x/a.wav"]},
                   "parameters": {"language_hints": ["en"], "vocabulary_id": "vocab-a-1",
                                  "diarization_enabled": True, "speaker_count": 2}}
    qwen = build_submit("qwen3-asr-flash-filetrans", ["https://x/a.wav"],
                        FileOptions(context="Moonshine", language="en"))
    assert qwen["input"] == {"file_url": "https://x/a.wav"}
    assert qwen["parameters"] == {"language": "en", "enable_words": True, "text": "Moonshine"}
    with pytest.raises(ConfigError, match="no speaker diarization"):
        build_submit("qwen3-asr-flash-filetrans", ["https://x/a.wav"], FileOptions(diarization=True))
    with pytest.raises(ConfigError, match="exactly one file"):
        build_submit("qwen3-asr-flash-filetrans", ["https://x/a", "https://x/b"])
    with pytest.raises(ConfigError, match="not a DashScope file-transcription model"):
        build_submit("whisper", ["https://x/a.wav"])
    with pytest.raises(ConfigError, match="speaker_count"):
        build_submit("fun-asr", ["https://x/a.wav"], FileOptions(diarization=True, speaker_count=1))


async def test_fun_asr_states_results_and_per_file_failure() -> None:
    script = tone_script(3, seed=2)
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    port = await closed_port()
    async with running_emulator(engine, files=FAST) as emu, serve_files({"/a.wav": wav_bytes(script.audio)}) as web:
        client = _client(emu)
        bad = f"http://127.0.0.1:{port}/gone.wav"
        info = await client.submit("fun-asr", [web + "/a.wav", bad], FileOptions(language="en"))
        assert info.status == "PENDING"
        seen = [info.status]
        while not (now := await client.query(info.task_id)).done:
            if now.status != seen[-1]:
                seen.append(now.status)
            await trio.sleep(0.02)
        seen.append(now.status)
        assert seen == ["PENDING", "RUNNING", "SUCCEEDED"]
        assert now.metrics == {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}
        assert now.usage_seconds is not None and now.usage_seconds >= 2
        files = await client.results(now)
    ok, failed = files
    assert ok.ok and not failed.ok
    assert failed.outcome.code == "InvalidFile.DownloadFailed" and failed.outcome.file_url == bad
    tr = ok.transcript
    assert tr is not None and tr.sample_rate == 16000
    assert [s.text for s in tr.sentences] == script.order
    assert [s.sentence_id for s in tr.sentences] == [1, 2, 3]
    assert all(s.speaker_id is None and s.words and s.end_ms > s.begin_ms for s in tr.sentences)
    results = tr.results()
    assert [r.text for r in results] == script.order and all(r.speaker is None for r in results)
    # the sentences sit where the tones are (first tone starts after 0.4 s of silence)
    assert 0.2 <= results[0].start <= 0.45


@pytest.mark.slow  # over a second
async def test_qwen3_filetrans_emotion_language_and_words_switch() -> None:
    script = tone_script(2, seed=4)
    sentences = {f: {"text": t, "emotion": "happy"} for f, t in script.sentences.items()}
    engine = FixtureEngine(sentences, key="tone", partial_every=0)
    async with running_emulator(engine, files=FAST) as emu, serve_files({"/q.wav": wav_bytes(script.audio)}) as web:
        client = _client(emu)
        with_words = await client.transcribe("qwen3-asr-flash-filetrans", [web + "/q.wav"],
                                             FileOptions(language="en", context="Sentence Hertz"), deadline=20)
        without = await client.transcribe("qwen3-asr-flash-filetrans", [web + "/q.wav"],
                                          FileOptions(word_timestamps=False), deadline=20)
    tr = with_words[0].transcript
    assert tr is not None
    assert [s.text for s in tr.sentences] == script.order
    assert [s.sentence_id for s in tr.sentences] == [0, 1]
    assert {(s.emotion, s.language) for s in tr.sentences} == {("happy", "en")}
    assert all(s.words for s in tr.sentences)
    assert without[0].transcript is not None and all(not s.words for s in without[0].transcript.sentences)
    assert tr.results()[0].emotion == "happy"


async def test_stereo_channels_are_transcribed_separately() -> None:
    left = np.frombuffer(tone_audio([(0, 0.4), (400, 1.0), (0, 1.0)]), "<i2")
    right = np.frombuffer(tone_audio([(0, 0.9), (700, 1.0), (0, 0.5)]), "<i2")
    stereo = np.stack([left, right], axis=1)
    engine = FixtureEngine({400: "the left side speaks", 700: "the right side answers"}, key="tone",
                           partial_every=0)
    async with running_emulator(engine, files=FAST) as emu, \
            serve_files({"/s.wav": wav_bytes(stereo.reshape(-1), channels=2)}) as web:
        res = await _client(emu).transcribe("fun-asr", [web + "/s.wav"], FileOptions(channel_id=(0, 1)), deadline=20)
    tr = res[0].transcript
    assert tr is not None and tr.text_by_channel == {0: "the left side speaks", 1: "the right side answers"}
    results = tr.results()
    assert [(r.speaker, r.text) for r in results] == [("channel_0", "the left side speaks"),
                                                      ("channel_1", "the right side answers")]


@pytest.mark.slow  # over a second
async def test_all_files_failed_is_a_typed_error() -> None:
    port = await closed_port()
    async with running_emulator(FixtureEngine([]), files=FAST) as emu, \
            serve_files({"/notwav.wav": b"<html>not audio</html>"}) as web:
        client = _client(emu)
        with pytest.raises(FileFailedError, match=r"InvalidFile\.DownloadFailed") as exc:
            await client.transcribe("fun-asr", [f"http://127.0.0.1:{port}/x.wav"], deadline=20)
        assert exc.value.failures[0].code == "InvalidFile.DownloadFailed"
        with pytest.raises(FileFailedError, match="DECODE_ERROR"):
            await client.transcribe("qwen3-asr-flash-filetrans", [web + "/notwav.wav"], deadline=20)


async def test_unknown_task_and_other_keys_tasks_are_unknown() -> None:
    async with running_emulator(FixtureEngine([]), files=FAST) as emu, \
            serve_files({"/a.wav": wav_bytes(b"\0\0" * 16000)}) as web:
        client = _client(emu)
        info = await client.query("no-such-task")
        assert info.status == "UNKNOWN"
        with pytest.raises(TaskUnknownError, match="expire after 24 h"):
            await client.results(info)
        mine = await client.submit("fun-asr", [web + "/a.wav"])
        other = FileTranscriber("sk-someone-else-000000000000000000", base_url=emu.http_base_url)
        assert (await other.query(mine.task_id)).status == "UNKNOWN"


async def test_cancel_while_pending_and_deadline_cancels() -> None:
    slow = {**FAST, "pending_delay": 30.0}
    async with running_emulator(FixtureEngine([]), files=slow) as emu, \
            serve_files({"/a.wav": wav_bytes(b"\0\0" * 16000)}) as web:
        client = _client(emu)
        info = await client.submit("fun-asr", [web + "/a.wav"])
        assert (await client.cancel(info.task_id)).status == "CANCELED"
        assert (await client.query(info.task_id)).status == "CANCELED"
        with pytest.raises(WaitTimeoutError, match=r"did not finish within 0\.5 s"):
            await client.transcribe("fun-asr", [web + "/a.wav"], deadline=0.5)
        assert emu.stats["file_cancels"] == 2


async def test_html_instead_of_json_is_a_typed_error() -> None:
    page = HttpResponse(502, b"<html><body>Bad Gateway</body></html>", "text/html")
    async with serve_files({"/api/v1/tasks/abc": page}) as web:
        client = FileTranscriber(FAKE_KEY, base_url=web)
        with pytest.raises(BadResponseError, match="text/html instead of JSON") as exc:
            await client.query("abc")
        assert exc.value.status == 502


async def test_cli_transcribe_local_file_and_url(tmp_path: Path) -> None:
    import argparse
    import contextlib
    import io

    from voicekit_dashscope.cli import register

    script = tone_script(2, seed=6)
    local = tmp_path / "local.wav"
    local.write_bytes(wav_bytes(script.audio))
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    async with running_emulator(engine, files=FAST) as emu, serve_files({"/u.wav": wav_bytes(script.audio)}) as web:
        parser = argparse.ArgumentParser(prog="voicekit")
        register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["dashscope", "transcribe", str(local), web + "/u.wav", "--format", "srt",
                                  "--base-url", emu.http_base_url, "--api-key", FAKE_KEY, "--poll", "0.05"])
        out, err = io.StringIO(), io.StringIO()

        def call() -> int:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                return int(args.func(args))

        code = await trio.to_thread.run_sync(call)
    assert code == 0, err.getvalue()
    assert out.getvalue().count(script.order[0]) == 2 and out.getvalue().count(" --> ") == 4
    assert "uploading local.wav: 100%" in err.getvalue()


async def test_file_mode_plugin_through_the_session_contract() -> None:
    from voicekit.plugins import load

    script = tone_script(3, seed=21)
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    async with running_emulator(engine, files=FAST) as emu:
        asr = load("asr", "paraformer-v2")(FAKE_KEY, region="beijing", base_url=emu.http_base_url,
                                          poll_first=0.05, diarization=True)
        assert asr.capabilities.mode == "file" and asr.capabilities.diarization
        results = await stream_through(asr, script.audio)
    assert [r.text for r in results] == script.order
    assert all(r.is_final and r.speaker is not None and r.words for r in results)


async def test_submit_needs_the_async_header_and_a_known_model() -> None:
    import httpx

    async with running_emulator(FixtureEngine([]), files=FAST) as emu, httpx.AsyncClient() as http:
        url = emu.http_base_url + "/services/audio/asr/transcription"
        auth = {"Authorization": f"Bearer {FAKE_KEY}"}
        body = {"model": "fun-asr", "input": {"file_urls": ["http://127.0.0.1:9/a.wav"]}}
        sync = await http.post(url, json=body, headers=auth)
        unknown = await http.post(url, json={**body, "model": "nope"}, headers=auth | {"X-DashScope-Async": "enable"})
        wrong_input = await http.post(url, json={"model": "qwen3-asr-flash-filetrans", "input": {"file_urls": ["x"]}},
                                      headers=auth | {"X-DashScope-Async": "enable"})
    assert sync.status_code == 403 and sync.json()["code"] == "AccessDenied"
    assert unknown.status_code == 400 and "Model not found" in unknown.json()["message"]
    assert wrong_input.status_code == 400 and "input.file_url" in wrong_input.json()["message"]
