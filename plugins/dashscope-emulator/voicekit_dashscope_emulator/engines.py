"""What the emulator transcribes with: a voicekit ASR plugin, or scripted fixtures.

Either way it is an object with ``open_stream(ASRConfig)`` (the voicekit ASR contract), driven
by the emulator's own endpointing (``speech_started`` / ``speech_ended`` markers), because the
real service endpoints on its own.

:class:`FixtureEngine` answers each utterance with a scripted sentence, chosen either by order
(the n-th utterance of a task) or by *tone*: the dominant frequency of the utterance, which stays
the same however the audio is cut — so an utterance re-sent after a reconnect gets the same
sentence. :func:`tone_audio` builds such audio for tests and benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult, Word
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError


@attrs.frozen
class ScriptedSentence:
    text: str
    emotion: str | None = None
    emotion_confidence: float | None = None


def _sentence(v: Any) -> ScriptedSentence:
    if isinstance(v, str):
        return ScriptedSentence(v)
    if isinstance(v, Mapping) and isinstance(v.get("text"), str):
        return ScriptedSentence(v["text"], v.get("emotion"), v.get("emotion_confidence"))
    raise ConfigError(f"a fixture sentence must be a string or {{'text': ...}}, got {v!r}")


class FixtureEngine:
    """Scripted recognition for tests. ``key`` is ``"order"`` or ``"tone"``.

    * order: ``sentences`` is a list; the n-th utterance of each task gets the n-th sentence;
    * tone: ``sentences`` maps a frequency in Hz to a sentence; an utterance gets the sentence of
      the nearest frequency to its own dominant one.

    Partials grow one word per ``partial_every`` seconds of utterance audio.
    """

    capabilities: ClassVar[ASRCapabilities] = ASRCapabilities(
        name="fixtures", family="testing", languages=("en", "zh", "ja"), word_timestamps=False)

    def __init__(self, sentences: Sequence[Any] | Mapping[Any, Any], *, key: str = "order",
                 partial_every: float = 0.3, latency: float = 0.0) -> None:
        if key not in ("order", "tone"):
            raise ConfigError(f"fixture key must be 'order' or 'tone', not {key!r}")
        self.key = key
        self.partial_every = partial_every
        self.latency = latency
        if key == "order":
            if isinstance(sentences, Mapping):
                raise ConfigError("fixtures with key 'order' need a list of sentences")
            self.ordered = [_sentence(s) for s in sentences]
            self.tones: dict[float, ScriptedSentence] = {}
        else:
            if not isinstance(sentences, Mapping):
                raise ConfigError("fixtures with key 'tone' need a mapping of Hz to sentence")
            self.tones = {float(k): _sentence(v) for k, v in sentences.items()}
            self.ordered = []

    @classmethod
    def from_file(cls, path: str | Path) -> FixtureEngine:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read fixtures file {p}: {exc}") from None
        if isinstance(data, list):
            return cls(data)
        if not isinstance(data, dict) or "sentences" not in data:
            raise ConfigError(f"fixtures file {p} must hold a list, or an object with 'sentences'")
        return cls(data["sentences"], key=data.get("key", "order"),
                   partial_every=float(data.get("partial_every", 0.3)))

    def sentence_for(self, index: int, audio: np.ndarray, rate: int) -> ScriptedSentence | None:
        if self.key == "order":
            return self.ordered[index] if index < len(self.ordered) else None
        if not self.tones or audio.size < rate // 50:
            return None
        f = dominant_frequency(audio, rate)
        nearest = min(self.tones, key=lambda k: abs(k - f))
        return self.tones[nearest]

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[_FixtureStream]:
        yield _FixtureStream(self, config.sample_rate)


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    """Peak of the spectrum of (at most 8192 samples from the middle of) ``audio``."""
    loud = np.flatnonzero(np.abs(audio.astype(np.float32)) > 0.1 * float(np.max(np.abs(audio)) or 1))
    if loud.size:
        audio = audio[loud[0]: loud[-1] + 1]
    if audio.size > 8192:
        mid = audio.size // 2
        audio = audio[mid - 4096: mid + 4096]
    a = audio.astype(np.float32)
    spectrum = np.abs(np.fft.rfft(a * np.hanning(a.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * rate / a.size)


class _FixtureStream:
    def __init__(self, engine: FixtureEngine, rate: int) -> None:
        self.engine = engine
        self.rate = rate
        self._send, self._recv = trio.open_memory_channel[TranscriptResult](256)
        self._index = 0
        self._start: float | None = None
        self._chunks: list[np.ndarray] = []
        self._shown = 0
        self._partial_sentence: ScriptedSentence | None = None

    def _audio(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    async def send_audio(self, frame: AudioFrame) -> None:
        if self._start is None:
            return
        self._chunks.append(frame.to_array()[:, 0])
        if self.engine.partial_every <= 0:
            return
        heard = sum(c.size for c in self._chunks) / self.rate
        n = int(heard / self.engine.partial_every)
        if n > self._shown:
            if self._partial_sentence is None:
                self._partial_sentence = self.engine.sentence_for(self._index, self._audio(), self.rate)
            s = self._partial_sentence
            if s is None:
                return
            words = s.text.split()
            if self._shown < len(words) - 1:  # the full text is for the final
                self._shown = min(n, len(words) - 1)
                await self._send.send(TranscriptResult(" ".join(words[: self._shown]), False,
                                                       self._index + 1, self._start))

    async def speech_started(self, t: float) -> None:
        if self._start is None:
            self._start, self._chunks, self._shown, self._partial_sentence = t, [], 0, None

    async def speech_ended(self, t: float) -> None:
        if self._start is None:
            return
        start, self._start = self._start, None
        s = self.engine.sentence_for(self._index, self._audio(), self.rate)
        self._index += 1
        if self.engine.latency:
            await trio.sleep(self.engine.latency)
        if s is None:
            return
        words = s.text.split()
        step = (t - start) / max(len(words), 1)
        timed = tuple(Word(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(words))
        await self._send.send(TranscriptResult(s.text, True, self._index, start, t, timed,
                                               emotion=s.emotion, confidence=s.emotion_confidence))

    async def finish(self) -> None:
        if self._start is not None:
            await self.speech_ended(self._start + sum(c.size for c in self._chunks) / self.rate)
        await self._send.aclose()

    def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        return self._recv.__aiter__()


def tone_audio(segments: Sequence[tuple[float, float]], *, rate: int = 16000, amplitude: float = 0.3,
               ) -> bytes:
    """PCM16 mono audio from ``(frequency_hz, seconds)`` pairs; frequency 0 is silence."""
    parts = []
    for freq, seconds in segments:
        n = round(seconds * rate)
        if freq <= 0:
            parts.append(np.zeros(n, np.int16))
        else:
            t = np.arange(n) / rate
            env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01) if n else t  # 10 ms fades
            parts.append((np.sin(2 * np.pi * freq * t) * env * amplitude * 32767).astype("<i2"))
    return np.concatenate(parts).astype("<i2").tobytes() if parts else b""


def load_plugin_engine(name: str, **kwargs: Any) -> Any:
    """An installed voicekit ASR plugin, by entry-point name (e.g. ``moonshine``)."""
    from voicekit.plugins import load

    cls = load("asr", name)
    if name in ("fun-asr-realtime", "paraformer-realtime"):
        raise ConfigError(f"the emulator cannot transcribe with the cloud plugin {name!r}; use a local engine")
    return cls(**kwargs)
