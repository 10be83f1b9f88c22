"""Local files for DashScope: the temporary-upload flow, streamed from disk.

The file APIs only take URLs. For a local file the service offers a temporary store (protocol
reference §4):

1. ``GET /api/v1/uploads?action=getPolicy&model=M`` → a signed upload policy (under ``data``);
2. a multipart ``POST`` to the policy's ``upload_host`` (no DashScope key: the policy signs it),
   form fields first and the ``file`` part last;
3. the file is then ``oss://<upload_dir>/<name>``, usable for 48 h by model ``M`` with the header
   ``X-DashScope-OssResourceResolve: enable`` (the file client adds it by itself).

The upload body is generated piece by piece while reading the file in 1 MiB chunks, so memory
stays flat whatever the file size. Limits (size, and duration for WAV files) are checked before
anything is sent, against both the model's documented limits and the policy's ``max_file_size_mb``.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from voicekit.logging import get_logger
from voicekit_dashscope.client.files import FileResult, FileTranscriber, decode_json, raise_for_error
from voicekit_dashscope.errors import ServiceUnavailableError
from voicekit_dashscope.errors import UploadError as UploadError  # re-exported: defined there
from voicekit_dashscope.protocol.files import (
    UPLOADS_PATH,
    BadResponseError,
    FileLimitError,
    FileOptions,
    file_model,
)

log = get_logger("voicekit.dashscope.upload")
CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]


@attrs.frozen
class UploadPolicy:
    policy: str
    signature: str
    upload_dir: str
    upload_host: str
    expire_in_seconds: int
    max_file_size_mb: float
    oss_access_key_id: str
    x_oss_object_acl: str = "private"
    x_oss_forbid_overwrite: str = "true"

    @classmethod
    def from_json(cls, d: Any) -> UploadPolicy:
        try:
            return cls(str(d["policy"]), str(d["signature"]), str(d["upload_dir"]), str(d["upload_host"]),
                       int(d.get("expire_in_seconds", 300)), float(d.get("max_file_size_mb", 1024)),
                       str(d["oss_access_key_id"]), str(d.get("x_oss_object_acl", "private")),
                       str(d.get("x_oss_forbid_overwrite", "true")))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponseError(f"upload policy answer lacks {exc}: {str(d)[:200]}") from None


def wav_duration(path: Path) -> float | None:
    """Seconds of a WAV file from its header; ``None`` for other formats."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError):
        return None


def check_limits(path: str | Path, model: str, *, max_bytes: int | None = None) -> tuple[int, float | None]:
    """(size, duration) of a local file, or :class:`FileLimitError` naming the limit and the fix."""
    p = Path(path)
    if not p.is_file():
        raise FileLimitError(f"{p} is not a readable file")
    spec = file_model(model)
    size = p.stat().st_size
    limit = min(spec.max_bytes, max_bytes) if max_bytes else spec.max_bytes
    if size > limit:
        raise FileLimitError(f"{p.name} is {size / 1024 ** 3:.2f} GB; {model} takes at most "
                             f"{limit / 1024 ** 3:.2f} GB per file — split it or compress it (e.g. to Opus)")
    seconds = wav_duration(p)
    if seconds is not None and spec.max_duration_s is not None and seconds > spec.max_duration_s:
        raise FileLimitError(f"{p.name} lasts {seconds / 3600:.2f} h; {model} takes at most "
                             f"{spec.max_duration_s / 3600:g} h per file — split it into shorter parts")
    return size, seconds


