"""The stream of the realtime ASR plugins (:mod:`voicekit_dashscope.asr.realtime`): sends audio
(and, in manual mode, commits), keeps what it sent until a final covers it, and survives lost
connections by opening a new session and re-sending that log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
import trio

from voicekit.asr.base import TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ASRError
from voicekit.logging import get_logger
from voicekit_dashscope.client.realtime import RealtimeConnection, SendLock
from voicekit_dashscope.client.task import LEAD_IN_MS, collapse_group, resume_point
from voicekit_dashscope.errors import (
    ConnectionLostError,
    DashScopeError,
    RetriesExhaustedError,
    ServerTimeoutError,
    is_retryable,
)
from voicekit_dashscope.protocol.realtime import (
    AudioCommit,
    AudioCommitted,
    ErrorEvent,
    RealtimeStateError,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    SessionConfig,
    SessionFinished,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TextDone,
    TranscriptionCompleted,
    TranscriptionFailed,
    TranscriptionText,
)

if TYPE_CHECKING:
    from voicekit_dashscope.asr.realtime import RealtimeASRBase

log = get_logger("voicekit.dashscope.realtime")
MANUAL_LIMIT_S = 55.0  # the service refuses more than 60 s of audio per manual commit
REPEAT_MARGIN_MS = 250  # how far a re-heard utterance's end may stray from the original's
LATE_FINAL_S = 30.0  # an utterance whose final is this far behind later finals no longer holds the log


@attrs.define
class _Audio:
    start: int  # absolute sample index of the first sample
    pcm: bytes

    @property
    def end(self) -> int:
        return self.start + len(self.pcm) // 2


@attrs.define
class _Commit:
    at: int  # absolute sample index the commit closes
    marker: tuple[float | None, float | None]  # (speech start, speech end) in stream seconds


@attrs.define
class _Item:
    """One utterance (server item) of the current session: its audio on the stream's timeline
    (samples) and what became of it."""

    frm: int | None = None  # its first sample (server VAD: speech start; manual: the previous commit)
    to: int | None = None  # its last (server VAD: speech_stopped; manual: its commit)
    times: list[float | None] = attrs.field(factory=lambda: [None, None])  # start, end shown (seconds)
    meta: tuple[str | None, str | None] = (None, None)  # language, emotion
    uid: int | None = None
    suspect: bool = False  # starts in audio already finalised: a repeat until its end says otherwise
    repeat: bool = False  # lies in finalised audio: nothing of it is passed on
    said: str | None = None  # runs on from finalised audio: the words it may begin with (dropped)
    said_to: int = 0  # where those words' audio ends
    done: bool = False  # its final is in the result queue
    failed: bool = False  # transcription.failed: no final will come
    heard: str | None = None  # response mode: the built-in transcription, the fallback of a cut response
    cut: str | None = None  # response mode: an interrupted response's text, while the fallback is awaited

    @property
    def open(self) -> bool:
        return not (self.done or self.repeat)


@attrs.frozen
class _Span:
    """A delivered final: its audio, number and text."""

    frm: int
    to: int
    uid: int
    text: str


def new_words(said: str, text: str) -> str:
    """``text`` without its opening words that repeat the last words of ``said`` (characters for
    text written without spaces); case and punctuation do not count."""
    sep = " " if " " in said.strip() or " " in text.strip() else ""
    old, new = (said.split(), text.split()) if sep else (list(said.strip()), list(text.strip()))

    def norm(w: str) -> str:
        return "".join(c for c in w.lower() if c.isalnum())

    a, b = [norm(w) for w in old], [norm(w) for w in new]
    for k in range(min(len(a), len(b)), 0, -1):
        if a[-k:] == b[:k]:
            return sep.join(new[k:])
    return text


class RealtimeASRStream:
    """An open realtime recognition stream (the voicekit ``ASRStream`` contract) that survives
    lost connections, like the Fun-ASR task client (:mod:`voicekit_dashscope.client.task`):

    * everything sent (audio appends and, in manual mode, commits) is kept in a log until
      *finals* cover it: all utterances up to there have their final in the result queue (a
      final that is handed over when the connection fails counts for nothing; one that comes
      before an earlier utterance's covers nothing before that utterance);
    * when the connection drops, closes, stops answering pings, sends a malformed frame or a
      retryable ``error`` event, the stream waits (``RetryPolicy`` back-off), opens a new session
      with the same settings and re-sends the log — so the server hears the unfinished utterance
      again, and no final is lost or repeated;
    * with the server's VAD the re-sent audio starts ``lead_in_ms`` before the end of what finals
      cover (never before the last final's start): a VAD that starts afresh just where an
      utterance ended may hear its tail as an utterance. What the new session hears in audio
      already finalised is dropped; an utterance that runs on past it loses its opening words
      that repeat the final before (the protocol has no word times). In manual mode the commits
      delimit utterances exactly: the re-sent audio starts at the last covered commit;
    * a final with no ``speech_stopped`` time (the utterance the server closes at
      ``session.finish``) covers up to the next utterance's start, or after ``session.finish``
      all the audio sent;
    * times and utterance numbers of the new session are shifted onto the stream's own timeline
      (a dropped repeat takes no number);
    * permanent errors (bad key, bad parameter) end the stream at once.
    """

    def __init__(self, plugin: RealtimeASRBase, session: SessionConfig, rate: int, *,
                 lead_in_ms: int = LEAD_IN_MS) -> None:
        self.plugin = plugin
        self.session = session
        self.rate = rate
        self.manual = plugin.mode == "manual"
        self.conn: RealtimeConnection | None = None
        self._send, self._recv = trio.open_memory_channel[TranscriptResult](plugin.result_queue)
        self._lock = SendLock()  # one writer at a time: the caller's sends and a replay
        self._buf = b""
        self._step = rate * plugin.append_ms // 1000 * 2
        self._samples = 0  # samples taken from the caller
        self._logged = 0  # samples put in the log
        self._uncommitted = 0  # samples since the last commit (manual mode)
        self._speech_start: float | None = None
        self._log: list[_Audio | _Commit] = []  # sent or to send, not yet covered by a final
        self._sent = 0  # index in _log of the next entry to send on the current connection
        self._acked = 0  # samples covered by finals (every utterance before has its final delivered)
        self._resume = 0  # where a new session's audio starts (a lead-in before _acked); never re-sent before
        self._lead_in = 0 if self.manual else rate * max(0, lead_in_ms) // 1000
        self._margin = rate * REPEAT_MARGIN_MS // 1000
        self._late = int(LATE_FINAL_S * rate)
        self._delivered: list[_Span] = []  # finals whose audio a new session may hear again
        self._max_uid = 0
        self._max_buffer = int(plugin.max_buffer_s * rate)
        self.dropped_samples = 0
        self._finished = False
        self._finish_requested = trio.Event()
        self._finals = 0
        self.reconnects = 0
        self.error: BaseException | None = None
        self._items: dict[str, _Item] = {}  # the current session's utterances
        self._next_uid = 1
        self._reset_connection_state(0)

    def _reset_connection_state(self, base: int) -> None:
        self._base = base  # absolute sample index of the connection's first audio sample
        # an utterance left unfinished keeps its number; else the next after the last delivered
        numbered = [i for i in self._items.values() if i.uid is not None]
        unfinished = [i.uid for i in numbered if i.open] if numbered else [self._next_uid]
        self._next_uid = min([self._max_uid + 1, *unfinished])
        self._items = {}
        self._committed: list[str] = []
        self._last_commit = base  # manual mode: where the next committed item's audio starts
        self._pending_commits: list[_Commit] = []
        self._response_item: dict[str, str] = {}
        self._response_text: dict[str, str] = {}
        self._wanted = 0
        self._creating = False
        self._finish_sent = False

    # -- caller side

    async def send_audio(self, frame: AudioFrame) -> None:
        if self.error is not None:
            raise self.error
        if frame.sample_rate != self.rate or frame.channels != 1:
            raise ASRError(f"stream opened for mono {self.rate} Hz audio got {frame.channels} ch "
                           f"{frame.sample_rate} Hz")
        pcm = self._buf + frame.pcm if self._buf else frame.pcm
        self._samples += frame.samples
        self._uncommitted += frame.samples
        step, cut = self._step, 0
        while len(pcm) - cut >= step:
            self._log_audio(pcm if cut == 0 and len(pcm) == step else pcm[cut:cut + step])  # no copy of a whole chunk
            cut += step
        self._buf = pcm[cut:] if cut else pcm
        if self.manual and self._uncommitted / self.rate >= MANUAL_LIMIT_S:
            self._log_commit(self._samples / self.rate)
        await self._flush()

    def _log_audio(self, pcm: bytes) -> None:
        self._log.append(_Audio(self._logged, pcm))
        self._logged += len(pcm) // 2
        # bound the log: drop the oldest audio beyond max_buffer_s (counted)
        while len(self._log) > 1 and self._sent > 0:
            first = self._log[0]
            if self._logged - (first.start if isinstance(first, _Audio) else first.at) <= self._max_buffer:
                break
            if isinstance(first, _Audio):
                self.dropped_samples += len(first.pcm) // 2
                self._acked = max(self._acked, first.end)
                self._resume = max(self._resume, first.end)
            self._log.pop(0)
            self._sent -= 1

    def _log_commit(self, t: float) -> None:
        if self._buf:
            self._log_audio(self._buf)
            self._buf = b""
        if self._uncommitted == 0:
            return
        self._uncommitted = 0
        self._log.append(_Commit(self._logged, (self._speech_start, t)))
        self._speech_start = None

    async def _flush(self) -> None:
        if self.conn is None:
            return  # the next connection replays the log
        async with self._lock:  # free: taken without a scheduler trip
            if self.conn is not None:
                await self._send_pending(self.conn)

    async def _send_pending(self, conn: RealtimeConnection) -> None:
        """Send the log entries the connection has not had yet (call with the lock held)."""
        try:
            while self._sent < len(self._log):
                entry = self._log[self._sent]
                if isinstance(entry, _Audio):
                    cut = max(0, self._resume - entry.start) * 2
                    if cut < len(entry.pcm):
                        await conn.send_audio(entry.pcm[cut:] if cut else entry.pcm)
                else:
                    await conn.send(AudioCommit())
                    self._pending_commits.append(entry)
                    if self.plugin.uses_response:
                        self._wanted += 1
                        await self._maybe_create(conn)
                self._sent += 1
                if self._sent < len(self._log):
                    # a replay (or a backlog): let the reader and the other streams run between its
                    # messages, since a send that finds room in the socket does not checkpoint
                    await trio.lowlevel.checkpoint()
        except (ConnectionLostError, RealtimeStateError):
            pass  # the receive loop finds out and reconnects; the log keeps the rest

    async def speech_started(self, t: float) -> None:
        self._speech_start = t

    async def speech_ended(self, t: float) -> None:
        """Manual mode: commit the buffer (one utterance). Server-VAD mode: ignored."""
        if self.manual:
            self._log_commit(t)
            await self._flush()

    async def _maybe_create(self, conn: RealtimeConnection) -> None:
        """One response per committed utterance, one at a time (the service allows one active)."""
        if self._wanted and not self._creating and conn.protocol.active_response is None:
            self._wanted -= 1
            self._creating = True
            await conn.send(ResponseCreate())

    async def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self.manual and (self._uncommitted or self._buf) and self._speech_start is not None:
            self._log_commit(self._samples / self.rate)
        elif self._buf:
            self._log_audio(self._buf)
            self._buf = b""
        await self._flush()
        self._finish_requested.set()

    async def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        async for result in self._recv:
            yield result
        if self.error is not None:
            raise self.error

    # -- connections

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open sessions until one ends normally. Before the first is open, errors are raised
        (``open_stream`` fails); after, they are kept in :attr:`error` for the caller."""
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        retry = self.plugin.retry
        failures = 0
        async with self._send:
            while True:
                finals_before = self._finals
                try:
                    await self._one_connection(ready)
                    return
                except DashScopeError as exc:
                    self.conn = None
                    if self._finals > finals_before:
                        failures = 0
                    failures += 1
                    retryable = is_retryable(exc)
                    if not retryable or failures > retry.max_retries:
                        err: DashScopeError = exc
                        if retryable:
                            err = RetriesExhaustedError(
                                f"DashScope realtime stream failed {failures} times in a row; last error: {exc}",
                                code=exc.code, server_message=exc.server_message)
                            err.__cause__ = exc
                        log.error("realtime_stream_failed", error=str(err), code=err.code)
                        if not started:
                            raise err from err.__cause__
                        self.error = err
                        return
                    delay = retry.delay(failures)
                    self.reconnects += 1
                    log.warning("realtime_retry", error=str(exc), code=exc.code, attempt=failures,
                                delay=round(delay, 3), resend_from_s=round(self._resume / self.rate, 3),
                                finalised_s=round(self._acked / self.rate, 3))
                    await trio.sleep(delay)

    async def _one_connection(self, ready: Any) -> None:
        try:
            async with RealtimeConnection.open(self.plugin.connector, self.plugin.spec, session=self.session,
                                               timeout=self.plugin.timeouts.start) as conn, \
                    trio.open_nursery() as nursery:
                async with self._lock:
                    self._trim()
                    first = self._log[0] if self._log else None
                    base = self._logged if first is None else (
                        max(self._resume, first.start) if isinstance(first, _Audio) else first.at)
                    self._reset_connection_state(base)
                    self._sent = 0
                    self.conn = conn
                    await self._send_pending(conn)
                ready()
                nursery.start_soon(self._keepalive, conn)
                nursery.start_soon(self._finisher, conn)
                await self._loop(conn)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise collapse_group(group) from None
        except ConnectionLostError:
            if self._finished and not any(i.open for i in self._items.values()) and self._sent >= len(self._log):
                return  # the server closed after everything was answered
            raise
        finally:
            self.conn = None

    def _trim(self, *, sent_only: bool = False) -> None:
        """Forget log entries before the resume point (with ``sent_only``, only those already sent
        on the current connection, so that a send in progress keeps its place)."""
        while self._log and (not sent_only or self._sent > 0):
            first = self._log[0]
            covered = first.end if isinstance(first, _Audio) else first.at
            if covered > self._resume:
                break
            self._log.pop(0)
            if sent_only:
                self._sent -= 1

    async def _keepalive(self, conn: RealtimeConnection) -> None:
        ping = getattr(conn.transport, "ping", None)
        if ping is None:
            return
        timeouts = self.plugin.timeouts
        while True:
            await trio.sleep(timeouts.ping_interval)
            with trio.move_on_after(timeouts.ping_timeout) as scope:
                await ping()
            if scope.cancelled_caught:
                raise ServerTimeoutError(
                    f"the realtime server did not answer a ping within {timeouts.ping_timeout:g} s")

    async def _finisher(self, conn: RealtimeConnection) -> None:
        await self._finish_requested.wait()
        await self._flush()
        if self.plugin.uses_response:
            with trio.move_on_after(self.plugin.finish_timeout_s):
                while conn.protocol.active_response is not None or self._wanted or self._creating:
                    await trio.sleep(0.05)
        self._finish_sent = True  # what the server closes now without speech_stopped ends here
        await conn.finish()

    # -- server side

    def _item(self, item_id: str) -> _Item:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item()
        return item

    def _number(self, item: _Item) -> int:
        if item.uid is None:
            item.uid = self._next_uid
            self._next_uid += 1
        return item.uid

    def _t(self, ms: int) -> float:
        return self._base / self.rate + ms / 1000

    def _sample(self, ms: int) -> int:
        return self._base + ms * self.rate // 1000

    async def _loop(self, conn: RealtimeConnection) -> None:
        finish_deadline: float | None = None
        while True:
            if self._finished and finish_deadline is None:
                finish_deadline = trio.current_time() + self.plugin.finish_timeout_s
            if finish_deadline is None:  # no cancel scope per message while the stream runs
                event = await conn.receive()
            else:
                with trio.move_on_at(finish_deadline) as scope:
                    event = await conn.receive()
                if scope.cancelled_caught:
                    log.warning("realtime_asr_finish_timeout", model=self.plugin.model)
                    return
            if await self._on_event(conn, event):
                return

    async def _on_event(self, conn: RealtimeConnection, event: Any) -> bool:
        """Handle one server event; True when the session is over."""
        match event:
            case SpeechStarted() | SpeechStopped() | AudioCommitted():
                self._on_input_event(event)
            case TranscriptionText():  # and TranscriptionDelta
                self._item(event.item_id).meta = (event.language, event.emotion)
                text = event.display.strip()
                if text:
                    await self._emit(event.item_id, text, False)
            case TranscriptionCompleted():
                item = self._item(event.item_id)
                item.meta = (event.language, event.emotion)
                if not self.plugin.uses_response:
                    await self._emit(event.item_id, event.transcript.strip(), True)
                else:
                    item.heard = event.transcript.strip()
                    if item.cut is not None:  # its response was cut short before this came
                        await self._emit(event.item_id, item.heard or item.cut, True)
            case TranscriptionFailed():
                log.warning("realtime_transcription_failed", item=event.item_id, error=dict(event.error))
                item = self._item(event.item_id)
                if item.cut is not None:  # no fallback will come: the cut response is all there is
                    await self._emit(event.item_id, item.cut, True)
                item.failed = True  # no final will come: it holds back no audio
                self._advance()
            case ResponseCreated() | TextDelta() | TextDone() | ResponseDone():
                await self._on_response_event(conn, event)
            case ErrorEvent():
                if self._finished and conn.protocol.phase.value == "finishing":
                    return True  # the model refuses session.finish: we are done anyway
                raise event.error.exception()
            case SessionFinished():
                return True
        return False

    def _on_input_event(self, event: SpeechStarted | SpeechStopped | AudioCommitted) -> None:
        """The server's VAD and commit events: the utterance's audio and times on the stream's timeline."""
        item = self._item(event.item_id)
        match event:
            case SpeechStarted():
                item.frm = self._sample(event.audio_start_ms)
                item.times[0] = self._t(event.audio_start_ms)
                item.suspect = self._in_finalised(item.frm)
            case SpeechStopped():
                item.to = self._sample(event.audio_end_ms)
                item.times[1] = self._t(event.audio_end_ms)
                self._judge(item)
            case AudioCommitted():
                self._committed.append(event.item_id)
                if self._pending_commits:
                    commit = self._pending_commits.pop(0)
                    item.frm, item.to, self._last_commit = self._last_commit, commit.at, commit.at
                    if self.manual:
                        item.times = list(commit.marker)
                    item.suspect = self._in_finalised(item.frm)
                    self._judge(item)
        if not (item.suspect or item.repeat):
            self._number(item)

    def _in_finalised(self, at: int) -> bool:
        """Whether audio from ``at`` was heard before, and finals delivered cover it."""
        return at < self._acked or any(d.frm - self._margin <= at < d.to for d in self._delivered)

    def _judge(self, item: _Item) -> None:
        """An utterance that begins in finalised audio, once its end is known: a repeat if it ends
        there too (dropped, and its number is not given again), else one that runs on into new
        speech (its opening words that repeat the finals before are dropped from its text)."""
        if not item.suspect or item.frm is None or item.to is None:
            return
        item.suspect = False
        m = self._margin
        spans = sorted((d for d in self._delivered if d.to > item.frm - m), key=lambda d: d.frm)
        if (item.frm < self._acked and item.to <= self._acked + m) or any(
                d.frm - m <= item.frm and item.to <= d.to + m for d in spans):
            item.repeat = True
            self._next_uid = max([self._next_uid, *(d.uid + 1 for d in spans if d.frm - m <= item.to)])
            log.debug("realtime_repeat_dropped", start_s=round(item.frm / self.rate, 3),
                      end_s=round(item.to / self.rate, 3), finalised_s=round(self._acked / self.rate, 3))
            return
        if spans:
            item.said = " ".join(d.text for d in spans)
            item.said_to = max(d.to for d in spans)
        self._number(item)

    def _end_without_stop(self, item: _Item) -> int | None:
        """Where an utterance with no speech_stopped time ends: at the next one's start, or (closed
        by session.finish) at the end of the audio sent."""
        later = [i.frm for i in self._items.values() if i.frm is not None and item.frm is not None and i.frm > item.frm]
        return min(later) if later else (self._logged if self._finish_sent else None)

    async def _on_response_event(self, conn: RealtimeConnection,
                                 event: ResponseCreated | TextDelta | TextDone | ResponseDone) -> None:
        """Omni prompt-context mode: a response's text is the utterance's final transcript."""
        match event:
            case ResponseCreated():
                self._creating = False
                pending = [i for i in self._committed if i not in self._response_item.values()]
                if pending:
                    self._response_item[event.response_id] = pending[0]
            case TextDelta():
                rid = event.response_id
                self._response_text[rid] = self._response_text.get(rid, "") + event.delta
            case TextDone():
                self._response_text[event.response_id] = event.text
            case ResponseDone():
                item = self._response_item.get(event.response_id)
                if item is not None and self.plugin.uses_response:
                    await self._response_final(item, event, self._response_text.pop(event.response_id, "").strip())
                if self.plugin.uses_response:
                    await self._maybe_create(conn)

    async def _response_final(self, item_id: str, event: ResponseDone, text: str) -> None:
        """A response is the utterance's final transcript, unless the service cut it short (with
        server VAD a new utterance interrupts the response in flight): then the built-in
        transcription of the same audio stands in, now or when it comes."""
        if event.status in ("", "completed"):
            await self._emit(item_id, text, True)
            return
        item = self._item(item_id)
        log.warning("realtime_response_cut", item=item_id, status=event.status, fallback="input transcription")
        if item.heard is not None:
            await self._emit(item_id, item.heard or text, True)
        elif item.failed:
            await self._emit(item_id, text, True)
        else:
            item.cut = text

    async def _emit(self, item_id: str, text: str, final: bool) -> None:
        item = self._item(item_id)
        if final and item.suspect:  # no speech_stopped came: judged on where its audio must end
            item.to = item.to if item.to is not None else self._end_without_stop(item)
            self._judge(item)
            if item.suspect:  # undecidable: passed on whole rather than lost
                item.suspect = False
        if item.suspect or item.repeat:
            return  # a repeat, or (a partial) maybe one
        start = item.times[0]
        if item.said is not None:
            kept = new_words(item.said, text)
            if not kept:
                if final:  # every word of it was delivered already
                    item.repeat = True
                    if item.uid is not None and item.uid == self._next_uid - 1:
                        self._next_uid -= 1
                return
            if kept != text:
                text, start = kept, max(start or 0.0, item.said_to / self.rate)
        uid = self._number(item)
        language, emotion = item.meta
        await self._send.send(TranscriptResult(text, final, uid, start, item.times[1] if final else None,
                                               language=language, emotion=emotion))
        if final:  # only now, in the result queue, does it cover its audio (a cancelled hand-over doesn't)
            self._delivered_final(item, uid, text)

    def _delivered_final(self, item: _Item, uid: int, text: str) -> None:
        item.done = True
        self._finals += 1
        self._max_uid = max(self._max_uid, uid)
        to = item.to if item.to is not None else self._end_without_stop(item)
        if to is not None:
            self._delivered.append(_Span(item.frm if item.frm is not None else to, to, uid, text))
        self._advance()

    def _advance(self) -> None:
        """Finals cover the audio up to the first utterance still waiting for its final (at most
        to the end of the last delivered; one that ended ``LATE_FINAL_S`` before that is given
        up on); the resume point is a lead-in before that, never before the last final's start."""
        top = max((d.to for d in self._delivered), default=self._acked)
        waiting = [i.frm for i in self._items.values() if i.open and not i.failed and i.frm is not None
                   and (i.to is None or i.to + self._late > top)]
        acked = min([top, *waiting])
        if acked <= self._acked:
            return
        self._acked = acked
        before = [d for d in self._delivered if d.to <= acked]
        floor = max(before, key=lambda d: d.to).frm if before else self._resume
        self._resume = resume_point(self._resume, acked, floor, self._lead_in)
        self._delivered = [d for d in self._delivered if d.to + self._margin > self._resume]
        self._trim(sent_only=True)
