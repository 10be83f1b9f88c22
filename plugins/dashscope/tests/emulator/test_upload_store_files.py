"""The emulated OSS upload target keeps a file only for an upload it accepts: a refused upload, a
client that leaves mid-body and a request that breaks HTTP leave nothing in its directory, and the
broken request is answered 400 and hung up on."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from testkit.common import FAKE_KEY
from testkit.files import wav_bytes
from voicekit_dashscope.client.files import FileTranscriber
from voicekit_dashscope.upload import Uploader, UploadError
from voicekit_dashscope_emulator import FixtureEngine, running_emulator

FAST = {"pending_delay": 0.1, "running_delay": 0.1, "vad": "energy"}


def _left(directory: str) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir())


async def test_refused_upload_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(b"\0\0" * 1600))
    async with running_emulator(FixtureEngine([]), files={**FAST, "upload_policy_ttl": 0.0}) as emu:
        uploader = Uploader(FileTranscriber(FAKE_KEY, base_url=emu.http_base_url))
        with pytest.raises(UploadError, match="Policy expired"):
            await uploader.upload(path, "fun-asr")
        assert _left(emu.files.uploads.directory) == []


async def test_unfinished_or_broken_request_leaves_no_file() -> None:
    async with running_emulator(FixtureEngine([]), files=FAST) as emu:
        store = emu.files.uploads
        assert store.port is not None
        # a body cut short: the client promises 1000 bytes, sends 10 and leaves
        stream = await trio.open_tcp_stream("127.0.0.1", store.port)
        await stream.send_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=b\r\n"
                              b"content-length: 1000\r\n\r\n0123456789")
        await stream.aclose()
        # not HTTP at all: answered 400, then the server hangs up
        stream = await trio.open_tcp_stream("127.0.0.1", store.port)
        await stream.send_all(b"\x00\x01 not http\r\n\r\n")
        answer = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                answer += chunk
        await stream.aclose()
        assert answer.startswith(b"HTTP/1.1 400")
        with trio.fail_after(10):
            while _left(store.directory):
                await trio.sleep(0.01)
