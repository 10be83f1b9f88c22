"""The emulated WebSocket task protocol (``/api-ws/v1/inference``): Fun-ASR and Paraformer.

Per connection it runs :class:`~voicekit_dashscope.protocol.task.ServerTaskProtocol`; per task
it decodes the audio (``pcm``, or ``wav`` with its header), resamples to 16 kHz, endpoints it
with voicekit's VAD endpointer (``max_sentence_silence`` is the end-of-sentence silence) and
drives the transcription engine with the resulting utterance markers. Engine results become
``result-generated`` events: interim ones with ``end_time``/``usage`` null, final ones with an end
time, word timings and the task's billed duration (whole seconds of audio so far).

Faithful timers: 23 s without data in a task → ``task-failed`` CLIENT_ERROR; 60 s without a task
→ the connection is closed. Both are settings, on trio's clock.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import trio

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.logging import get_logger
from voicekit.vad.endpointer import Endpointer, EndpointerConfig, SpeechEnd, SpeechStart
from voicekit_dashscope.asr.models import MODELS, ModelSpec
from voicekit_dashscope.protocol.task import (
    Audio,
    ContinueTask,
    FinishTask,
    RunTask,
    Sentence,
    ServerTaskProtocol,
    Violation,
    WordTiming,
)
from voicekit_dashscope.protocol.vocabulary import Hotword
from voicekit_dashscope.regions import emulator_refuses
from voicekit_dashscope_emulator.biasing import active_hotwords, apply_hotwords, split_words, spread
from voicekit_dashscope_emulator.errors import Refused
from voicekit_dashscope_emulator.faults import Fault, FaultPlan
from voicekit_dashscope_emulator.http import ServerWebSocket, WebSocketClosed
from voicekit_dashscope_emulator.vocabulary import VocabularyStore
from voicekit_dashscope_emulator.wav_stream import WavReader

log = get_logger("voicekit.dashscope.emulator")
ENGINE_RATE = 16000
TIMEOUT_MESSAGE = "request timeout after 23 seconds."


@attrs.frozen
class TaskSettings:
    data_timeout: float = 23.0
    idle_timeout: float = 60.0
    audio_before_start: str = "fail"  # or "ignore" (undocumented on the real service)
    unknown_vocabulary: str = "fail"  # or "ignore" (undocumented on the real service)
    heartbeat_every: float = 5.0  # seconds of non-speech audio between heartbeat events
    vad: str = "webrtc"  # or "energy" (exact on synthetic audio)
    vad_mode: int = 2
    pre_roll_ms: int = 300
    default_sentence_silence_ms: int = 1300
    accept_unknown_models: bool = False
    region: str | None = None  # the region emulated: its host does not know models it does not offer


def make_engine_vad(vad: str, mode: int = 2) -> Any:
    """The VAD the engine's audio is endpointed with: ``"energy"`` (exact on synthetic audio) or WebRTC at
    aggressiveness ``mode``."""
    if vad == "energy":
        from voicekit.vad.energy import EnergyVAD

        return EnergyVAD(ENGINE_RATE, 20)
    from voicekit.vad.webrtc import WebRTCVAD

    return WebRTCVAD(ENGINE_RATE, 30, mode)


class _Fault(Exception):
    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.kind)
        self.fault = fault


@attrs.define
class _SentenceIds:
    by_utterance: dict[int, int] = attrs.field(factory=dict)
    next_id: int = 1

    def get(self, utterance: int) -> int:
        if utterance not in self.by_utterance:
            self.by_utterance[utterance] = self.next_id
            self.next_id += 1
        return self.by_utterance[utterance]


class TaskConnectionHandler:
    """Serves one WebSocket connection of the task protocol."""

    def __init__(self, ws: ServerWebSocket, *, owner: str, engine: Any, store: VocabularyStore,
                 faults: FaultPlan, settings: TaskSettings, stats: dict[str, int]) -> None:
        self.ws = ws
        self.owner = owner
        self.engine = engine
        self.store = store
        self.faults = faults
        self.settings = settings
        self.stats = stats
        self.proto = ServerTaskProtocol(audio_before_start=settings.audio_before_start)
        self.delay = 0.0
        self._send_lock = trio.Lock()

    async def send(self, frame: str | bytes) -> None:
        async with self._send_lock:
            if self.delay:
                await trio.sleep(self.delay)
            await self.ws.send(frame)

    async def fail_and_close(self, code: str, message: str) -> None:
        self.stats["task_failed"] = self.stats.get("task_failed", 0) + 1
        await self.send(self.proto.failed(code, message))
        await self.ws.close(1000, "")

    async def run(self) -> None:
        await self.ws.accept()
        try:
            await self._serve()
        except* WebSocketClosed:
            pass
        except* _Fault as eg:
            fault: BaseException = eg
            while isinstance(fault, BaseExceptionGroup):  # the engine's own nursery may nest it
                fault = fault.exceptions[0]
            assert isinstance(fault, _Fault)
            await self._apply(fault.fault)

    async def _apply(self, fault: Fault) -> None:
        self.stats[f"fault_{fault.kind}"] = self.stats.get(f"fault_{fault.kind}", 0) + 1
        log.info("emulator_fault", kind=fault.kind, arg=fault.arg)
        try:
            match fault.kind:
                case "drop":
                    await self.ws.black_hole()
                case "reset":
                    await self.ws.abort()
                case "close1011":
                    await self.ws.close(1011, "Internal server error")
                case "close":
                    await self.ws.close(int(fault.arg or 1011), "emulated close")
                case "idle":
                    await self.fail_and_close("CLIENT_ERROR", TIMEOUT_MESSAGE)
                case "task-failed":
                    await self.fail_and_close(fault.arg or "InternalError",
                                              "emulated task failure (injected fault)")
        except WebSocketClosed:
            pass

    async def _serve(self) -> None:
        while True:
            with trio.move_on_after(self.settings.idle_timeout) as scope:
                frame = await self.ws.receive()
            if scope.cancelled_caught:
                await self.ws.close(1000, "idle connection timeout")
                return
            msg = self.proto.receive(frame)
            if isinstance(msg, Violation):
                await self.fail_and_close(msg.reply.error_code, msg.reply.error_message)
                return
            if isinstance(msg, RunTask):
                if not await self._run_task(msg):
                    return

    def _check(self, run: RunTask) -> tuple[ModelSpec | None, tuple[Hotword, ...]]:
        """The task's model and hotwords, checked in the service's order; :class:`Refused` if refused."""
        spec = self._model(run)
        _check_audio(run, spec)
        return spec, self._hotwords(run)

    def _model(self, run: RunTask) -> ModelSpec | None:
        spec = MODELS.get(run.model)
        unknown = spec is None and not self.settings.accept_unknown_models
        if unknown or emulator_refuses(run.model, self.settings.region):
            raise Refused("ModelNotFound", "Model not exist.")
        return spec

    def _hotwords(self, run: RunTask) -> tuple[Hotword, ...]:
        """The words of the task's vocabulary, if it is deployed for this model (else none)."""
        vid = run.parameters.vocabulary_id
        if vid is None:
            return ()
        v = self.store.get(vid, self.owner)
        if v is None and self.settings.unknown_vocabulary == "fail":
            raise Refused("InvalidParameter", f"vocabulary_id {vid} does not exist")
        if v is None or v.target_model != run.model or v.status() != "OK":
            return ()
        return v.words

    async def _run_task(self, run: RunTask) -> bool:
        try:
            spec, hotwords = self._check(run)
        except Refused as exc:
            await self.fail_and_close(exc.code, exc.message)
            return False
        self.stats["tasks"] = self.stats.get("tasks", 0) + 1
        await self.send(self.proto.started())
        task = _Task(self, run, spec, hotwords)
        return await task.run()


