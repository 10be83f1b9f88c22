"""Deterministic ASR and TTS plugins for tests (no threads, no models)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import ClassVar

import numpy as np
import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult, Word
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ASRError
from voicekit.tts.base import TTSCapabilities


class FakeASR:
    """Answers the n-th utterance with the n-th scripted text.

    Partials grow word by word, one word per ``partial_every`` seconds of utterance audio;
    the final arrives at ``speech_ended`` (after ``latency`` seconds on trio's clock). Word
    times are spread evenly over the utterance. Past the end of the script it answers "".
    """

    capabilities: ClassVar[ASRCapabilities] = ASRCapabilities(
        name="fake", family="testing", languages=("en", "zh", "ja"), word_timestamps=True)

    def __init__(self, script: Iterable[str] = (), *, partial_every: float = 0.2, latency: float = 0.0,
                 fail_after_utterances: int | None = None) -> None:
        self.script = list(script)
        self.partial_every = partial_every
        self.latency = latency
        self.fail_after_utterances = fail_after_utterances
        self.configs: list[ASRConfig] = []

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[_FakeStream]:
        self.configs.append(config)
        yield _FakeStream(self)


class _FakeStream:
    # every result is sent during one of the stream's own calls (voicekit.asr.base)
    delivers_inline = True

    def __init__(self, engine: FakeASR) -> None:
        self.engine = engine
        self._send, self._recv = trio.open_memory_channel[TranscriptResult](256)
        self._utt = 0
        self._start: float | None = None
        self._heard = 0.0
        self._shown = 0

    def _words(self) -> list[str]:
        i = self._utt - 1
        return self.engine.script[i].split() if 0 <= i < len(self.engine.script) else []

    async def send_audio(self, frame: AudioFrame) -> None:
        if self._start is None:
            return
        self._heard += frame.duration
        n = int(self._heard / self.engine.partial_every) if self.engine.partial_every > 0 else 0
        words = self._words()
        if n > self._shown and self._shown < len(words):
            self._shown = min(n, len(words))
            await self._put(TranscriptResult(" ".join(words[: self._shown]), False, self._utt, self._start))

    async def speech_started(self, t: float) -> None:
        if self._start is not None:
            return
        self._utt += 1
        limit = self.engine.fail_after_utterances
        if limit is not None and self._utt > limit:
            raise ASRError(f"fake ASR scripted to fail after {limit} utterances")
        self._start, self._heard, self._shown = t, 0.0, 0

    async def speech_ended(self, t: float) -> None:
        if self._start is None:
            return
        start, self._start = self._start, None
        if self.engine.latency:
            await trio.sleep(self.engine.latency)
        words = self._words()
        step = (t - start) / max(len(words), 1)
        timed = tuple(Word(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(words))
        await self._put(TranscriptResult(" ".join(words), True, self._utt, start, t, timed, language="en"))

    async def _put(self, result: TranscriptResult) -> None:
        try:
            self._send.send_nowait(result)  # room in the channel: no task switch
        except trio.WouldBlock:
            await self._send.send(result)

    async def finish(self) -> None:
        if self._start is not None:
            await self.speech_ended(self._start + self._heard)
        await self._send.aclose()

    def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        return self._recv.__aiter__()


class FakeTTS:
    """Speaks ``seconds_per_word`` of a quiet tone per word, in ``chunk_ms`` chunks, produced at
    ``speed`` times real time on trio's clock (0 = instantly)."""

    capabilities: ClassVar[TTSCapabilities] = TTSCapabilities(name="fake", sample_rate=16000)

    def __init__(self, seconds_per_word: float = 0.3, chunk_ms: int = 20, speed: float = 0.0,
                 sample_rate: int = 16000) -> None:
        self.seconds_per_word = seconds_per_word
        self.chunk_ms = chunk_ms
        self.speed = speed
        self.sample_rate = sample_rate
        self.spoken: list[str] = []

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioFrame]:
        self.spoken.append(text)
        total = round(len(text.split()) * self.seconds_per_word * self.sample_rate)
        chunk = self.sample_rate * self.chunk_ms // 1000
        t = np.arange(total) / self.sample_rate
        audio = (np.sin(2 * np.pi * 440 * t) * 3000).astype(np.int16)
        for i in range(0, total, chunk):
            piece = audio[i : i + chunk]
            if self.speed:
                await trio.sleep(len(piece) / self.sample_rate / self.speed)
            else:
                await trio.lowlevel.checkpoint()
            yield AudioFrame(piece.tobytes(), self.sample_rate, 1, i / self.sample_rate)
