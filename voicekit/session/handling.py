"""Running an intent handler so that nothing it does can stall the session.

A handler runs as a task of its own in the session's handler nursery, and its reply reaches the
session through an unbuffered channel, piece by piece. The session waits at most
``handler_timeout`` seconds for each piece; after that it stops waiting, cancels the handler and
answers with the assistant's apology, whatever the handler is stuck in:

* an ``async def`` handler awaiting something slow is cancelled at once;
* a plain ``def`` handler runs in a worker thread (``abandon_on_cancel=True``): a blocking call
  in it is abandoned at the timeout, and its late result is dropped;
* an ``async def`` handler that blocks the event loop itself (``time.sleep``) cannot be
  interrupted, but the overrun is reported as soon as it returns and its late answer is dropped;
* an ``async def`` handler stuck in ``trio.to_thread.run_sync`` without ``abandon_on_cancel``
  cannot be cancelled by trio: the session stops waiting for it, goes on with the next turns, and
  only its very end waits for that thread to return (a ``Warning`` says so).

Any exception a handler raises (``SystemExit`` and other ``BaseException`` s included, except
``KeyboardInterrupt``) and any reply of the wrong type becomes a :class:`~voicekit.errors.HandlerError`:
an ``Error`` event, the apology, and the session goes on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import attrs
import outcome
import trio

from voicekit.errors import HandlerError
from voicekit.handlers.assistant import Reply, Turn

# a plain ``def`` handler runs in a worker thread; at most this many at once per session, so that
# handlers stuck in blocking calls cannot take every worker thread of the process
SYNC_HANDLER_THREADS = 4
# a handler that ends this long after the session gave up on it had ignored the cancel: reported
LATE_S = 0.1


@attrs.define(eq=False)
class RunningHandler:
    """A handler task the session started and has not seen finish."""

    handler: Any
    intent: str
    started: float
    done: trio.Event = attrs.Factory(trio.Event)
    began: trio.Event = attrs.Factory(trio.Event)  # its task took its first step
    gave_up_at: float | None = None  # when the session stopped waiting for it (timeout, barge-in)

    @property
    def what(self) -> str:
        """Names the handler in messages (built only when one is written, off the hand-off path)."""
        return describe(self.handler, self.intent)


def describe(handler: Any, intent: str) -> str:
    """``handler 'move' for intent 'go'``: names what an error event is about."""
    name = getattr(handler, "__qualname__", None) or getattr(handler, "__name__", None) \
        or type(handler).__name__
    return f"handler {name!r} for intent {intent!r}"


def is_async_handler(handler: Any) -> bool:
    """An ``async def`` or async generator function (or an object whose ``__call__`` is one)."""
    for fn in (handler, getattr(handler, "__call__", None)):  # noqa: B004 - callables, not a check
        if fn is not None and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            return True
    return False


def _type_name(value: object) -> str:
    return type(value).__name__


def _is_fatal(exc: BaseException) -> bool:
    """Exceptions a handler must not swallow: cancellation and Ctrl-C."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_fatal(e) for e in exc.exceptions) or all(
            isinstance(e, trio.Cancelled) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled | KeyboardInterrupt)


def _describe_exception(exc: BaseException) -> tuple[str, str]:
    """(type name, first line of the message) of the one real error inside exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, SystemExit):
        first = f"the handler tried to exit the program (code {exc.code!r})"
    if len(first) > 300:
        first = first[:300] + "…"
    return type(exc).__name__, first


class _BadReply(Exception):
    pass


async def _drive(handler: Any, turn: Turn, call: HandlerCall, threads: trio.CapacityLimiter) -> None:
    """Run ``handler(turn)`` in ``call.scope`` (see :func:`_answer`)."""
    try:
        with call.scope:
            await _answer(handler, turn, call, threads)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the session stopped listening (timeout or barge-in); the rest of the reply is dropped


async def _answer(handler: Any, turn: Turn, call: HandlerCall, threads: trio.CapacityLimiter) -> None:
    """Run ``handler(turn)`` (inside ``call.scope``) and send its reply pieces (``str``) and at
    most one :class:`HandlerError` to ``call``'s channel; the channel closes when it is done."""
    try:
        failure: HandlerError | None = None
        try:
            await _run(handler, turn, call.send, threads)
        except _BadReply as exc:
            failure = HandlerError(f"{call.what} {exc}")
            failure.__cause__ = TypeError(str(exc))
        except BaseException as exc:
            if _is_fatal(exc):
                raise
            kind, message = _describe_exception(exc)
            what = call.what
            failure = HandlerError(f"{what} raised {kind}: {message}" if message else f"{what} raised {kind}")
            failure.__cause__ = exc
        if failure is not None:
            await call.send(failure)
    finally:
        # closed without a checkpoint: a cancel arriving there (the reader has gone) would
        # replace a KeyboardInterrupt on its way out, and the scope would swallow it
        call.channel()[0].close()


