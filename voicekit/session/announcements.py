"""Announcements: replies the assistant starts on its own (``turn.announce(text, after=...)``).

With paced input they fall due on trio's clock. Input read faster than it is spoken (a file) has
no wall-clock meaning, so there they fall due on the input's audio seconds: an announcement
``after=5`` is said once the pipeline has heard five more seconds of input.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable

import trio

from voicekit.errors import ConfigError
from voicekit.handlers.assistant import Announcement

# announcements a session holds at once; a handler asking for more gets an error
MAX_PENDING_ANNOUNCEMENTS = 64


class AudioTime:
    """Seconds of input audio the pipeline has heard so far, and the tasks waiting for a later
    second. The input path sets ``position`` and calls :meth:`advance` when ``waiters`` is not
    empty (a check per frame, a call only when someone waits)."""

    def __init__(self) -> None:
        self.position = 0.0
        self.waiters: list[tuple[float, int, trio.Event]] = []
        self._seq = itertools.count()

    def advance(self, t: float) -> None:
        self.position = max(self.position, t)
        waiters = self.waiters
        while waiters and waiters[0][0] <= self.position:
            heapq.heappop(waiters)[2].set()

    async def sleep_until(self, t: float) -> None:
        """Wait until the input has been heard up to audio second ``t``."""
        if self.position >= t:
            await trio.lowlevel.checkpoint()
            return
        reached = trio.Event()
        heapq.heappush(self.waiters, (t, next(self._seq), reached))
        await reached.wait()


class Announcements:
    """A session's pending announcements: each waits in a task of the nursery given to
    :meth:`begin`, then, one at a time and never over a reply (``quiet``), is said (``say(text,
    due)`` returns once the announcement's reply has finished)."""

    def __init__(self, *, paced: bool, now: Callable[[], float], audio: AudioTime,
                 quiet: Callable[[], Awaitable[None]], say: Callable[[str, float], Awaitable[None]]) -> None:
        self._paced = paced
        self._now = now
        self._audio = audio
        self._quiet = quiet
        self._say = say
        self._nursery: trio.Nursery | None = None
        self._pending: dict[int, Announcement] = {}
        self._lock = trio.Lock()
        self._changed = trio.Event()

    def begin(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def schedule(self, text: str, after: float, *, heard_at: float | None = None) -> Announcement:
        """``turn.announce``: say ``text`` ``after`` seconds from now (paced), or from audio second
        ``heard_at`` (unpaced; default: what has been heard so far)."""
        assert self._nursery is not None
        self._pending = {k: a for k, a in self._pending.items() if not a.scope.cancel_called}
        if len(self._pending) >= MAX_PENDING_ANNOUNCEMENTS:
            raise ConfigError(f"this session already has {MAX_PENDING_ANNOUNCEMENTS} announcements pending; "
                              f"cancel one before scheduling another")
        if self._paced:
            due = self._now() + after
        else:
            due = (self._audio.position if heard_at is None else heard_at) + after
        announcement = Announcement(text, due, trio.CancelScope())
        self._pending[id(announcement)] = announcement
        self._nursery.start_soon(self._announce, announcement, after)
        return announcement

    async def say_due(self) -> None:
        """The input ended. Unpaced, it was read faster than it is spoken: announcements that fell
        due within its audio are still said (the later ones are dropped)."""
        if self._paced:
            return
        audio = self._audio
        while any(a.due <= audio.position and not a.scope.cancel_called for a in self._pending.values()):
            self._changed = trio.Event()
            await self._changed.wait()

    def _unpend(self, announcement: Announcement) -> None:
        if self._pending.pop(id(announcement), None) is not None:
            self._changed.set()

    async def _announce(self, announcement: Announcement, after: float) -> None:
        acquired = False
        try:
            with announcement.scope:
                if self._paced:
                    await trio.sleep(after)
                else:
                    await self._audio.sleep_until(announcement.due)
                # one announcement at a time, in the order they fell due (trio's lock is fair)
                await self._lock.acquire()
                acquired = True
                await self._quiet()  # never talk over a reply
            if announcement.scope.cancelled_caught:
                return
            self._unpend(announcement)
            await self._say(announcement.text, announcement.due)
        finally:
            self._unpend(announcement)
            if acquired:
                self._lock.release()
