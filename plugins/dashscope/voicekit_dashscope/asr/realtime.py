"""ASR plugins on the realtime protocol: Qwen3-ASR-Flash-Realtime and the Qwen-Omni models.

Entry points (group ``voicekit.asr``):

* ``qwen3-asr-flash-realtime`` (:class:`Qwen3ASRRealtime`): transcription with the server's VAD
  (``mode="server_vad"``, default) or with manual commits (``mode="manual"``: the stream commits
  the audio buffer at every ``speech_ended`` marker of the session's own endpointer). Partials
  are the server's ``text`` (confirmed) + ``stash`` (tentative); finals come from ``.completed``
  with the language and emotion the server reports. ``ASRConfig.context`` (or ``context=``) is
  sent as ``corpus.text`` — the model's prompt biasing, in place of hotwords.
* ``qwen3.5-omni-plus-realtime``, ``qwen3.5-omni-flash-realtime``, ``qwen3-omni-flash-realtime``
  (:class:`OmniRealtimeASR`): the Omni model used as a recognizer with *prompt context
  injection*. With ``transcript_source="response"`` (default) each committed utterance is
  answered, text only, by the model itself following instructions that ask for a verbatim
  transcript and carry the context — so the context shapes the words. With ``"input"`` the
  fixed built-in transcription model's ``...transcription.completed`` is used instead (cheaper,
  but the context has no effect on it). Partials come from the built-in transcription.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import attrs
import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ASRError, ConfigError, leaves
from voicekit.logging import get_logger
from voicekit.plugins.options import Option
from voicekit_dashscope.auth import ApiKey, resolve_api_key
from voicekit_dashscope.client.realtime import (
    Connector,
    RealtimeConnection,
    SendLock,
    acquire,
    realtime_base_url,
    websocket_connector,
)
from voicekit_dashscope.client.task import RetryPolicy, Timeouts, collapse_group
from voicekit_dashscope.errors import (
    ConnectionLostError,
    DashScopeError,
    RetriesExhaustedError,
    ServerTimeoutError,
    is_retryable,
)
from voicekit_dashscope.options import connection, model_option
from voicekit_dashscope.protocol.realtime import (
    MODELS,
    AudioCommit,
    AudioCommitted,
    ErrorEvent,
    RealtimeModel,
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
    Transcription,
    TranscriptionCompleted,
    TranscriptionFailed,
    TranscriptionText,
    TurnDetection,
    check_session,
    get_realtime_model,
)
from voicekit_dashscope.regions import DEFAULT_REGION, check_model_region

log = get_logger("voicekit.dashscope.realtime")
MANUAL_LIMIT_S = 55.0  # the service refuses more than 60 s of audio per manual commit
TRANSCRIBE_INSTRUCTIONS = (
    "You are a speech recognizer. Transcribe exactly what the user says, in the language spoken, "
    "with punctuation. Output only the transcript: no answers, no comments.")


def capabilities_for(spec: RealtimeModel, *, server_endpointing: bool) -> ASRCapabilities:
    from voicekit_dashscope.asr.models import guide_record

    return guide_record(ASRCapabilities(
        name=spec.name, family=spec.family, mode="streaming", api="websocket", languages=spec.languages,
        hotwords=False, prompt_context=True, emotion=spec.emotion, word_timestamps=False, partials=True,
        sample_rates=spec.input_rates, max_duration_s=spec.session_limit_s, regions=spec.regions, offline=False,
        server_endpointing=server_endpointing, notes=spec.notes))


def _options(models: tuple[str, ...], default_model: str, default_mode: str) -> tuple[Option, ...]:
    return (
        model_option(default_model, models),
        *connection(),
        Option("sample_rate", "int", None, "audio rate sent to the service (default: the model's preferred "
                                           "rate; the session resamples to it)", minimum=8000, maximum=48000),
        Option("mode", "enum", default_mode, "server_vad: the service cuts turns; manual: the session's VAD "
                                             "commits each utterance", choices=("server_vad", "manual")),
        Option("language", "str", None, "language code of the speech, e.g. en (default: detect)"),
        Option("context", "str", None, "text that biases recognition: names, terms, the topic"),
        Option("vad_threshold", "float", None, "server VAD threshold (-1.0 to 1.0)", minimum=-1.0, maximum=1.0),
        Option("silence_duration_ms", "int", None, "server VAD silence that ends a turn, ms", minimum=0),
        Option("finish_timeout_s", "float", 20.0, "how long to wait for the last result, seconds", minimum=0.0),
        Option("append_ms", "int", 100, "audio per append message, ms", minimum=10, maximum=1000),
        Option("connector", "object", None, "a custom transport connector (Python only; tests)"),
        Option("retry", "int", 5, "reconnect attempts after failures in a row", minimum=0, maximum=100,
               convert=lambda n: RetryPolicy(max_retries=n)),
        Option("timeouts", "object", None, "a voicekit_dashscope.client.task.Timeouts (Python only)"),
        Option("max_buffer_s", "float", 300.0, "audio kept for replay after a reconnect, seconds",
               minimum=1.0, maximum=3600.0),
    )


class _RealtimeASR:
    family: ClassVar[str]
    default_model: ClassVar[str]
    capabilities: ASRCapabilities  # the class's default model; an instance's own chosen model
    options: ClassVar[tuple[Option, ...]]
    uses_response: bool = False  # the final transcript is a model response (Omni prompt-context mode)

    def __init__(self, model: str | None = None, *, api_key: str | ApiKey | None = None,
                 region: str = DEFAULT_REGION, workspace: str | None = None, base_url: str | None = None,
                 connector: Connector | None = None, mode: str | None = None, language: str | None = None,
                 context: str | None = None, vad_threshold: float | None = None,
                 silence_duration_ms: int | None = None, finish_timeout_s: float = 20.0,
                 append_ms: int = 100, sample_rate: int | None = None, retry: RetryPolicy | None = None,
                 timeouts: Timeouts | None = None, max_buffer_s: float = 300.0) -> None:
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.max_buffer_s = max_buffer_s
        self.model = model or self.default_model
        self.spec = get_realtime_model(self.model)
        if self.spec.family != self.family and not (self.family == "omni" and self.spec.is_omni):
            raise ConfigError(f"{self.model} is not a {self.family} model; use the {self.spec.name} entry point")
        caps = capabilities_for(self.spec, server_endpointing=type(self).capabilities.server_endpointing)
        if sample_rate is not None:
            if sample_rate not in self.spec.input_rates:
                raise ConfigError(f"{self.model} takes {', '.join(map(str, self.spec.input_rates))} Hz audio, "
                                  f"not sample_rate={sample_rate}")
            caps = attrs.evolve(caps, sample_rates=(sample_rate,))
        self.capabilities = caps
        self.mode = mode or self._default_mode()
        if self.mode not in ("server_vad", "manual"):
            raise ConfigError(f"mode must be 'server_vad' or 'manual', not {self.mode!r}")
        if language is not None and language not in self.spec.languages and not self.spec.family.startswith("qwen3.5"):
            raise ConfigError(f"{self.model} does not list language {language!r}; use one of {self.spec.languages}")
        self.language = language
        self.context = context
        self.vad_threshold = vad_threshold
        self.silence_duration_ms = silence_duration_ms
        self.finish_timeout_s = finish_timeout_s
        self.append_ms = append_ms
        if connector is None:
            key = resolve_api_key(api_key)
            assert key is not None
            self.api_key: ApiKey | None = key
            check_model_region(self.model, region)  # also with base_url: the region decides what the key reaches
            base = realtime_base_url(region, workspace=workspace, base_url=base_url)
            connector = websocket_connector(key, base=base, workspace=workspace)
        else:
            self.api_key = None
        self.connector = connector
        self.check(self.session(self.spec.input_rates[0], ASRConfig()))  # bad settings fail here, not later

    def check(self, session: SessionConfig) -> SessionConfig:
        issues = check_session(self.spec, session)
        if issues:
            raise ConfigError(f"{self.model}: " + "; ".join(f"{i.param}: {i.message}" for i in issues))
        return session

    def _default_mode(self) -> str:
        return "server_vad"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, mode={self.mode!r}, api_key={self.api_key!r})"

    @classmethod
    def models(cls) -> list[ASRCapabilities]:
        return [capabilities_for(m, server_endpointing=True) for n, m in MODELS.items()
                if n == m.name and (m.family == cls.family or (cls.family == "omni" and m.is_omni))]

    def turn_detection(self) -> TurnDetection | None:
        if self.mode == "manual":
            return None
        return TurnDetection("server_vad", self.vad_threshold, self.silence_duration_ms)

    def session(self, rate: int, config: ASRConfig) -> SessionConfig:
        raise NotImplementedError

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[RealtimeASRStream]:
        rate = config.sample_rate
        if rate not in self.spec.input_rates:
            raise ConfigError(f"{self.model} takes {self.spec.input_rates} Hz audio, not {rate} Hz "
                              "(the session resamples when the plugin's rate is set)")
        session = self.check(self.session(rate, config))
        stream = RealtimeASRStream(self, session, rate)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(stream._run)  # the first connection is open (or its error raised)
                try:
                    yield stream
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            inner = leaves(group)
            if len({id(x) for x in inner}) == 1:
                inner[0].__suppress_context__ = True
                raise inner[0]  # noqa: B904 - keeps the leaf's own __cause__
            raise


class Qwen3ASRRealtime(_RealtimeASR):
    """Qwen3-ASR-Flash real-time transcription (27 languages, emotion, context biasing)."""

    family = "qwen3-asr"
    default_model = "qwen3-asr-flash-realtime"
    capabilities = capabilities_for(MODELS["qwen3-asr-flash-realtime"], server_endpointing=True)
    options = _options(tuple(n for n, m in MODELS.items() if m.family == "qwen3-asr"),
                       "qwen3-asr-flash-realtime", "server_vad")

    def session(self, rate: int, config: ASRConfig) -> SessionConfig:
        language = self.language or (config.language.split("-")[0].lower() if config.language else None)
        if language is not None and language not in self.spec.languages:
            language = None  # an unsupported session language falls back to detection
        context = self.context if self.context is not None else config.context
        if config.hotwords and not context:
            context = ", ".join(config.hotwords)  # the model takes context text instead of hotwords
        return SessionConfig(modalities=("text",), input_audio_format="pcm", sample_rate=rate,
                             transcription=Transcription(language=language, corpus_text=context),
                             turn_detection=self.turn_detection())


def _omni_options(default_model: str) -> tuple[Option, ...]:
    models = tuple(n for n, m in MODELS.items() if m.is_omni)
    return (*_options(models, default_model, "manual"),
            Option("transcript_source", "enum", "response",
                   "response: the model transcribes with the context; input: the built-in transcription",
                   choices=("response", "input")))


class OmniRealtimeASR(_RealtimeASR):
    """A Qwen-Omni realtime model used for transcription with prompt context injection."""

    family = "omni"
    default_model = "qwen3.5-omni-plus-realtime"
    capabilities = capabilities_for(MODELS["qwen3.5-omni-plus-realtime"], server_endpointing=False)
    options = _omni_options("qwen3.5-omni-plus-realtime")

    def __init__(self, model: str | None = None, *, transcript_source: str = "response", **kwargs: Any) -> None:
        if transcript_source not in ("response", "input"):
            raise ConfigError("transcript_source must be 'response' or 'input'")
        self.transcript_source = transcript_source
        self.uses_response = transcript_source == "response"
        super().__init__(model, **kwargs)

    def _default_mode(self) -> str:
        return "manual"

    def turn_detection(self) -> TurnDetection | None:
        td = super().turn_detection()
        if td is not None and not self.uses_response:
            return TurnDetection("server_vad", td.threshold, td.silence_duration_ms, create_response=False)
        return td

    def session(self, rate: int, config: ASRConfig) -> SessionConfig:
        context = self.context if self.context is not None else config.context
        if config.hotwords:
            context = ((context or "") + "\nNames and terms that may occur: " + ", ".join(config.hotwords)).strip()
        instructions = TRANSCRIBE_INSTRUCTIONS
        language = self.language or config.language
        if language:
            instructions += f" The speech is most likely in language '{language}'."
        if context:
            instructions += "\nContext (spell names and terms as written here):\n" + context
        kw: dict[str, Any] = {}
        if not self.spec.nested_audio_format:
            kw["input_audio_format"] = "pcm16"
        elif rate != 16000:
            from voicekit_dashscope.protocol.realtime import AudioFormat

            kw["input_format"] = AudioFormat("pcm", rate)
        return SessionConfig(modalities=("text",), instructions=instructions, turn_detection=self.turn_detection(),
                             **kw)


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


class RealtimeASRStream:
    """An open realtime recognition stream (the voicekit ``ASRStream`` contract) that survives
    lost connections, like the Fun-ASR task client (:mod:`voicekit_dashscope.client.task`):

    * everything sent (audio appends and, in manual mode, commits) is kept in a log until a
      *final* transcript covers it (the end of its utterance);
    * when the connection drops, closes, stops answering pings, sends a malformed frame or a
      retryable ``error`` event, the stream waits (``RetryPolicy`` back-off), opens a new session
      with the same settings and re-sends the log — so the server hears the unfinished utterance
      again, and no final is lost or repeated;
    * times and utterance numbers of the new session are shifted onto the stream's own timeline;
    * permanent errors (bad key, bad parameter) end the stream at once.
    """

    def __init__(self, plugin: _RealtimeASR, session: SessionConfig, rate: int) -> None:
        self.plugin = plugin
        self.session = session
        self.rate = rate
        self.manual = plugin.mode == "manual"
        self.conn: RealtimeConnection | None = None
        self._send, self._recv = trio.open_memory_channel[TranscriptResult](512)
        self._lock = SendLock()  # one writer at a time: the caller's sends and a replay
        self._buf = b""
        self._step = rate * plugin.append_ms // 1000 * 2
        self._samples = 0  # samples taken from the caller
        self._logged = 0  # samples put in the log
        self._uncommitted = 0  # samples since the last commit (manual mode)
        self._speech_start: float | None = None
        self._log: list[_Audio | _Commit] = []  # sent or to send, not yet covered by a final
        self._sent = 0  # index in _log of the next entry to send on the current connection
        self._acked = 0  # samples covered by finals (never re-sent)
        self._max_buffer = int(plugin.max_buffer_s * rate)
        self.dropped_samples = 0
        self._finished = False
        self._finish_requested = trio.Event()
        self._finals = 0
        self.reconnects = 0
        self.error: BaseException | None = None
        self._reset_connection_state(0)

    def _reset_connection_state(self, base: int) -> None:
        self._base = base  # absolute sample index of the connection's first audio sample
        self._utterances: dict[str, int] = {}
        self._next_uid = self._finals + 1
        self._times: dict[str, list[float | None]] = {}
        self._meta: dict[str, tuple[str | None, str | None]] = {}
        self._committed: list[str] = []
        self._commit_of: dict[str, _Commit] = {}
        self._pending_commits: list[_Commit] = []
        self._response_item: dict[str, str] = {}
        self._response_text: dict[str, str] = {}
        self._open_items: set[str] = set()
        self._wanted = 0
        self._creating = False

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
        await acquire(self._lock)
        try:
            if self.conn is not None:
                await self._send_pending(self.conn)
        finally:
            self._lock.release()

    async def _send_pending(self, conn: RealtimeConnection) -> None:
        """Send the log entries the connection has not had yet (call with the lock held)."""
        try:
            while self._sent < len(self._log):
                entry = self._log[self._sent]
                if isinstance(entry, _Audio):
                    cut = max(0, self._acked - entry.start) * 2
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
                                delay=round(delay, 3), resend_from_s=round(self._acked / self.rate, 3))
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
                        max(self._acked, first.start) if isinstance(first, _Audio) else first.at)
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
            if self._finished and not self._open_items and self._sent >= len(self._log):
                return  # the server closed after everything was answered
            raise
        finally:
            self.conn = None

    def _trim(self, *, sent_only: bool = False) -> None:
        """Forget log entries that finals cover (with ``sent_only``, only those already sent on
        the current connection, so that a send in progress keeps its place)."""
        while self._log and (not sent_only or self._sent > 0):
            first = self._log[0]
            covered = first.end if isinstance(first, _Audio) else first.at
            if covered > self._acked:
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
        await conn.finish()

    # -- server side

    def _uid(self, item_id: str) -> int:
        if item_id not in self._utterances:
            self._utterances[item_id] = self._next_uid
            self._next_uid += 1
            self._times.setdefault(item_id, [None, None])
            self._open_items.add(item_id)
        return self._utterances[item_id]

    def _t(self, ms: int) -> float:
        return self._base / self.rate + ms / 1000

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
                self._meta[event.item_id] = (event.language, event.emotion)
                text = event.display.strip()
                if text:
                    await self._emit(event.item_id, text, False)
            case TranscriptionCompleted():
                self._meta[event.item_id] = (event.language, event.emotion)
                if not self.plugin.uses_response:
                    await self._emit(event.item_id, event.transcript.strip(), True)
            case TranscriptionFailed():
                log.warning("realtime_transcription_failed", item=event.item_id, error=dict(event.error))
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
        """The server's VAD and commit events: the utterance's times on the stream's timeline."""
        self._uid(event.item_id)
        match event:
            case SpeechStarted():
                self._times[event.item_id][0] = self._t(event.audio_start_ms)
            case SpeechStopped():
                self._times[event.item_id][1] = self._t(event.audio_end_ms)
            case AudioCommitted():
                self._committed.append(event.item_id)
                if self._pending_commits:
                    commit = self._pending_commits.pop(0)
                    self._commit_of[event.item_id] = commit
                    if self.manual:
                        self._times[event.item_id] = list(commit.marker)

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
                    await self._emit(item, self._response_text.pop(event.response_id, "").strip(), True)
                if self.plugin.uses_response:
                    await self._maybe_create(conn)

    async def _emit(self, item_id: str, text: str, final: bool) -> None:
        uid = self._uid(item_id)
        start, end = self._times.get(item_id, [None, None])
        language, emotion = self._meta.get(item_id, (None, None))
        if final:
            self._finals += 1
            self._open_items.discard(item_id)
            commit = self._commit_of.get(item_id)
            covered = commit.at if commit is not None else (round(end * self.rate) if end is not None else None)
            if covered is not None and covered > self._acked:
                self._acked = covered
                self._trim(sent_only=True)
        await self._send.send(TranscriptResult(text, final, uid, start, end if final else None,
                                               language=language, emotion=emotion))


class Qwen35OmniPlusRealtimeASR(OmniRealtimeASR):
    default_model = "qwen3.5-omni-plus-realtime"
    capabilities = capabilities_for(MODELS["qwen3.5-omni-plus-realtime"], server_endpointing=False)
    options = _omni_options("qwen3.5-omni-plus-realtime")


class Qwen35OmniFlashRealtimeASR(OmniRealtimeASR):
    default_model = "qwen3.5-omni-flash-realtime"
    capabilities = capabilities_for(MODELS["qwen3.5-omni-flash-realtime"], server_endpointing=False)
    options = _omni_options("qwen3.5-omni-flash-realtime")


class Qwen3OmniFlashRealtimeASR(OmniRealtimeASR):
    default_model = "qwen3-omni-flash-realtime"
    capabilities = capabilities_for(MODELS["qwen3-omni-flash-realtime"], server_endpointing=False)
    options = _omni_options("qwen3-omni-flash-realtime")
