"""Real speech, two speakers: the official SDK (unchanged) and voicekit's client against the emulator.

The recording alternates the LibriVox reader (a woman) and the pocketsphinx command speaker (a man);
the emulator transcribes with the ``moonshine`` plugin and diarizes with its voice-print clustering.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
import trio
from testkit import FILES_SDK_DRIVER
from testkit.common import FAKE_KEY
from testkit.files import serve_files, two_speaker_recording, wav_bytes
from voicekit_dashscope.client.files import FileTranscriber
from voicekit_dashscope.protocol.files import FileOptions
from voicekit_dashscope_emulator import running_emulator

from voicekit.formats import render

pytest.importorskip("dashscope", reason="the official SDK is in the plugin's [test] extra")
pytest.importorskip("voicekit_moonshine", reason="needs the moonshine plugin (embedded engine)")
pytestmark = [pytest.mark.slow, pytest.mark.realspeech]
DRIVER = FILES_SDK_DRIVER
FILES = {"pending_delay": 0.2, "running_delay": 0.3}


def _who(spans: list[tuple[float, float, str]], begin_ms: int, end_ms: int) -> str:
    mid = (begin_ms + end_ms) / 2000
    return min(spans, key=lambda s: 0 if s[0] <= mid <= s[1] else min(abs(mid - s[0]), abs(mid - s[1])))[2]


async def _sdk(emu: Any, mode: str, url: str) -> dict[str, Any]:
    env = dict(os.environ, DASHSCOPE_HTTP_BASE_URL=emu.http_base_url, DASHSCOPE_API_KEY=FAKE_KEY)
    with trio.fail_after(60):
        proc = await trio.run_process([sys.executable, str(DRIVER), mode, url], env=env, capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


async def test_two_speakers_through_the_official_sdk_and_voicekit() -> None:
    audio, spans = two_speaker_recording()
    async with running_emulator(files=FILES) as emu, serve_files({"/talk.wav": wav_bytes(audio)}) as web:
        url = web + "/talk.wav"
        async with trio.open_nursery() as nursery:
            outs: dict[str, Any] = {}

            async def run(mode: str) -> None:
                outs[mode] = await _sdk(emu, mode, url)

            nursery.start_soon(run, "fun")
            nursery.start_soon(run, "qwen")
            mine = await FileTranscriber(FAKE_KEY, base_url=emu.http_base_url, poll_first=0.1).transcribe(
                "fun-asr", [url], FileOptions(diarization=True, speaker_count=2), deadline=60)

    # Transcription.async_call/wait: PENDING at submit, SUCCEEDED at the end, a fetchable result file
    fun = outs["fun"]
    assert fun["submit_status"] == "PENDING" and fun["status_code"] == 200 and fun["task_status"] == "SUCCEEDED"
    assert fun["results"][0]["subtask_status"] == "SUCCEEDED" and fun["results"][0]["file_url"] == url
    sentences = fun["file"]["transcripts"][0]["sentences"]
    assert [s["sentence_id"] for s in sentences] == list(range(1, len(sentences) + 1))
    # every clip was heard, and each speaker keeps one id, different from the other's
    by_who: dict[str, set[int]] = {}
    for s in sentences:
        by_who.setdefault(_who(spans, s["begin_time"], s["end_time"]), set()).add(s["speaker_id"])
    assert by_who.keys() == {"reader", "commands"}
    assert len(by_who["reader"]) == 1 and len(by_who["commands"]) == 1 and by_who["reader"] != by_who["commands"]
    text = " ".join(s["text"] for s in sentences).lower()
    assert "go forward ten met" in text and "something" in text

    # QwenTranscription: output.result (not results), usage.seconds, sentence ids from 0, emotion/language
    qwen = outs["qwen"]
    assert qwen["task_status"] == "SUCCEEDED" and qwen["result"]["transcription_url"]
    assert qwen["usage"]["seconds"] >= int(audio.size / 16000)
    qs = qwen["file"]["transcripts"][0]["sentences"]
    assert qs[0]["sentence_id"] == 0 and all(s["emotion"] and s["language"] == "en" and s["words"] for s in qs)

    # voicekit's own client: the same speakers, rendered with speaker labels
    tr = mine[0].transcript
    assert tr is not None and len(tr.speakers) == 2
    rttm = render(tr.results(), "rttm", source="talk.wav")
    labels = [line.split()[7] for line in rttm.splitlines()]
    assert set(labels) == {"speaker_0", "speaker_1"} and labels[0] == "speaker_0"
    assert "speaker_1" in render(tr.results(), "txt")


def test_voice_prints_separate_the_two_speakers_without_a_count() -> None:
    from testkit.files import read_pcm
    from voicekit_dashscope_emulator.files import FilesSettings
    from voicekit_dashscope_emulator.speakers import cluster_speakers, voice_print

    from voicekit.testing.data import librivox_clips, speech

    commands = [speech(n) for n in ("goforward", "something", "numbers")]
    reader = [p for p, _ in librivox_clips()]
    prints = [voice_print(read_pcm(p)) for p in commands + reader]
    auto = cluster_speakers(prints, None, FilesSettings().speaker_threshold)
    assert auto == [0] * len(commands) + [1] * len(reader)
    assert cluster_speakers(prints, 2, 0.0) == auto
