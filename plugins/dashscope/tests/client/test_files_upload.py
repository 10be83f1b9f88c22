"""Local files: limits checked before upload, the streamed temporary upload, ``oss://`` URLs."""

from __future__ import annotations

import struct
from pathlib import Path

import httpx
import numpy as np
import pytest
from testkit.common import FAKE_KEY, tone_script
from testkit.files import closed_port, wav_bytes
from voicekit_dashscope.client.files import FileTranscriber
from voicekit_dashscope.protocol.files import FileLimitError
from voicekit_dashscope.upload import Uploader, UploadError, check_limits, transcribe_sources
from voicekit_dashscope_emulator import FixtureEngine, running_emulator

FAST = {"pending_delay": 0.1, "running_delay": 0.1, "vad": "energy"}


def _wav_header(frames: int, rate: int = 16000) -> bytes:
    data = frames * 2
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", data)


async def test_limits_are_checked_before_any_network(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{await closed_port()}"
    uploader = Uploader(FileTranscriber(FAKE_KEY, base_url=nobody))
    big = tmp_path / "big.mp3"
    with open(big, "wb") as f:  # sparse: takes no disk space
        f.truncate(2 * 1024 ** 3 + 1)
    with pytest.raises(FileLimitError, match=r"big\.mp3 is 2\.00 GB; fun-asr takes at most 2\.00 GB"):
        await uploader.upload(big, "fun-asr")
    long = tmp_path / "long.wav"  # a 13-hour WAV at 8 kHz (0.75 GB): under the size cap, over the duration cap
    frames = 13 * 3600 * 8000
    with open(long, "wb") as f:
        f.write(_wav_header(frames, 8000))
        f.truncate(44 + frames * 2)
    with pytest.raises(FileLimitError, match=r"long\.wav lasts 13\.00 h; qwen3-asr-flash-filetrans takes at most 12 h"):
        await uploader.upload(long, "qwen3-asr-flash-filetrans")
    with pytest.raises(FileLimitError, match="not a readable file"):
        check_limits(tmp_path / "missing.wav", "fun-asr")


async def test_upload_streams_with_progress_and_transcribes_from_oss(tmp_path: Path) -> None:
    script = tone_script(2, seed=3)
    # pad with 60 s of silence so the body spans several 1 MiB reads
    audio = np.concatenate([np.frombuffer(script.audio, "<i2"), np.zeros(60 * 16000, np.int16)])
    path = tmp_path / "meeting.wav"
    path.write_bytes(wav_bytes(audio))
    seen: list[tuple[int, int]] = []
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0)
    async with running_emulator(engine, files=FAST) as emu:
        client = FileTranscriber(FAKE_KEY, base_url=emu.http_base_url, poll_first=0.05)
        files = await transcribe_sources(client, "fun-asr", [path], progress=lambda n, a, b: seen.append((a, b)),
                                         deadline=30)
        key = next(iter(emu.files.uploads.objects))
        stored = emu.files.uploads.open(FAKE_KEY, key)
        # the oss:// URL is refused without the resolve header, like the service
        async with httpx.AsyncClient() as http:
            resp = await http.post(emu.http_base_url + "/services/audio/asr/transcription",
                                   json={"model": "fun-asr", "input": {"file_urls": [f"oss://{key}"]}},
                                   headers={"Authorization": f"Bearer {FAKE_KEY}", "X-DashScope-Async": "enable"})
        # another key cannot use the file
        assert emu.files.uploads.open("sk-other", key) is None
    assert stored == path.read_bytes()
    size = path.stat().st_size
    assert len(seen) >= 3 and seen[-1] == (size, size) and all(b == size for _, b in seen)
    assert [a for a, _ in seen] == sorted(a for a, _ in seen)
    assert files[0].outcome.file_url == f"oss://{key}"
    assert files[0].transcript is not None and [s.text for s in files[0].transcript.sentences] == script.order
    assert resp.status_code == 400 and resp.json()["code"] == "InvalidParameter.DataInspection"


async def test_expired_policy_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(b"\0\0" * 1600))
    async with running_emulator(FixtureEngine([]), files={**FAST, "upload_policy_ttl": 0.0}) as emu:
        uploader = Uploader(FileTranscriber(FAKE_KEY, base_url=emu.http_base_url))
        with pytest.raises(UploadError, match="Policy expired") as exc:
            await uploader.upload(path, "fun-asr")
    assert exc.value.status == 403 and exc.value.code == "AccessDenied"
