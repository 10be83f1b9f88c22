"""Output files that are safe to write: never an input, never half-written.

Every file voicekit writes (WAV replies, transcripts) goes through :class:`AtomicFile`: the data is
written to a temporary file in the target's own folder (``.NAME.XXXXXX.part``) and renamed over the
target only when the writer commits. A run that fails or is interrupted removes the temporary file,
so the target is either untouched or complete. Renaming within one folder is atomic on POSIX and
Windows, and the new file gets the usual permissions (the process umask applies).

:func:`refuse_input` compares an output with the inputs of the same run (resolved paths and
``samefile``, so symlinks and hard links count) before anything is opened for writing.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from voicekit.errors import OutputError as OutputError  # re-exported: it used to live here


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_input(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *,
                 what: str = "output") -> None:
    """Raise :class:`OutputError` if ``output`` is (a link to) one of ``inputs``."""
    out = os.fspath(output)
    for item in inputs:
        src = os.fspath(item)
        if src == "-":
            continue
        if _same(out, src):
            raise OutputError(
                f"{what} {out!r} is the input {src!r} — writing it would destroy the recording; "
                "choose another output path"
            )


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_folder(folder: str | os.PathLike[str], *, what: str = "output") -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (tried for real)."""
    d = os.fspath(folder) or "."
    if not os.path.exists(d):
        raise OutputError(f"{what} folder {d!r} does not exist — create it first (mkdir -p {d})")
    if not os.path.isdir(d):
        raise OutputError(f"{what} folder {d!r} is not a folder — pick a path inside a folder")
    try:
        probe = AtomicFile(os.path.join(d, ".voicekit-write-check"), what=what)
    except OutputError:
        reason = "permission denied" if not os.access(d, os.W_OK) else "files cannot be created there"
        raise OutputError(f"cannot write {what} in folder {d!r}: {reason} — pick a writable folder") from None
    probe.discard()


def check_target(path: str | os.PathLike[str], *, what: str = "output") -> None:
    """Raise :class:`OutputError` unless ``path`` can be written as a file (before any work)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise OutputError(f"{what} {p!r} is a folder — give a file name")
    try:
        st = os.stat(p)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{what} {p!r} is not a regular file — give a file name")
    check_folder(os.path.dirname(p) or ".", what=what)


_TEMP = re.compile(r"\.(.+)\.[0-9a-f]{8}\.part")


def temp_name(name: str, tag: str) -> str:
    """The name of :class:`AtomicFile`'s temporary file for the output file ``name``."""
    return f".{name}.{tag}.part"


def temp_target(entry_name: str) -> str | None:
    """The output file name whose temporary file ``entry_name`` is, or None if it is not one."""
    m = _TEMP.fullmatch(entry_name)
    return m.group(1) if m else None


class AtomicFile:
    """A binary file written under a temporary name and renamed over ``path`` on :meth:`commit`.

    The temporary file is created in the constructor (so a folder that is missing, read-only or
    not a folder fails at once, with :class:`OutputError`). Call :meth:`discard` when the work
    failed; it is safe to call after :meth:`commit` (it then does nothing).
    """

    def __init__(self, path: str | os.PathLike[str], *, what: str = "output") -> None:
        self.path = os.fspath(path)
        self.what = what
        folder = os.path.dirname(self.path) or "."
        name = os.path.basename(self.path)
        if not name:
            raise OutputError(f"{what} {self.path!r} names a folder — give a file name")
        if os.path.isdir(self.path):
            raise OutputError(f"{what} {self.path!r} is a folder — give a file name")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        fd = -1
        for _ in range(20):
            self.temp_path = os.path.join(folder, temp_name(name, secrets.token_hex(4)))
            try:
                fd = os.open(self.temp_path, flags, 0o666)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(self._explain(exc, folder)) from None
        if fd < 0:
            raise OutputError(f"cannot create a temporary file next to {self.path!r} — clean the folder up")
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.done = False

    def _explain(self, exc: OSError, folder: str) -> str:
        if exc.errno == errno.ENOENT and not os.path.isdir(folder):
            return f"cannot write {self.what} {self.path!r}: folder {folder!r} does not exist — create it first"
        if exc.errno == errno.ENOTDIR:
            return f"cannot write {self.what} {self.path!r}: {folder!r} is not a folder — pick a path inside a folder"
        return f"cannot write {self.what} {self.path!r}: {_reason(exc)} — pick a writable folder"

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        """Flush, close and rename the temporary file over ``path``."""
        if self.done:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp_path, self.path)
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write {self.what} {self.path!r}: {_reason(exc)} — "
                              "check free disk space and permissions") from None
        self.done = True

    def discard(self) -> None:
        """Close and remove the temporary file; ``path`` is left as it was."""
        if self.done:
            return
        self.done = True
        try:
            self.file.close()
        finally:
            try:
                os.unlink(self.temp_path)
            except OSError:
                pass


def write_atomic(path: str | os.PathLike[str], data: bytes, *, what: str = "output") -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    f = AtomicFile(path, what=what)
    try:
        f.write(data)
        f.commit()
    except BaseException:
        f.discard()
        raise


def partial_name(path: str | os.PathLike[str]) -> str:
    """``out.srt`` → ``out.partial.srt``: where an incomplete result is kept."""
    p = Path(os.fspath(path))
    return str(p.with_name(p.stem + ".partial" + p.suffix))
