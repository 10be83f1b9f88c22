"""The WAV header of a streamed ``wav`` task: read as the audio arrives, then stripped.

A task with ``format: "wav"`` sends a WAV file in pieces; :class:`WavReader` holds the bytes until
the ``data`` chunk begins, checks the ``fmt `` chunk (16-bit mono PCM only) and takes its rate, and
from then on passes the audio through.
"""

from __future__ import annotations

import struct


class WavReader:
    """Strips a streamed WAV header; checks it holds 16-bit mono PCM."""

    def __init__(self) -> None:
        self._head = b""
        self.done = False
        self.rate: int | None = None
        self.error: str | None = None

    def push(self, data: bytes) -> bytes:
        """The PCM in ``data`` once the header is read; ``b""`` until then, or when :attr:`error` is set."""
        if self.done:
            return data
        self._head += data
        if len(self._head) < 12:
            return b""
        if self._head[:4] != b"RIFF" or self._head[8:12] != b"WAVE":
            self.error = "format is 'wav' but the audio does not start with a RIFF/WAVE header"
            return b""
        return self._scan()

    def _scan(self) -> bytes:
        """Walk the chunks read so far: read ``fmt ``, and return what follows the ``data`` header."""
        pos = 12
        while pos + 8 <= len(self._head):
            cid, size = self._head[pos:pos + 4], struct.unpack("<I", self._head[pos + 4:pos + 8])[0]
            if cid == b"data":
                self.done = True
                rest, self._head = self._head[pos + 8:], b""
                return rest
            if cid == b"fmt " and not self._read_fmt(pos + 8):
                return b""
            pos += 8 + size + (size & 1)
        return b""

    def _read_fmt(self, at: int) -> bool:
        """Read the ``fmt `` chunk's body at ``at``; False while it is incomplete or when it is refused."""
        if at + 16 > len(self._head):
            return False
        fmt, ch, rate, _, _, bits = struct.unpack("<HHIIHH", self._head[at:at + 16])
        if fmt != 1 or ch != 1 or bits != 16:
            self.error = f"WAV must be 16-bit mono PCM (got format {fmt}, {ch} channels, {bits} bits)"
            return False
        self.rate = rate
        return True