def _check_audio(run: RunTask, spec: ModelSpec | None) -> None:
    """The audio formats the emulator decodes, and the 8 kHz-only models' rate."""
    p = run.parameters
    if p.format not in ("pcm", "wav"):
        raise Refused("NO_VALID_AUDIO_ERROR", f"the emulator decodes format 'pcm' and 'wav' only, not {p.format!r}")
    only_8k = spec is not None and not spec.any_rate and spec.sample_rates == (8000,)
    if only_8k and p.sample_rate != 8000:
        raise Refused("InvalidParameter", f"model {run.model} only supports sample_rate 8000")


class _Task:
    def __init__(self, conn: TaskConnectionHandler, run: RunTask, spec: ModelSpec | None,
                 hotwords: tuple[Hotword, ...]) -> None:
        from voicekit.audio.resample import StreamResampler

        self.conn = conn
        self.run_msg = run
        self.spec = spec
        p = run.parameters
        hint = p.language_hints[0] if p.language_hints else None
        self.hotwords = active_hotwords(hotwords, hint)
        self.language = hint
        self.rate: int = p.sample_rate
        self.wav = WavReader() if p.format == "wav" else None
        self.resampler: StreamResampler | None = None
        silence = p.max_sentence_silence or conn.settings.default_sentence_silence_ms
        vad = make_engine_vad(conn.settings.vad, conn.settings.vad_mode)
        self.endpointer = Endpointer(vad, EndpointerConfig(pre_roll_ms=conn.settings.pre_roll_ms,
                                                           end_silence_ms=silence))
        self.carry = b""
        self.samples = 0  # input samples so far (at the task's rate)
        self.out_t = 0.0
        self.in_speech = False
        self.since_heartbeat = 0.0
        self.ids = _SentenceIds()
        self.shown: set[int] = set()
        self.finals: set[int] = set()
        self.context = dict(run.input)

    @property
    def audio_seconds(self) -> float:
        return self.samples / self.rate

    def _set_rate(self, rate: int) -> None:
        from voicekit.audio.resample import StreamResampler

        self.rate = rate
        self.resampler = StreamResampler(rate, ENGINE_RATE) if rate != ENGINE_RATE else None

    async def run(self) -> bool:
        s = self.conn.settings
        self._set_rate(self.rate)
        config = ASRConfig(sample_rate=ENGINE_RATE, language=self.language,
                           hotwords=tuple(h.text for h in self.hotwords))
        async with self.conn.engine.open_stream(config) as stream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, stream)
            while True:
                with trio.move_on_after(s.data_timeout) as scope:
                    frame = await self.conn.ws.receive()
                if scope.cancelled_caught:
                    await self.conn.fail_and_close("CLIENT_ERROR", TIMEOUT_MESSAGE)
                    nursery.cancel_scope.cancel()
                    return False
                msg = self.conn.proto.receive(frame)
                if isinstance(msg, Violation):
                    await self.conn.fail_and_close(msg.reply.error_code, msg.reply.error_message)
                    nursery.cancel_scope.cancel()
                    return False
                if isinstance(msg, Audio):
                    if not await self._feed(stream, msg.data):
                        nursery.cancel_scope.cancel()
                        return False
                elif isinstance(msg, ContinueTask):
                    self.context = dict(msg.input)  # no reply is documented
                    self.conn.stats["context_updates"] = self.conn.stats.get("context_updates", 0) + 1
                elif isinstance(msg, FinishTask):
                    await self._flush(stream)
                    await stream.finish()
                    break
        await self.conn.send(self.conn.proto.finished())
        return True

    def _pcm(self, data: bytes) -> bytes:
        """Whole 16-bit samples of the task's audio (a ``wav`` task's header stripped; its rate applies if it
        comes before any sample); an odd byte waits for the next message. :class:`Refused` for a bad WAV."""
        if self.wav is not None:
            data = self.wav.push(data)
            if self.wav.error is not None:
                raise Refused("NO_VALID_AUDIO_ERROR", self.wav.error)
            if self.wav.rate is not None and self.wav.rate != self.rate and self.samples == 0:
                self._set_rate(self.wav.rate)
        data = self.carry + data
        cut = len(data) // 2 * 2
        data, self.carry = data[:cut], data[cut:]
        return data

    async def _feed(self, stream: Any, raw: bytes) -> bool:
        try:
            data = self._pcm(raw)
        except Refused as exc:
            await self.conn.fail_and_close(exc.code, exc.message)
            return False
        if not data:
            return True
        frame = AudioFrame(data, self.rate, 1, self.samples / self.rate)
        self.samples += frame.samples
        await self._endpoint(stream, frame)
        await self._heartbeat(frame.duration)
        for fault in self.conn.faults.advance(frame.duration, data, self.conn):
            if fault.kind == "malformed":
                await self.conn.send('{"header": {"task_id": "' + (self.conn.proto.task_id or "") + '", "event": ')
            elif fault.kind == "slow":
                self.conn.delay = float(fault.arg or 1.0)
            elif fault.kind == "stall":  # the reader stops (no pongs); the engine's results still go out
                await trio.sleep(float(fault.arg or 5.0))
            else:
                raise _Fault(fault)
        return True

    async def _endpoint(self, stream: Any, frame: AudioFrame | None, *, flush: bool = False) -> None:
        items: list[Any] = []
        if self.resampler is not None:
            out = self.resampler.process(frame) if frame is not None else self.resampler.flush()
            frame = out
        if frame is not None:
            items.extend(self.endpointer.push(frame))
        if flush:
            items.extend(self.endpointer.flush())
        for item in items:
            if isinstance(item, SpeechStart):
                self.in_speech = True
                await stream.speech_started(item.t)
            elif isinstance(item, SpeechEnd):
                self.in_speech = False
                await stream.speech_ended(item.t)
            else:
                await stream.send_audio(item)

    async def _flush(self, stream: Any) -> None:
        await self._endpoint(stream, None, flush=True)

    async def _heartbeat(self, seconds: float) -> None:
        if not self.run_msg.parameters.heartbeat or self.in_speech:
            self.since_heartbeat = 0.0
            return
        self.since_heartbeat += seconds
        if self.since_heartbeat >= self.conn.settings.heartbeat_every:
            self.since_heartbeat = 0.0
            t = round(self.audio_seconds * 1000)
            await self.conn.send(self.conn.proto.result(
                Sentence(0, "", t, None, False, True), None))

    async def _pump(self, stream: Any) -> None:
        async for r in stream:
            await self._emit(r)

    async def _emit(self, r: TranscriptResult) -> None:
        sid = self.ids.get(r.utterance_id)
        if sid in self.finals:
            return
        text = apply_hotwords(r.text.strip(), self.hotwords)
        if not text and (not r.is_final or sid not in self.shown):
            return
        sentence = self._sentence(sid, text, r)
        usage = max(1, math.ceil(self.audio_seconds)) if r.is_final else None
        (self.finals if r.is_final else self.shown).add(sid)
        await self.conn.send(self.conn.proto.result(sentence, usage))
        if r.is_final:
            self.conn.stats["finals"] = self.conn.stats.get("finals", 0) + 1

    def _sentence(self, sid: int, text: str, r: TranscriptResult) -> Sentence:
        """An engine result as a sentence: times in ms, words spread over its span, emotion if shown."""
        begin = round((r.start or 0.0) * 1000)
        now_ms = round(self.audio_seconds * 1000)
        end = self._end_ms(r, now_ms)
        span_end = end if end is not None else max(begin, now_ms)
        words = tuple(WordTiming(a, b, w, p) for a, b, w, p in spread(split_words(text), begin, span_end))
        emo_tag, emo_conf = self._emotion(r)
        return Sentence(sid, text, begin, end, r.is_final, False, words, emo_tag, emo_conf)

    @staticmethod
    def _end_ms(r: TranscriptResult, now_ms: int) -> int | None:
        """A final's end (the audio so far if the engine gives none); ``None`` for an interim result."""
        if not r.is_final:
            return None
        return round(r.end * 1000) if r.end is not None else now_ms

    def _emotion(self, r: TranscriptResult) -> tuple[str | None, float | None]:
        """(emotion tag, confidence) of a final, for models that report emotion (not with semantic punctuation)."""
        shown = self.spec is not None and self.spec.emotion and not self.run_msg.parameters.semantic_punctuation_enabled
        if not (shown and r.is_final and r.emotion is not None):
            return None, None
        return r.emotion, (r.confidence if r.confidence is not None else 1.0)
