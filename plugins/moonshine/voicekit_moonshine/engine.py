"""Moonshine ASR plugin.

Moonshine decodes whole utterances, so this plugin cuts the stream at the session's VAD markers:
audio between ``speech_started`` and ``speech_ended`` is one utterance and gets one final
transcript. Partials come from re-decoding the growing utterance every ``partial_interval``
seconds of audio, skipped while the decoder is still busy (a partial never delays a final).
The model is loaded once per process through :mod:`voicekit.modelcache` and shared by every
stream (each stream keeps only its own audio); inference runs on a worker thread through a
one-slot limiter per model (the C handle is not shared between threads at once).
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ASRError, ConfigError
from voicekit.modelcache import shared_model
from voicekit.plugins.options import Option

RATE = 16000
# moonshine_voice creates its native-library singleton without a lock: two transcribers built at
# the same moment can see it half made. Every construction goes through this lock.
_CONSTRUCT = threading.Lock()


class _Model:
    """One loaded Moonshine transcriber, shared by every stream of the process. The native handle
    must not decode on two threads at once: ``lock`` guards it across trio runs and threads, and a
    one-slot trio limiter per run keeps waiting decodes off the worker threads."""

    def __init__(self, name: str, transcriber: Any) -> None:
        self.name = name
        self.transcriber = transcriber
        self.lock = threading.Lock()

    def limiter(self) -> trio.CapacityLimiter:
        limiters = _LIMITERS.get(None)
        if limiters is None:
            limiters = {}
            _LIMITERS.set(limiters)
        if self.name not in limiters:
            limiters[self.name] = trio.CapacityLimiter(1)
        return limiters[self.name]

    def decode(self, audio: npt.NDArray[np.float32]) -> str:
        with self.lock:
            return _decode(self.transcriber, audio)


_LIMITERS: trio.lowlevel.RunVar[dict[str, trio.CapacityLimiter] | None] = trio.lowlevel.RunVar(
    "voicekit_moonshine_limiters", default=None)


def model_key(model: str) -> tuple[str, str]:
    """The key of a Moonshine model in :data:`voicekit.modelcache.MODELS`."""
    return ("moonshine", model)


def _build(model: str) -> _Model:
    from moonshine_voice import ModelArch, Transcriber, get_model_path

    arch = {"tiny-en": ModelArch.TINY, "base-en": ModelArch.BASE}.get(model)
    path = get_model_path(model)
    if arch is None or not path.exists():
        raise ConfigError(
            f"moonshine model {model!r} is not installed; the wheel ships 'tiny-en'"
        )
    with _CONSTRUCT:
        # vad_threshold=0 turns Moonshine's own segmentation off: voicekit's VAD cuts utterances.
        transcriber = Transcriber(str(path), arch, options={"vad_threshold": "0"})
    return _Model(model, transcriber)


def load_model(model: str) -> _Model:
    """The process-wide Moonshine model (loaded on first use, once, whatever the thread)."""
    return shared_model(model_key(model), lambda: _build(model))


def _decode(transcriber: Any, audio: npt.NDArray[np.float32]) -> str:
    if len(audio) < RATE // 10:  # under 100 ms: nothing a person could have said
        return ""
    try:
        transcript = transcriber.transcribe_without_streaming(audio, RATE)
    except Exception as exc:
        raise ASRError(f"moonshine failed to decode an utterance: {exc}") from exc
    return " ".join(line.text.strip() for line in transcript.lines if line.text.strip())


class MoonshineASR:
    """Offline English recognition with the Moonshine tiny model that ships in its wheel."""

    capabilities: ClassVar[ASRCapabilities] = ASRCapabilities(
        name="moonshine",
        family="moonshine",
        mode="streaming",
        api="local",
        languages=("en",),
        partials=True,
        word_timestamps=False,
        sample_rates=(RATE,),
        offline=True,
        notes="embedded default; finals per VAD-endpointed utterance, partials by re-decoding",
        measured_wer=0.03,  # tests/cli/test_cli.py::test_transcribe_librivox_word_error_rate (2.8 %)
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("model", "enum", "tiny-en", "Moonshine model (the wheel ships tiny-en)",
               choices=("tiny-en", "base-en")),
        Option("partial_interval", "float", 0.5, "seconds between partial results (0 turns partials off)",
               minimum=0.0),
        Option("max_utterance_s", "float", 25.0, "longest utterance decoded in one piece, seconds",
               minimum=1.0),
    )

    def __init__(self, model: str = "tiny-en", partial_interval: float = 0.5,
                 max_utterance_s: float = 25.0) -> None:
        if partial_interval < 0:
            raise ConfigError("partial_interval must be >= 0 (0 turns partials off)")
        if max_utterance_s <= 1:
            raise ConfigError("max_utterance_s must be more than 1 second")
        self.model = model
        self.partial_interval = partial_interval
        self.max_utterance_s = max_utterance_s

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[_Stream]:
        if config.sample_rate != RATE:
            raise ConfigError(f"moonshine takes {RATE} Hz audio, not {config.sample_rate} Hz")
        model = await trio.to_thread.run_sync(load_model, self.model)
        send, recv = trio.open_memory_channel[TranscriptResult](64)
        stream = _Stream(self, model, send, recv)
        async with trio.open_nursery() as nursery:
            stream._nursery = nursery
            nursery.start_soon(stream._worker)
            try:
                yield stream
            finally:
                nursery.cancel_scope.cancel()


class _Stream:
    def __init__(self, engine: MoonshineASR, model: _Model,
                 send: trio.MemorySendChannel[TranscriptResult],
                 recv: trio.MemoryReceiveChannel[TranscriptResult]) -> None:
        self._engine = engine
        self._model = model
        self._limiter = model.limiter()
        self._send = send
        self._recv = recv
        self._nursery: trio.Nursery | None = None
        self._chunks: list[npt.NDArray[np.float32]] = []
        self._samples = 0
        self._start: float | None = None
        self._utterance = 0
        self._next_partial = math.inf
        self._partial_busy = False
        # utterances waiting for their final decode, in order (bounded: backpressure on the session)
        self._work_send, self._work_recv = trio.open_memory_channel[
            tuple[int, npt.NDArray[np.float32], float, float]](8)
        self._finished = False

    @property
    def _open(self) -> bool:
        return self._start is not None

    async def send_audio(self, frame: AudioFrame) -> None:
        if frame.sample_rate != RATE:
            raise ASRError(f"moonshine stream got {frame.sample_rate} Hz audio; it takes {RATE} Hz")
        if not self._open:
            return
        self._chunks.append(frame.to_float_mono())
        self._samples += frame.samples
        dur = self._samples / RATE
        if dur >= self._engine.max_utterance_s:
            end = self._start + dur if self._start is not None else frame.end
            await self._close_utterance(end)
            self._begin(end)
        elif dur >= self._next_partial:
            self._next_partial = dur + self._engine.partial_interval
            if not self._partial_busy and self._nursery is not None:
                self._partial_busy = True
                self._nursery.start_soon(self._partial, self._utterance, self._audio(), self._start)

    async def speech_started(self, t: float) -> None:
        if self._open:
            return
        self._begin(t)

    async def speech_ended(self, t: float) -> None:
        if self._open:
            await self._close_utterance(t)

    async def finish(self) -> None:
        if self._finished:
            return
        if self._open:
            await self._close_utterance(None)
        self._finished = True
        await self._work_send.aclose()

    def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        return self._recv.__aiter__()

    def _begin(self, t: float) -> None:
        self._start = t
        self._chunks = []
        self._samples = 0
        self._utterance += 1
        interval = self._engine.partial_interval
        self._next_partial = interval if interval > 0 else math.inf

    def _audio(self) -> npt.NDArray[np.float32]:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)

    async def _close_utterance(self, end: float | None) -> None:
        assert self._start is not None
        start = self._start
        audio = self._audio()
        if end is None:
            end = start + len(audio) / RATE
        self._start = None
        self._chunks = []
        await self._work_send.send((self._utterance, audio, start, end))

    async def _partial(self, utt: int, audio: npt.NDArray[np.float32], start: float | None) -> None:
        try:
            async with self._limiter:
                if utt != self._utterance or not self._open:
                    return  # the utterance ended while we waited: its final is coming
                text = await trio.to_thread.run_sync(self._model.decode, audio)
            if text and utt == self._utterance and self._open:
                try:
                    await self._send.send(TranscriptResult(text, False, utt, start, None, language="en"))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass  # the stream finished while this partial was decoding
        finally:
            self._partial_busy = False

    async def _worker(self) -> None:
        async with self._send, self._work_recv:
            async for utt, audio, start, end in self._work_recv:
                async with self._limiter:
                    text = await trio.to_thread.run_sync(self._model.decode, audio)
                await self._send.send(TranscriptResult(text, True, utt, start, end, language="en"))
