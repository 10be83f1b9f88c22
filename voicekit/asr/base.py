"""The speech-recognition plugin API (entry-point group ``voicekit.asr``).

An ASR plugin is a class with a ``capabilities`` class attribute (an :class:`ASRCapabilities`)
and an ``open_stream`` method. The session calls it like this::

    async with engine.open_stream(ASRConfig(sample_rate=16000)) as stream:
        await stream.send_audio(frame)        # every frame, in order
        await stream.speech_started(t)        # VAD markers, audio seconds
        await stream.speech_ended(t)
        ...
        await stream.finish()                 # no more audio: flush the last result
        async for result in stream: ...       # partial and final transcripts

Engines that endpoint on their own (cloud services) may ignore the VAD markers; engines that
decode per utterance (Moonshine, PocketSphinx) use them to cut utterances. ``finish()`` must make
the stream yield every pending final and then stop iterating.

Optional: a stream whose results are all put into a ``trio`` memory channel *during its own
calls* (``send_audio``, ``speech_started``, ``speech_ended``, ``finish``; never from a thread or a
task of its own), and whose ``__aiter__`` returns that channel's receiving end, may set the
attribute ``delivers_inline = True``. The session then takes each result right after the call
that produced it, in the task that feeds the stream, instead of waking a recognizer task: the
turn's handler is called one scheduler round sooner. Put results with ``send_nowait`` where the
channel has room, so the call does not yield for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:  # annotations only: importing the plugin API does not load numpy
    from voicekit.audio.frame import AudioFrame

Mode = Literal["streaming", "file", "near-realtime"]
Api = Literal["local", "websocket", "http"]


def _tuple(x: Sequence[str] | Sequence[int]) -> tuple:  # type: ignore[type-arg]
    return tuple(x)


def _strs(x: Iterable[str]) -> tuple[str, ...]:
    return tuple(x)


def _words(x: Iterable[Word]) -> tuple[Word, ...]:
    return tuple(x)


def _pairs(x: Iterable[tuple[str, Iterable[str]]] | dict[str, Iterable[str]]
           ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    items = x.items() if isinstance(x, dict) else x
    return tuple((str(k), tuple(v)) for k, v in items)


@attrs.frozen
class ASRCapabilities:
    """What an engine can do, as data. The model chooser and ``voicekit plugins`` read it."""

    name: str
    family: str
    mode: Mode = "streaming"
    api: Api = "local"
    languages: tuple[str, ...] = attrs.field(default=("en",), converter=_tuple)
    hotwords: bool = False
    prompt_context: bool = False
    grammar: bool = False
    emotion: bool = False
    diarization: bool = False
    word_timestamps: bool = False
    partials: bool = True
    sample_rates: tuple[int, ...] = attrs.field(default=(16000,), converter=_tuple)
    max_duration_s: float | None = None
    max_file_bytes: int | None = None
    regions: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    offline: bool = True
    server_endpointing: bool = False
    notes: str = ""
    # word error rate on the LibriVox clips of the pocketsphinx source package, as measured by
    # voicekit's own tests and benchmarks (None: not measured). The chooser uses it to break ties.
    measured_wer: float | None = None
    # where a feature is narrower than the engine: feature name ("hotwords", "openai_compatible", ...)
    # → the regions it works in, e.g. (("hotwords", ("cn-beijing",)),). Absent: wherever the engine is.
    feature_regions: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(default=(), converter=_pairs)
    semantic_interruption: bool = False  # the server decides interruptions by meaning (realtime Omni)
    openai_compatible: bool = False  # reachable through an OpenAI-compatible HTTP API
    # the vendor's own standing of the engine: "current", "previous" (generation) or "legacy";
    # and its position in the vendor's guide (lower first). The chooser breaks ties with both.
    generation: Literal["current", "previous", "legacy"] = "current"
    vendor_rank: int | None = None

    def feature_available(self, feature: str, region: str | None) -> bool:
        """Whether ``feature`` works in ``region`` (``None``: anywhere the engine is offered)."""
        if region is None:
            return True
        for name, regions in self.feature_regions:
            if name == feature:
                return region in regions
        return True

    @property
    def preferred_rate(self) -> int:
        return 16000 if 16000 in self.sample_rates else self.sample_rates[0]


@attrs.frozen
class Word:
    """One recognized word; times are audio seconds from the start of the stream."""

    text: str
    start: float | None = None
    end: float | None = None
    confidence: float | None = None
    speaker: str | None = None


@attrs.frozen
class TranscriptResult:
    """A partial or final transcript of one utterance."""

    text: str
    is_final: bool
    utterance_id: int = 0
    start: float | None = None
    end: float | None = None
    words: tuple[Word, ...] = attrs.field(default=(), converter=_words)
    language: str | None = None
    emotion: str | None = None
    speaker: str | None = None
    confidence: float | None = None


@attrs.frozen
class ASRConfig:
    """What the session asks of a stream. Unsupported fields are ignored by the engine."""

    sample_rate: int = 16000
    language: str | None = None
    hotwords: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    context: str | None = None
    grammar: str | None = None  # JSGF text, for command-mode engines
    keywords: tuple[str, ...] = attrs.field(default=(), converter=_strs)


@runtime_checkable
class ASRStream(Protocol):
    async def send_audio(self, frame: AudioFrame) -> None: ...
    async def speech_started(self, t: float) -> None: ...
    async def speech_ended(self, t: float) -> None: ...
    async def finish(self) -> None: ...
    def __aiter__(self) -> AsyncIterator[TranscriptResult]: ...


@runtime_checkable
class ASREngine(Protocol):
    capabilities: ClassVar[ASRCapabilities]

    def open_stream(self, config: ASRConfig) -> AbstractAsyncContextManager[ASRStream]: ...