class _Body:
    """A multipart/form-data body streamed from disk, with its exact length known up front."""

    def __init__(self, fields: list[tuple[str, str]], path: Path, filename: str, content_type: str,
                 progress: Progress | None) -> None:
        self.boundary = "----voicekit" + secrets.token_hex(12)
        self.path = path
        self.progress = progress
        b = self.boundary
        head = b"".join(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                        for k, v in fields)
        head += (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n").encode()
        self.head = head
        self.tail = f"\r\n--{b}--\r\n".encode()
        self.size = path.stat().st_size
        self.length = len(head) + self.size + len(self.tail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        sent = 0
        async with await trio.open_file(self.path, "rb") as f:
            while chunk := await f.read(CHUNK):
                sent += len(chunk)
                if self.progress is not None:
                    self.progress(sent, self.size)
                yield chunk
        yield self.tail


class Uploader:
    """Temporary uploads through a :class:`FileTranscriber`'s host and key."""

    def __init__(self, client: FileTranscriber, *, timeout: float = 600.0) -> None:
        self.client = client
        self.timeout = timeout

    async def policy(self, model: str) -> UploadPolicy:
        data = await self.client._request("GET", UPLOADS_PATH, f"upload policy for {model}",
                                          params={"action": "getPolicy", "model": model},
                                          headers=self.client._headers())
        return UploadPolicy.from_json(data.get("data") or data.get("output"))

    async def upload(self, path: str | Path, model: str, *, progress: Progress | None = None,
                     policy: UploadPolicy | None = None) -> str:
        """Upload ``path`` for ``model``; returns its ``oss://`` URL. Limits are checked first."""
        p = Path(path)
        check_limits(p, model)
        pol = policy or await self.policy(model)
        check_limits(p, model, max_bytes=int(pol.max_file_size_mb * 1024 * 1024))
        key = f"{pol.upload_dir}/{p.name}"
        ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        fields = [("OSSAccessKeyId", pol.oss_access_key_id), ("Signature", pol.signature), ("policy", pol.policy),
                  ("key", key), ("x-oss-object-acl", pol.x_oss_object_acl),
                  ("x-oss-forbid-overwrite", pol.x_oss_forbid_overwrite), ("success_action_status", "200"),
                  ("x-oss-content-type", ctype)]
        body = _Body(fields, p, p.name, ctype, progress)
        headers = {"Content-Type": f"multipart/form-data; boundary={body.boundary}",
                   "Content-Length": str(body.length)}
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.client._transport) as http:
                resp = await http.post(pol.upload_host, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"upload of {p.name} to {pol.upload_host} failed: {exc}") from None
        if resp.status_code not in (200, 204):
            if resp.headers.get("content-type", "").startswith("application/json"):
                raise_for_error(resp, decode_json(resp, f"upload of {p.name}"), f"upload of {p.name}")
            code = re.search(r"<Code>([^<]*)</Code>", resp.text)
            message = re.search(r"<Message>([^<]*)</Message>", resp.text)
            hint = " — the policy lives 5 minutes: upload again" if "expired" in resp.text.lower() else ""
            raise UploadError(f"upload of {p.name} refused: HTTP {resp.status_code} "
                              f"{code.group(1) if code else ''}: {message.group(1) if message else ''}{hint}",
                              code=code.group(1) if code else None,
                              server_message=message.group(1) if message else None, status=resp.status_code)
        log.info("file_uploaded", file=p.name, bytes=body.size, key=key)
        return f"oss://{key}"


async def transcribe_sources(client: FileTranscriber, model: str, sources: Sequence[str | Path],
                             options: FileOptions | None = None, *,
                             progress: Callable[[str, int, int], None] | None = None,
                             deadline: float | None = 3600.0) -> list[FileResult]:
    """Transcribe URLs and local paths together: local files are uploaded (streamed) first.

    ``progress(file_name, bytes_sent, file_size)`` is called as each local file uploads.
    """
    from voicekit_dashscope.regions import check_model_region

    check_model_region(model, client.region)  # before any upload
    uploader = Uploader(client)
    urls: list[str] = []
    policy: UploadPolicy | None = None
    for src in sources:
        text = str(src)
        if re.match(r"(https?|oss)://", text):
            urls.append(text)
            continue
        check_limits(text, model)
        if policy is None:
            policy = await uploader.policy(model)
        name = Path(text).name
        each = (lambda a, b, n=name: progress(n, a, b)) if progress is not None else None
        urls.append(await uploader.upload(text, model, progress=each, policy=policy))
    spec = file_model(model)
    if spec.single_url and len(urls) > 1:
        out: list[FileResult] = []
        for url in urls:
            out += await client.transcribe(model, [url], options, deadline=deadline)
        return out
    return await client.transcribe(model, urls, options, deadline=deadline)
