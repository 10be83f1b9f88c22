"""trio client of the DashScope task protocol, with retries that lose and repeat nothing.

:class:`TaskConnection` is one WebSocket (trio-websocket) running tasks one after another.
:class:`Recognizer` runs one logical recognition stream over as many connections as it takes:

* every audio chunk is kept until a *final* sentence covers it (its ``end_time``); after a
  dropped connection, a close, a ping timeout, a malformed frame or a retryable ``task-failed``,
  it waits (exponential back-off with jitter), opens a new connection and task, and re-sends the
  audio after the last final — so the server recognizes the unfinished sentence again, and no
  final is lost or repeated;
* the re-sent audio starts a little (``lead_in_ms``, at most back to the last final's start)
  *before* the end of the last final: a recognizer that starts afresh exactly where a sentence
  ended may hear the tail of its last word as a sentence of its own (moonshine says "You"). What
  the new task recognizes in that lead-in is audio already finalised: a result whose words lie
  there is dropped, one that runs on past it keeps only its words after it;
* a final is counted as covering its audio only once it is in the result channel, so a
  connection that fails while a final is being handed over re-sends that sentence's audio
  instead of losing it;
* times and sentence numbers of the new task are shifted onto the stream's own timeline;
* a server that stops answering is caught by WebSocket pings (``ping_interval`` /
  ``ping_timeout``) and by deadlines on ``task-started`` and ``task-finished``;
* permanent errors (bad key, bad parameter, invalid audio) are raised at once.

Re-sending needs cuttable audio, so retries after audio has flowed are only done for ``pcm``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, WebSocketConnection

from voicekit.asr.base import TranscriptResult, Word
from voicekit.errors import leaves
from voicekit.logging import get_logger
from voicekit_dashscope.auth import ApiKey, excerpt, scrub
from voicekit_dashscope.errors import (
    AuthenticationError,
    ConnectionLostError,
    DashScopeError,
    ProtocolError,
    RetriesExhaustedError,
    ServerTimeoutError,
    ServiceUnavailableError,
    TaskFailedError,
    is_retryable,
)
from voicekit_dashscope.protocol.task import (
    ClientTaskProtocol,
    RecognitionParameters,
    ResultGenerated,
    RunTask,
    Sentence,
    ServerEvent,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    new_task_id,
)
from voicekit_dashscope.protocol.task import State as TaskState
from voicekit_dashscope.regions import check_transport

log = get_logger("voicekit.dashscope.client")
USER_AGENT = "voicekit-dashscope/0.1"
LEAD_IN_MS = 1000  # audio re-sent before the end of the last final after a reconnect
_REPEAT_MARGIN_MS = 20  # a sentence that starts this much before that end began in finalised audio


@attrs.frozen
class RetryPolicy:
    """How often and how patiently to retry. ``max_retries`` counts failures in a row without a
    new final sentence in between (progress resets the count)."""

    max_retries: int = 5
    backoff_initial: float = 0.25
    backoff_max: float = 8.0
    backoff_factor: float = 2.0
    jitter: float = 0.2  # ± fraction of the delay

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.backoff_max, self.backoff_initial * self.backoff_factor ** max(0, attempt - 1))
        r = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + r))


@attrs.frozen
class Timeouts:
    connect: float = 10.0
    start: float = 10.0  # run-task → task-started
    finish: float = 15.0  # finish-task → task-finished
    ping_interval: float = 5.0
    ping_timeout: float = 5.0
    close: float = 2.0


def handshake_error(exc: BaseException, url: str) -> DashScopeError:
    if isinstance(exc, ConnectionRejected):
        status = exc.status_code
        body = excerpt((exc.body or b"").decode("utf-8", "replace"), 200)
        if status in (401, 403):
            return AuthenticationError(
                f"DashScope refused the API key (HTTP {status}); check DASHSCOPE_API_KEY and that the key "
                "belongs to the selected region", status=status, server_message=body)
        if status in (429, 503):
            return ServiceUnavailableError(f"DashScope is unavailable (HTTP {status}); try again later",
                                           status=status, server_message=body)
        if status >= 500:
            return ServiceUnavailableError(f"WebSocket handshake with {url} failed: HTTP {status} {body}".strip(),
                                           status=status, server_message=body)
        return DashScopeError(f"WebSocket handshake with {url} rejected: HTTP {status} {body}".strip(),
                              status=status, server_message=body)
    if isinstance(exc, HandshakeError) and not isinstance(exc, OSError):
        return ConnectionLostError(f"WebSocket handshake with {url} failed: "
                                   f"{excerpt(str(exc), 200) or type(exc).__name__}")
    return ConnectionLostError(f"cannot connect to {url}: {excerpt(str(exc), 200) or type(exc).__name__}")


class TaskConnection:
    """One open WebSocket to the inference endpoint; runs one task at a time."""

    def __init__(self, ws: WebSocketConnection, url: str) -> None:
        self.ws = ws
        self.url = url
        self.protocol = ClientTaskProtocol()

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, api_key: ApiKey, *, workspace: str | None = None,
                   timeouts: Timeouts = Timeouts(),
                   extra_headers: Mapping[str, str] | None = None) -> AsyncIterator[TaskConnection]:
        check_transport(url)
        headers = [(b"Authorization", api_key.bearer().encode()), (b"user-agent", USER_AGENT.encode())]
        if workspace:
            headers.append((b"X-DashScope-WorkSpace", workspace.encode()))
        for k, v in (extra_headers or {}).items():
            headers.append((k.encode(), v.encode()))
        try:
            cm = trio_websocket.open_websocket_url(
                url, extra_headers=headers, connect_timeout=timeouts.connect,
                disconnect_timeout=timeouts.close, message_queue_size=64)
            ws = await cm.__aenter__()
        except (HandshakeError, OSError, trio.BrokenResourceError) as exc:
            raise handshake_error(exc, url) from None
        conn = cls(ws, url)
        failed = True
        try:
            yield conn
            failed = False
        finally:
            # after a failure the peer may be dead: do not wait for a close handshake
            with trio.CancelScope(shield=True):
                with trio.move_on_after(0.05 if failed else timeouts.close):
                    try:
                        await cm.__aexit__(None, None, None)
                    except BaseException:  # closing a dead socket is not news
                        pass

    async def send(self, frame: str | bytes) -> None:
        try:
            await self.ws.send_message(frame)
        except ConnectionClosed as exc:
            raise self._closed(exc) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLostError(f"connection to {self.url} lost while sending: {exc}") from None

    def _closed(self, exc: ConnectionClosed) -> DashScopeError:
        self.protocol.connection_lost()
        reason = exc.reason
        code = reason.code if reason is not None else None
        text = (reason.reason or "") if reason is not None else ""
        return ConnectionLostError(f"connection to {self.url} closed (code {code}{': ' + text if text else ''})",
                                   code=str(code) if code is not None else None, server_message=text)

    async def receive(self) -> ServerEvent:
        try:
            frame = await self.ws.get_message()
        except ConnectionClosed as exc:
            raise self._closed(exc) from None
        return self.protocol.receive(frame)

    async def start(self, message: RunTask, timeout: float) -> None:
        """Send ``run-task`` and wait for ``task-started`` (or raise the ``task-failed``)."""
        await self.send(self.protocol.run_task(message))
        with trio.move_on_after(timeout) as scope:
            event = await self.receive()
        if scope.cancelled_caught:
            raise ServerTimeoutError(f"no task-started within {timeout:g} s", task_id=message.task_id)
        if isinstance(event, TaskFailed):
            raise TaskFailedError(event.error_code, event.error_message, task_id=event.task_id)
        if not isinstance(event, TaskStarted):
            raise ProtocolError(f"expected task-started, got {type(event).__name__}")

    async def ping_forever(self, interval: float, timeout: float) -> None:
        """Raise :class:`ServerTimeoutError` when a ping goes unanswered for ``timeout`` s."""
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(timeout) as scope:
                try:
                    await self.ws.ping()
                except ConnectionClosed as exc:
                    raise self._closed(exc) from None
            if scope.cancelled_caught:
                raise ServerTimeoutError(f"the server did not answer a ping within {timeout:g} s")


def _rank(exc: DashScopeError) -> int:
    """Which of several simultaneous failures explains the others: a permanent error first, then
    the server's own words (task-failed, error events), then timeouts, then a lost connection."""
    if not is_retryable(exc):
        return 0
    if isinstance(exc, ConnectionLostError):
        return 3
    if isinstance(exc, ServerTimeoutError):
        return 2
    return 1


