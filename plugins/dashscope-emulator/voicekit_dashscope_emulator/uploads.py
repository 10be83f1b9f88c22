"""The emulated temporary-file upload: the upload-policy API and a fake OSS PostObject target."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import uuid
from typing import Any

import h11
import trio

from voicekit.logging import get_logger
from voicekit_dashscope_emulator.http import HttpRequest, HttpResponse, next_event
from voicekit_dashscope_emulator.results import error_response

log = get_logger("voicekit.dashscope.emulator")


class UploadStore:
    """The upload-policy API and a fake OSS PostObject target, streamed to disk.

    The OSS target listens on its own loopback port (``upload_host`` in the policy) and writes the
    request body straight to a temporary file, so uploads of any size use constant memory. Files
    are bound to the API key that asked for the policy, like the real store.
    """

    def __init__(self, *, directory: str | None = None, policy_ttl: float = 300.0, max_file_mb: float = 1024.0,
                 host: str = "127.0.0.1") -> None:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="vk-dashscope-uploads-") if directory is None else None
        self.directory = directory or self._tmp.name  # type: ignore[union-attr]
        self.policy_ttl = policy_ttl
        self.max_file_mb = max_file_mb
        self.host = host
        self.port: int | None = None
        self.policies: dict[str, tuple[str, str, float]] = {}  # signature -> (owner, upload_dir, expires)
        self.objects: dict[str, tuple[str, str, int, int]] = {}  # key -> (owner, path, start, end)

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    def open(self, owner: str, key: str) -> bytes | None:
        item = self.objects.get(key)
        if item is None or item[0] != owner:
            return None
        _, path, start, end = item
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    async def policy_handler(self, request: HttpRequest, owner: str) -> HttpResponse:
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(request.target).query)
        if q.get("action") != ["getPolicy"] or not q.get("model"):
            return error_response(400, "InvalidParameter", "use ?action=getPolicy&model=<model>")
        signature = secrets.token_urlsafe(20)
        upload_dir = f"dashscope-instant/{secrets.token_hex(8)}/{dt.date.today().isoformat()}/{secrets.token_hex(6)}"
        self.policies[signature] = (owner, upload_dir, trio.current_time() + self.policy_ttl)
        return HttpResponse.json(200, {"request_id": str(uuid.uuid4()), "data": {
            "policy": secrets.token_urlsafe(24), "signature": signature, "upload_dir": upload_dir,
            "upload_host": f"http://{self.host}:{self.port}", "expire_in_seconds": int(self.policy_ttl),
            "max_file_size_mb": self.max_file_mb, "capacity_limit_mb": 999999999,
            "oss_access_key_id": "LTAI-emulator", "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"}})

    async def _connection(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        received = None
        try:
            received = await self._receive(stream, conn)
            if received is None:  # the peer left, went quiet or broke HTTP (answered 400 then)
                await trio.aclose_forcefully(stream)
                return
            status, body = self._accept(*received)
        except Exception as exc:  # a broken upload must not stop the emulator
            log.warning("emulator_upload_error", error=f"{type(exc).__name__}: {exc}")
            status, body = 400, b"<Error><Code>MalformedPOSTRequest</Code></Error>"
        if received is not None and status >= 400:
            with contextlib.suppress(OSError):
                os.unlink(received[1])  # a refused upload keeps no file
        await _reply(stream, conn, status, body)

    async def _receive(self, stream: trio.abc.Stream, conn: h11.Connection) -> tuple[Any, str, int] | None:
        """(request, temporary file, size) of one request, its body streamed to the file; ``None`` if the
        peer leaves before the end."""
        req: Any = None
        fd, path = _mkstemp(self.directory)
        size = 0
        with open(fd, "wb") as out:
            while (event := await next_event(stream, conn)) is not None:
                if isinstance(event, h11.Request):
                    req = event
                elif isinstance(event, h11.Data):
                    out.write(event.data)
                    size += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return req, path, size
                else:
                    break
        os.unlink(path)  # nothing is kept of a request that did not finish
        return None

    def _accept(self, req: Any, path: str, size: int) -> tuple[int, bytes]:
        """The answer to a PostObject whose body is in ``path``: the form fields before the file part, the file
        part's bounds, then the policy's checks."""
        sep = _boundary(req)
        if sep is None:
            return 400, b"<Error><Code>InvalidArgument</Code><Message>multipart POST expected</Message></Error>"
        with open(path, "rb") as f:
            head = f.read(256 * 1024)
            f.seek(max(0, size - 512))
            tail = f.read()
        fields, file_start = _form_fields(head, sep)
        closing = tail.rfind(b"\r\n" + sep)
        if file_start is None or closing < 0:
            return 400, b"<Error><Code>InvalidArgument</Code><Message>no file part (it must come last)</Message>" \
                b"</Error>"
        return self._store(fields, path, file_start, size - len(tail) + closing)

    def _store(self, fields: dict[str, str], path: str, start: int, end: int) -> tuple[int, bytes]:
        """Keep the file part ``[start, end)`` of ``path`` under the form's key, if the policy allows it."""
        pol = self.policies.get(fields.get("Signature", ""))
        if pol is None or trio.current_time() > pol[2]:
            return 403, (b"<Error><Code>AccessDenied</Code>"
                         b"<Message>Invalid according to Policy: Policy expired.</Message></Error>")
        owner, upload_dir, _ = pol
        key = fields.get("key", "")
        if not key.startswith(upload_dir + "/"):
            return 403, (b"<Error><Code>AccessDenied</Code>"
                         b"<Message>key outside the policy's upload_dir</Message></Error>")
        if end - start > self.max_file_mb * 1024 * 1024:
            return 400, b"<Error><Code>EntityTooLarge</Code></Error>"
        self.objects[key] = (owner, path, start, end)
        return int(fields.get("success_action_status", "204")), b""


async def _reply(stream: trio.abc.Stream, conn: h11.Connection, status: int, body: bytes) -> None:
    """Send the (XML) answer and hang up."""
    try:
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=[
            ("content-type", "application/xml"), ("content-length", str(len(body))),
            ("connection", "close")])) or b"")
        await stream.send_all(conn.send(h11.Data(data=body)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    except (trio.BrokenResourceError, trio.ClosedResourceError, Exception):
        pass
    finally:
        await trio.aclose_forcefully(stream)


def _boundary(req: Any) -> bytes | None:
    """The multipart separator (``--`` + boundary) of a POST; ``None`` for anything else."""
    ctype = dict((k.lower(), v) for k, v in req.headers).get(b"content-type", b"").decode()
    m = re.search(r"boundary=\"?([^\";]+)", ctype)
    if req.method != b"POST" or m is None:
        return None
    return b"--" + m.group(1).encode()


def _form_fields(head: bytes, sep: bytes) -> tuple[dict[str, str], int | None]:
    """The form fields before the ``file`` part, and where the file's bytes start (``None``: no file part
    in ``head``)."""
    fields: dict[str, str] = {}
    pos = 0
    while (i := head.find(sep, pos)) >= 0:
        hdr_end = head.find(b"\r\n\r\n", i)
        if hdr_end < 0:
            break
        m = re.search(r'name="([^"]*)"', head[i:hdr_end].decode("utf-8", "replace"))
        name = m.group(1) if m else None
        if name == "file":
            return fields, hdr_end + 4
        j = head.find(b"\r\n" + sep, hdr_end)
        if name is not None and j >= 0:
            fields[name] = head[hdr_end + 4:j].decode("utf-8", "replace")
        pos = j if j >= 0 else hdr_end
    return fields, None


def _mkstemp(directory: str) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(dir=directory, suffix=".upload")