Send = Callable[[object], Awaitable[None]]


async def _run(handler: Any, turn: Turn, send: Send, threads: trio.CapacityLimiter) -> None:
    if is_async_handler(handler):
        result = handler(turn)
    else:
        schedule = turn.scheduler
        if schedule is not None:  # announcements are scheduled on the session's trio thread
            def from_thread(text: str, after: float) -> Any:
                return trio.from_thread.run_sync(schedule, text, after)

            turn = attrs.evolve(turn, scheduler=from_thread)
        result = await trio.to_thread.run_sync(handler, turn, abandon_on_cancel=True, limiter=threads)
    if inspect.isawaitable(result) and not hasattr(result, "__aiter__"):
        result = await result
    if hasattr(result, "__aiter__"):  # a streamed reply (also when an async def returned one)
        await _stream(result, send)
        return
    if isinstance(result, Reply):
        result = result.text
    if result is None:
        return
    if isinstance(result, str):
        if result.strip():
            await send(result)
        return
    if inspect.iscoroutine(result):
        result.close()
        raise _BadReply("returned a coroutine it never awaited: write `return await ...`")
    raise _BadReply(f"returned {_type_name(result)}, not a str, a Reply, None or an async iterator of str")


async def _stream(result: Any, send: Send) -> None:
    it = result.__aiter__()
    try:
        while True:
            try:
                item = await it.__anext__()
            except StopAsyncIteration:
                return
            if isinstance(item, Reply):
                item = item.text
            if item is None:
                continue
            if not isinstance(item, str):
                raise _BadReply(f"yielded {_type_name(item)}, not a str")
            if item.strip():
                await send(item)
    finally:
        aclose: Callable[[], Any] | None = getattr(it, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await aclose()
                except Exception:  # a generator failing to clean up changes nothing here
                    pass


def cut_reply(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a space when there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit // 2 else head


def _blocked(what: str, timeout: float, late: float) -> str:
    return (f"{what} took longer than {timeout:g} s (handler_timeout): it blocked the session for {late:.1f} s "
            f"and its late answer is dropped (blocking code belongs in a plain def handler, which runs in a "
            f"thread)")


class HandlerRunner:
    """Starts handlers for one session and keeps track of the ones it gave up on."""

    def __init__(self, nursery: trio.Nursery, *, on_late: Callable[[RunningHandler], None]) -> None:
        self.nursery = nursery
        self.threads = trio.CapacityLimiter(SYNC_HANDLER_THREADS)
        self.running: set[RunningHandler] = set()
        self.on_late = on_late
        # a task started ahead, waiting inside a cancel scope of its own for the next handler
        # (see spare()): the hand-off then wakes it instead of spawning a task and entering a scope
        self._spare: tuple[trio.lowlevel.Task, trio.CancelScope] | None = None
        self._spare_coming = False

    async def _task(self, call: HandlerCall, handler: Any, turn: Turn) -> None:
        call.entry.began.set()
        try:
            await _drive(handler, turn, call, self.threads)
        finally:
            self._finished(call.entry)

    def _finished(self, entry: RunningHandler) -> None:
        entry.done.set()
        self.running.discard(entry)
        if entry.gave_up_at is not None and trio.current_time() - entry.gave_up_at >= LATE_S:
            self.on_late(entry)  # it ignored the cancel for a while: a thread trio cannot cancel

    def spare(self) -> None:
        """Have a task wait for the next handler (no-op when one waits or is on its way). The
        session calls this at its start and after each handler's first step, off the hand-off."""
        if self._spare is None and not self._spare_coming:
            self._spare_coming = True
            self.nursery.start_soon(self._spare_task)

    async def _spare_task(self) -> None:
        job: tuple[HandlerCall, Any, Turn] | None = None
        scope = trio.CancelScope()
        try:
            with scope:
                task = trio.lowlevel.current_task()
                self._spare, self._spare_coming = (task, scope), False

                def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
                    if self._spare is not None and self._spare[0] is task:
                        self._spare = None  # the session is ending: no handler for this task
                    return trio.lowlevel.Abort.SUCCEEDED

                job = await trio.lowlevel.wait_task_rescheduled(abort)
                call, handler, turn = job
                call.entry.began.set()
                await _answer(handler, turn, call, self.threads)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # as in _drive
        finally:
            if job is not None:
                self._finished(job[0].entry)

    def stuck(self) -> list[RunningHandler]:
        """Handlers the session gave up on that are still running."""
        return [e for e in self.running if e.gave_up_at is not None]

    def start(self, handler: Any, turn: Turn) -> HandlerCall:
        """Start ``handler(turn)`` now: it is called in the scheduler's next round, by the spare
        task (:meth:`spare`) or else by a task started for it, in a cancel scope of its own."""
        # only what the handler's first step needs is made here: its name (for messages) and the
        # channel its reply goes through are made when first used, after that step
        entry = RunningHandler(handler, turn.intent, trio.current_time())
        spare, self._spare = self._spare, None
        if spare is not None:
            task, scope = spare
            call = HandlerCall(scope, entry)
            self.running.add(entry)
            trio.lowlevel.reschedule(task, outcome.Value((call, handler, turn)))
            return call
        call = HandlerCall(trio.CancelScope(), entry)
        self.running.add(entry)
        self.nursery.start_soon(self._task, call, handler, turn)
        return call


@attrs.define(eq=False)
class HandlerCall:
    """A handler that was started, and the end of the channel its reply comes through."""

    scope: trio.CancelScope
    entry: RunningHandler
    complete: bool = False  # the whole reply (or the handler's error) was read
    _send: trio.MemorySendChannel[object] | None = None
    _recv: trio.MemoryReceiveChannel[object] | None = None

    @property
    def what(self) -> str:
        return self.entry.what

    def channel(self) -> tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]]:
        """The unbuffered channel from the handler to the reply, made by whichever end uses it first."""
        if self._send is None or self._recv is None:
            self._send, self._recv = trio.open_memory_channel[object](0)
        return self._send, self._recv

    async def send(self, item: object) -> None:
        """The handler's side: one reply piece (or its error); waits until the reply takes it."""
        await self.channel()[0].send(item)

    def abandon(self) -> None:
        """The reply is over: stop the handler if it is still running (a reply cancelled before
        it read anything, say), and remember when the session gave up on it."""
        self.scope.cancel()
        self.channel()[1].close()
        if not self.complete and not self.entry.done.is_set() and self.entry.gave_up_at is None:
            self.entry.gave_up_at = trio.current_time()

    async def pieces(self, *, timeout: float, limit: int,
                     on_cut: Callable[[str, int, int], None]) -> AsyncGenerator[str, None]:
        """The handler's reply, piece by piece, each within ``timeout`` seconds of asking for it (the
        time spent speaking a piece does not count against the next one), at most ``limit``
        characters in all. Raises :class:`HandlerError` for a failure, a wrong type, or an overrun."""
        recv, scope, entry = self.channel()[1], self.scope, self.entry
        spoken = 0
        asked = entry.started  # the first piece is due within timeout of the handler's start
        try:
            async with recv:
                while True:
                    late = trio.current_time() - asked
                    if late > timeout:  # the event loop was held past the deadline before we could wait
                        raise HandlerError(_blocked(self.what, timeout, late))
                    with trio.move_on_at(asked + timeout) as waiting:
                        try:
                            item = await recv.receive()
                        except trio.EndOfChannel:
                            self.complete = True
                            return
                    if waiting.cancelled_caught:
                        raise HandlerError(f"{self.what} took longer than {timeout:g} s (handler_timeout); "
                                           f"it was cancelled")
                    late = trio.current_time() - asked
                    if late > timeout:
                        raise HandlerError(_blocked(self.what, timeout, late))
                    if isinstance(item, HandlerError):
                        self.complete = True
                        raise item
                    assert isinstance(item, str)
                    if spoken + len(item) > limit:
                        on_cut(self.what, spoken + len(item), limit)
                        cut = cut_reply(item, max(0, limit - spoken))
                        if cut.strip():
                            yield cut
                        return
                    spoken += len(item)
                    yield item
                    asked = trio.current_time()  # speaking a piece does not count against the next
        finally:
            scope.cancel()
            if not self.complete and not entry.done.is_set():
                entry.gave_up_at = trio.current_time()