def collapse_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error that matters in a nursery's exception group (a DashScope error if any)."""
    inner = leaves(group)
    ours = [leaf for leaf in inner if isinstance(leaf, DashScopeError)]
    if ours:
        return min(ours, key=_rank)
    for leaf in inner:
        if isinstance(leaf, ConnectionClosed):
            return ConnectionLostError(f"connection closed: {leaf.reason}")
        if isinstance(leaf, (trio.BrokenResourceError, trio.ClosedResourceError, OSError)):
            return ConnectionLostError(f"connection lost: {scrub(str(leaf)) or type(leaf).__name__}")
    return group


def sentence_to_result(s: Sentence, *, offset_ms: int, utterance_id: int) -> TranscriptResult:
    def t(ms: int | None) -> float | None:
        return None if ms is None else (offset_ms + ms) / 1000.0

    words = tuple(Word(w.text, t(w.begin_time), t(w.end_time)) for w in s.words)
    return TranscriptResult(s.text, s.is_final, utterance_id, t(s.begin_time), t(s.end_time), words,
                            emotion=s.emo_tag, confidence=None)


def resume_point(resumed: int, covered: int, floor: int, lead_in: int) -> int:
    """Where a new connection's audio starts, once finals cover the audio up to ``covered``:
    ``lead_in`` before it, never before ``floor`` (the last final's start), never after
    ``covered``, never back before ``resumed`` (the resume point so far). Any one unit (ms, samples).
    Shared with the realtime stream (:mod:`voicekit_dashscope.asr.realtime_stream`)."""
    return max(resumed, min(covered, max(covered - lead_in, floor)))


