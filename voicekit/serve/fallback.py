"""A cheaper VAD for a conversation that falls behind real time.

A neural VAD (Silero) costs far more CPU per frame than webrtc's. When an overloaded server lets a
conversation's audio backlog grow past ``--vad-fallback-backlog``, that conversation's VAD is
switched to the cheaper one (reported: a ``warning`` event to the client, a log line, the
``vad_fallbacks_total`` metric); it is shed (``--max-backlog``) only if it still lags.

:class:`FallbackVAD` is the session's VAD backend: it passes every call to the backend in use, and
:meth:`FallbackVAD.switch` asks for the cheaper one. The switch takes effect at the start of the
next input frame (in the session's own feeding task, in :meth:`prepare`), never in the middle of
a frame; the session, its endpointer and its utterance in progress carry on as they were. Both
backends run at the same sample rate and frame length.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from voicekit.errors import ConfigError
from voicekit.vad.base import VADBackend, VADCapabilities

__all__ = ["FallbackVAD"]


class FallbackVAD:
    """``primary`` until :meth:`switch`, then ``fallback()`` (built when first needed)."""

    capabilities: ClassVar[VADCapabilities] = VADCapabilities(
        name="fallback", sample_rates=(8000, 16000, 32000, 48000), frame_ms=(10, 20, 30, 32, 64, 96),
        notes="the primary VAD (the backend's own capabilities: .current) until the conversation lags, then "
              "a cheaper one at the same rate and frame length")

    def __init__(self, primary: VADBackend, fallback: Callable[[], VADBackend], *, primary_name: str,
                 fallback_name: str) -> None:
        self.sample_rate = primary.sample_rate
        self.frame_ms = primary.frame_ms
        self.primary_name = primary_name
        self.fallback_name = fallback_name
        self._current: VADBackend = primary
        self._make_fallback = fallback
        self._prepare: Callable[[bytes], Awaitable[None]] | None = getattr(primary, "prepare", None)
        self.wanted = False  # switch() was called
        self.switched = False  # the fallback is in use

    @property
    def current(self) -> VADBackend:
        """The backend in use."""
        return self._current

    @property
    def name(self) -> str:
        """The name of the backend in use."""
        return self.fallback_name if self.switched else self.primary_name

    def switch(self) -> bool:
        """Ask for the cheaper VAD from the next input frame on; False if it was asked already."""
        if self.wanted:
            return False
        self.wanted = True
        return True

    def _apply(self) -> None:
        fallback = self._make_fallback()
        if (fallback.sample_rate, fallback.frame_ms) != (self.sample_rate, self.frame_ms):
            raise ConfigError(f"VAD fallback {self.fallback_name} runs at {fallback.sample_rate} Hz, "
                              f"{fallback.frame_ms} ms frames, but {self.primary_name} at {self.sample_rate} Hz, "
                              f"{self.frame_ms} ms")
        self._current = fallback  # the primary is dropped: a batched VAD no longer counts this stream
        self._prepare = getattr(fallback, "prepare", None)
        self.switched = True

    async def prepare(self, pcm: bytes) -> None:
        """Called by the session with each input frame, before the endpointer cuts it."""
        if self.wanted and not self.switched:
            self._apply()
        if self._prepare is not None:
            await self._prepare(pcm)

    def is_speech(self, pcm: bytes) -> bool:
        return self._current.is_speech(pcm)

    def reset(self) -> None:
        self._current.reset()