@attrs.define
class _TaskView:
    """One task's place on the stream's timeline: its audio starts at ``base_ms``, and the
    audio before ``finalised_ms`` (its lead-in) is covered by finals already delivered."""

    base_ms: int
    finalised_ms: int
    uids: dict[int, int] = attrs.field(factory=dict)  # the task's sentence id → the stream's number

    def new_part(self, s: Sentence) -> Sentence | None:
        """``s`` without what repeats finalised audio: itself, its words after the finalised
        end, or None when it lies in the lead-in."""
        floor = self.finalised_ms - self.base_ms  # in the task's own time
        if floor <= 0 or s.begin_time >= floor - _REPEAT_MARGIN_MS:
            return s
        if s.words:
            kept = tuple(w for w in s.words if (w.begin_time + w.end_time) / 2 >= floor)
            if not kept:
                return None
            if len(kept) == len(s.words):
                return s
            sep = " " if " " in s.text.strip() else ""
            text = sep.join(w.text + w.punctuation for w in kept)
            return attrs.evolve(s, text=text, begin_time=kept[0].begin_time, words=kept)
        if s.end_time is None or (s.begin_time + s.end_time) / 2 < floor:
            return None  # an unfinished sentence that started there, or a final mostly there
        return s


class Recognizer:
    """One recognition stream that survives connection failures.

    Feed audio with :meth:`send_audio` (bytes in the declared format), call :meth:`finish`, and
    read :class:`TranscriptResult` values from :meth:`results`. :meth:`run` does the work and
    must run in a nursery for the lifetime of the stream.
    """

    def __init__(self, *, url: str, api_key: ApiKey, model: str, parameters: RecognitionParameters,
                 task_input: Mapping[str, Any] | None = None, workspace: str | None = None,
                 retry: RetryPolicy = RetryPolicy(), timeouts: Timeouts = Timeouts(),
                 max_buffer_s: float = 300.0, audio_queue: int = 64, result_queue: int = 256,
                 connect: Callable[..., Any] | None = None, seed: int | None = None,
                 lead_in_ms: int = LEAD_IN_MS) -> None:
        self.url = check_transport(url)
        self.api_key = api_key
        self.model = model
        self.parameters = parameters
        self.input = dict(task_input or {})
        self.workspace = workspace
        self.retry = retry
        self.timeouts = timeouts
        self._connect = connect or TaskConnection.open
        self._rng = random.Random(seed)
        self._bytes_per_ms = parameters.sample_rate * 2 / 1000 if parameters.format == "pcm" else None
        self._max_buffer = (int(max_buffer_s * parameters.sample_rate) * 2) if self._bytes_per_ms else None
        self._audio_queue = audio_queue  # kept for compatibility: audio is sent by the caller's task now
        self._result_send, self._result_recv = trio.open_memory_channel[TranscriptResult](result_queue)
        # audio kept for re-sending: chunks with their absolute byte offsets
        self._buffer: deque[tuple[int, bytes]] = deque()
        self._received_bytes = 0  # total audio bytes taken from the caller
        self._acked_bytes = 0  # audio bytes covered by final sentences
        self._acked_ms = 0
        # where the next task's audio starts: a lead-in before the acknowledged end, kept buffered
        self.lead_in_ms = max(0, lead_in_ms)
        self._resume_bytes = 0
        self._resume_ms = 0
        self._finals = 0
        self._next_uid = 1  # the stream's number for the next sentence
        self._input_done = False
        self._sent_any_audio = False
        # the current connection (None between connections) and how far it has been sent
        self._conn: TaskConnection | None = None
        self._conn_nursery: trio.Nursery | None = None
        self._recv_scope: trio.CancelScope | None = None
        self._sent_pos = 0  # absolute byte offset of the next audio to send on _conn
        self._contexts: deque[tuple[int, list[Mapping[str, Any]]]] = deque()  # not yet sent: (byte offset, context)
        self._send_lock = trio.Lock()  # one writer at a time: the caller, or a connection's replay
        self.dropped_bytes = 0
        self.attempts = 0
        self.reconnects = 0
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return f"Recognizer(model={self.model!r}, url={self.url!r}, api_key={self.api_key!r})"

    # -- caller side

    async def send_audio(self, data: bytes) -> None:
        """Keep ``data`` for re-sending and send it now on the open connection, if there is one
        (in the caller's task: no hop to a sender task per chunk)."""
        if self.error is not None:
            raise self.error
        if data and not self._input_done:
            await _acquire(self._send_lock)
            try:
                self._remember(bytes(data))
                await self._send_pending()
            finally:
                self._send_lock.release()

    async def finish(self) -> None:
        if self.error is not None:
            raise self.error
        if self._input_done:
            return
        await _acquire(self._send_lock)
        try:
            self._input_done = True
            await self._send_pending()
        finally:
            self._send_lock.release()

    async def update_context(self, context: list[Mapping[str, Any]]) -> None:
        """Send new conversation context (``continue-task``), in order with the audio; later
        tasks (after a reconnection) start with it."""
        if self.error is not None:
            raise self.error
        await _acquire(self._send_lock)
        try:
            self._contexts.append((self._received_bytes, list(context)))
            await self._send_pending()
        finally:
            self._send_lock.release()

    def results(self) -> trio.MemoryReceiveChannel[TranscriptResult]:
        return self._result_recv

    # -- worker

    async def run(self) -> None:
        """Run until ``task-finished`` of the last task; errors are kept in :attr:`error` and
        the result channel is closed either way."""
        async with self._result_send:
            failures = 0
            while True:
                self.attempts += 1
                finals_before = self._finals
                try:
                    await self._one_connection()
                    return
                except DashScopeError as exc:
                    if self._finals > finals_before:
                        failures = 0
                    failures += 1
                    can_resend = self._bytes_per_ms is not None or not self._sent_any_audio
                    retryable = is_retryable(exc)
                    if not retryable or not can_resend or failures > self.retry.max_retries:
                        if retryable and failures > self.retry.max_retries:
                            err: DashScopeError = RetriesExhaustedError(
                                f"DashScope stream failed {failures} times in a row; last error: {exc}",
                                code=exc.code, server_message=exc.server_message)
                            err.__cause__ = exc
                        else:
                            err = exc
                        self.error = err
                        log.error("dashscope_stream_failed", error=str(err), code=err.code)
                        return
                    delay = self.retry.delay(failures, self._rng)
                    self.reconnects += 1
                    log.warning("dashscope_retry", error=str(exc), code=exc.code, attempt=failures,
                                delay=round(delay, 3), resend_from_ms=self._acked_ms,
                                clock=round(trio.current_time(), 3))
                    await trio.sleep(delay)

    async def _one_connection(self) -> None:
        try:
            await self._one_connection_inner()
        except BaseExceptionGroup as group:
            raise collapse_group(group) from None
        finally:
            self._conn = self._conn_nursery = self._recv_scope = None

    async def _one_connection_inner(self) -> None:
        async with self._connect(self.url, self.api_key, workspace=self.workspace,
                                 timeouts=self.timeouts) as conn:
            task_id = new_task_id()
            await conn.start(RunTask(task_id, self.model, self.parameters, self.input), self.timeouts.start)
            base_bytes = self._resume_bytes
            base_ms = self._resume_ms
            view = _TaskView(base_ms, self._acked_ms)
            self._next_uid = self._finals + 1  # an unfinished sentence keeps its partials' number
            log.debug("dashscope_task_started", task_id=task_id, base_ms=base_ms, finalised_ms=self._acked_ms)
            recv_scope = trio.CancelScope()  # gets a deadline once finish-task is sent
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.ping_forever, self.timeouts.ping_interval, self.timeouts.ping_timeout)
                nursery.start_soon(self._attach, conn, nursery, recv_scope, base_bytes)
                with recv_scope:
                    while True:
                        event = await conn.receive()
                        if isinstance(event, TaskFailed):
                            raise TaskFailedError(event.error_code, event.error_message, task_id=event.task_id)
                        if isinstance(event, TaskFinished):
                            break
                        if isinstance(event, ResultGenerated):
                            await self._on_result(event.sentence, view)
                if recv_scope.cancelled_caught:
                    raise ServerTimeoutError(f"no task-finished within {self.timeouts.finish:g} s "
                                             "after finish-task", task_id=task_id)
                nursery.cancel_scope.cancel()
    async def _on_result(self, s: Sentence, view: _TaskView) -> None:
        if s.heartbeat:
            return
        kept = view.new_part(s)
        if kept is None:
            log.debug("dashscope_repeat_dropped", text=excerpt(s.text, 40), final=s.is_final,
                      begin_ms=view.base_ms + s.begin_time, finalised_ms=view.finalised_ms)
            return
        uid = view.uids.get(kept.sentence_id)
        if uid is None:
            uid = view.uids[kept.sentence_id] = self._next_uid
            self._next_uid += 1
        await self._result_send.send(sentence_to_result(kept, offset_ms=view.base_ms, utterance_id=uid))
        # only now does the final cover its audio: had the hand-over been cancelled (the
        # connection failing meanwhile), the audio is re-sent and the sentence comes again
        if kept.is_final:
            self._finals += 1
            end = kept.end_time if kept.end_time is not None else (kept.words[-1].end_time if kept.words else None)
            if end is not None:
                self._ack(view.base_ms + end, view.base_ms + kept.begin_time)

    def _ack(self, abs_ms: int, begin_ms: int) -> None:
        """Audio up to ``abs_ms`` is finalised (by a sentence that began at ``begin_ms``): keep
        only what the next task re-sends, from the lead-in before it."""
        if abs_ms <= self._acked_ms:
            return
        self._acked_ms = abs_ms
        resume_ms = resume_point(self._resume_ms, abs_ms, begin_ms, self.lead_in_ms)
        if self._bytes_per_ms is None:
            self._resume_ms = resume_ms
            return
        pos = int(abs_ms * self._bytes_per_ms) // 2 * 2
        self._acked_bytes = min(max(self._acked_bytes, pos), self._received_bytes)
        resume = min(int(resume_ms * self._bytes_per_ms) // 2 * 2, self._acked_bytes)
        if resume > self._resume_bytes:
            self._resume_bytes, self._resume_ms = resume, resume_ms
        while self._buffer and self._buffer[0][0] + len(self._buffer[0][1]) <= self._resume_bytes:
            self._buffer.popleft()

    def _remember(self, chunk: bytes) -> None:
        self._buffer.append((self._received_bytes, chunk))
        self._received_bytes += len(chunk)
        if self._max_buffer is not None:
            held = self._received_bytes - self._buffer[0][0]
            while len(self._buffer) > 1 and held > self._max_buffer:
                _, old = self._buffer.popleft()
                self.dropped_bytes += len(old)
                held = self._received_bytes - self._buffer[0][0]
                self._acked_bytes = max(self._acked_bytes, self._buffer[0][0])
                self._acked_ms = max(self._acked_ms, int(self._acked_bytes / (self._bytes_per_ms or 1)))
                if self._buffer[0][0] > self._resume_bytes:
                    self._resume_bytes = self._buffer[0][0]
                    self._resume_ms = int(self._resume_bytes / (self._bytes_per_ms or 1))

    def _piece_at(self, pos: int) -> bytes | None:
        """Buffered audio from absolute byte ``pos`` to the end of the chunk holding it."""
        pos = max(pos, self._resume_bytes)
        for start, chunk in reversed(self._buffer):  # usually the newest chunk: search from the end
            if start <= pos:
                return chunk[pos - start:] if pos < start + len(chunk) else None
        return None

    async def _attach(self, conn: TaskConnection, nursery: trio.Nursery, recv_scope: trio.CancelScope,
                      base_bytes: int) -> None:
        """Make ``conn`` the connection audio goes to, and re-send what no final covers yet."""
        await _acquire(self._send_lock)
        try:
            self._conn, self._conn_nursery, self._recv_scope = conn, nursery, recv_scope
            self._sent_pos = base_bytes
            await self._send_pending()
        finally:
            self._send_lock.release()

    async def _send_pending(self) -> None:
        """Send the audio the current connection has not had yet, then ``finish-task`` once the
        input is done (call with the send lock held). A failed send is left to the receiver."""
        conn = self._conn
        # the receiver may drop acknowledged chunks meanwhile: walk by byte position, not by index
        while self._sent_pos < self._received_bytes or self._contexts:
            if conn is None or self._conn is not conn or conn.protocol.state is not TaskState.RUNNING:
                return  # the connection failed meanwhile: the receiver reports why
            pos = max(self._sent_pos, self._resume_bytes)
            if self._contexts and self._contexts[0][0] <= pos:  # context updates go in order with the audio
                context = self._contexts[0][1]
                if not await self._send_or_fail(conn, conn.protocol.continue_task({"context": context})):
                    return
                self._contexts.popleft()
                self.input = {**self.input, "context": context}  # later tasks start with it
                continue
            piece = self._piece_at(pos)
            if piece is None:
                break
            if self._contexts and self._contexts[0][0] < pos + len(piece):
                piece = piece[:self._contexts[0][0] - pos]
            if not await self._send_or_fail(conn, conn.protocol.audio(piece)):
                return
            self._sent_any_audio = True
            self._sent_pos = pos + len(piece)
        if conn is None or self._conn is not conn or conn.protocol.state is not TaskState.RUNNING:
            return
        if self._input_done:
            if await self._send_or_fail(conn, conn.protocol.finish_task()) and self._recv_scope is not None:
                self._recv_scope.deadline = trio.current_time() + self.timeouts.finish

    async def _send_or_fail(self, conn: TaskConnection, frame: str | bytes) -> bool:
        try:
            await conn.send(frame)
            return True
        except ConnectionLostError as exc:
            # The server may have said why (task-failed) just before it closed: give the receiver,
            # which reads what was queued before the close, a moment to report that instead.
            if self._conn is conn and self._conn_nursery is not None:
                self._conn = None
                try:
                    self._conn_nursery.start_soon(self._fail_after_close, exc)
                except RuntimeError:  # the connection is ending anyway
                    pass
            return False

    async def _fail_after_close(self, exc: ConnectionLostError) -> None:
        await trio.sleep(self.timeouts.close)
        raise exc


async def _acquire(lock: trio.Lock) -> None:
    """Take ``lock``; when it is free, without a trip through the scheduler (a checkpoint follows
    anyway, in the send that the lock guards)."""
    if lock.locked():
        await lock.acquire()
    else:
        lock.acquire_nowait()
