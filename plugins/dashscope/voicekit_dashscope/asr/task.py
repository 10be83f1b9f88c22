"""ASR plugins for the task-protocol models: Fun-ASR and Paraformer real-time.

Entry points (group ``voicekit.asr``): ``fun-asr-realtime`` (:class:`FunASRRealtime`, also the
dated ``fun-asr-realtime-YYYY-MM-DD`` snapshots and ``fun-asr-flash-8k-realtime`` via ``model=``)
and ``paraformer-realtime`` (:class:`ParaformerRealtime`: ``paraformer-realtime-v2`` and
``paraformer-realtime-8k-v2``).

The server endpoints on its own, so the session's VAD markers are ignored; every audio frame is
streamed, and partial and final sentences come back with word timings (and an emotion tag on
``paraformer-realtime-8k-v2``). A ``hotwords`` word list is turned into a managed vocabulary
(created once, reused by content). Failures are retried as described in
:mod:`voicekit_dashscope.client.task`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import attrs
import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ASRError, ConfigError, leaves
from voicekit.plugins.options import Option
from voicekit_dashscope.asr.models import MODELS, ModelSpec, get_model
from voicekit_dashscope.auth import ApiKey, resolve_api_key
from voicekit_dashscope.client.task import Recognizer, RetryPolicy, Timeouts
from voicekit_dashscope.options import connection, model_option
from voicekit_dashscope.protocol.task import RecognitionParameters
from voicekit_dashscope.regions import DEFAULT_REGION, Endpoints, check_model_region
from voicekit_dashscope.vocabulary import Hotword, ManagedVocabulary, VocabularyClient


def _options(family: str, default_model: str, region: str = DEFAULT_REGION) -> tuple[Option, ...]:
    models = tuple(n for n, m in MODELS.items() if m.family == family)
    return (
        model_option(default_model, models),
        *connection(region),
        Option("sample_rate", "int", None, "audio rate sent to the service (default: the model's preferred "
                                           "rate; the session resamples to it)", minimum=8000, maximum=48000),
        Option("vocabulary_id", "str", None, "hotword list id (voicekit hotwords create)"),
        Option("hotwords", "list", (), "words to favour; a managed vocabulary is created from them"),
        Option("hotword_weight", "int", 4, "weight of the hotwords, 1-5", minimum=1, maximum=5),
        Option("semantic_punctuation", "bool", None, "cut sentences by meaning instead of by silence"),
        Option("max_sentence_silence_ms", "int", None, "silence that ends a sentence, ms (200-6000)",
               minimum=200, maximum=6000),
        Option("multi_threshold_mode", "bool", None, "avoid cutting overly long sentences"),
        Option("language_hints", "list", None, "language codes to expect, e.g. en or zh,en"),
        Option("disfluency_removal", "bool", None, "drop filler words (Paraformer)"),
        Option("heartbeat", "bool", None, "keep the connection through long silences"),
        Option("speech_noise_threshold", "float", None, "noise gate, -1.0 to 1.0 (Fun-ASR)",
               minimum=-1.0, maximum=1.0),
        Option("punctuation_prediction", "bool", None, "add punctuation"),
        Option("inverse_text_normalization", "bool", None, "write numbers as digits"),
        Option("special_word_filter", "json", None, "words to filter, JSON as the service documents it (Fun-ASR)"),
        Option("context", "json", None, "conversation context as a JSON list of messages (fun-asr-realtime)"),
        Option("extra_parameters", "json", None, "more request parameters, as a JSON object"),
        Option("append_ms", "int", 100, "audio per message, ms: shorter frames are gathered (fewer messages, "
                                        "at most this much added delay)", minimum=10, maximum=1000),
        Option("retry", "int", 5, "reconnect attempts after failures in a row", minimum=0, maximum=100,
               convert=lambda n: RetryPolicy(max_retries=n)),
        Option("timeouts", "object", None, "a voicekit_dashscope.client.task.Timeouts (Python only)"),
        Option("max_buffer_s", "float", 300.0, "audio kept for replay after a reconnect, seconds",
               minimum=1.0, maximum=3600.0),
    )


def _check_append_ms(ms: int) -> int:
    if not 10 <= ms <= 1000:
        raise ConfigError(f"append_ms must be 10-1000 ms, not {ms}")
    return ms


class _TaskProtocolASR:
    family: ClassVar[str]
    default_model: ClassVar[str]
    capabilities: ASRCapabilities  # the class's default model; an instance's own chosen model
    options: ClassVar[tuple[Option, ...]]

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | ApiKey | None = None,
        region: str = DEFAULT_REGION,
        workspace: str | None = None,
        base_url: str | None = None,
        vocabulary_id: str | None = None,
        hotwords: Sequence[str | Hotword | Mapping[str, Any]] = (),
        hotword_weight: int = 4,
        semantic_punctuation: bool | None = None,
        max_sentence_silence_ms: int | None = None,
        multi_threshold_mode: bool | None = None,
        language_hints: Sequence[str] | None = None,
        disfluency_removal: bool | None = None,
        heartbeat: bool | None = None,
        speech_noise_threshold: float | None = None,
        punctuation_prediction: bool | None = None,
        inverse_text_normalization: bool | None = None,
        special_word_filter: Any = None,
        context: Sequence[Mapping[str, Any]] | None = None,
        extra_parameters: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        max_buffer_s: float = 300.0,
        sample_rate: int | None = None,
        append_ms: int = 100,
    ) -> None:
        self.model = model or self.default_model
        self.spec: ModelSpec = get_model(self.model, self.family)
        self.capabilities = self._rate_capabilities(sample_rate)
        self.api_key = resolve_api_key(api_key)
        check_model_region(self.model, region)  # also with base_url: the region decides what the key reaches
        self.endpoints = Endpoints.resolve(region, workspace=workspace, base_url=base_url)
        self.workspace = workspace
        self.base_url = base_url
        self.region = region
        if disfluency_removal is not None and not self.spec.disfluency_removal:
            raise ConfigError(f"disfluency_removal is a Paraformer setting; {self.model} does not take it")
        if speech_noise_threshold is not None and not self.spec.noise_threshold:
            raise ConfigError(f"speech_noise_threshold is a Fun-ASR setting; {self.model} does not take it")
        if special_word_filter is not None and not self.spec.special_word_filter:
            raise ConfigError(f"special_word_filter is a Fun-ASR setting; {self.model} does not take it")
        if context is not None and not self.spec.context:
            raise ConfigError(f"context is supported by fun-asr-realtime and its 2025-11-07 snapshot, "
                              f"not {self.model}")
        if (vocabulary_id or hotwords) and not self.spec.hotwords:
            raise ConfigError(f"{self.model} does not document hotword vocabularies")
        if language_hints is not None:
            bad = [code for code in language_hints if code not in self.spec.languages]
            if bad:
                raise ConfigError(f"{self.model} does not know language(s) {bad}; use {self.spec.languages}")
        self.vocabulary_id = vocabulary_id
        self.hotwords = tuple(hotwords)
        self.hotword_weight = hotword_weight
        self.settings = dict(
            semantic_punctuation_enabled=semantic_punctuation,
            max_sentence_silence=max_sentence_silence_ms,
            multi_threshold_mode_enabled=multi_threshold_mode,
            language_hints=None if language_hints is None else tuple(language_hints),
            disfluency_removal_enabled=disfluency_removal,
            heartbeat=heartbeat,
            speech_noise_threshold=speech_noise_threshold,
            punctuation_prediction_enabled=punctuation_prediction,
            inverse_text_normalization_enabled=inverse_text_normalization,
            special_word_filter=special_word_filter,
        )
        self.context = list(context) if context is not None else None
        self.extra_parameters = dict(extra_parameters or {})
        # validate the parameters once, now, so a bad setting fails at construction
        self._parameters(self.spec.sample_rates[0] if not self.spec.any_rate else 16000, None, None)
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.max_buffer_s = max_buffer_s
        self.append_ms = _check_append_ms(append_ms)
        self._managed: dict[tuple[str, ...], ManagedVocabulary] = {}

    def _rate_capabilities(self, sample_rate: int | None) -> ASRCapabilities:
        """The chosen model's record; with ``sample_rate``, that rate only (the session resamples to it)."""
        caps = self.spec.capabilities()
        if sample_rate is None:
            return caps
        if not self.spec.any_rate and sample_rate not in self.spec.sample_rates:
            raise ConfigError(f"{self.model} takes {', '.join(map(str, self.spec.sample_rates))} Hz audio, "
                              f"not sample_rate={sample_rate}")
        return attrs.evolve(caps, sample_rates=(sample_rate,))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, url={self.endpoints.inference_url!r}, "
                f"api_key={self.api_key!r})")

    @classmethod
    def models(cls) -> list[ASRCapabilities]:
        """Capability records of every model of the family."""
        return [m.capabilities() for m in MODELS.values() if m.family == cls.family]

    def model_capabilities(self) -> ASRCapabilities:
        return self.spec.capabilities()

    def _parameters(self, rate: int, vocabulary_id: str | None, language: str | None) -> RecognitionParameters:
        settings = dict(self.settings)
        if settings["language_hints"] is None and language:
            code = language.split("-")[0].lower()
            if code in self.spec.languages:
                settings["language_hints"] = (code,)
        try:
            return RecognitionParameters(format="pcm", sample_rate=rate, vocabulary_id=vocabulary_id,
                                         extra=self.extra_parameters, **settings)
        except ValueError as exc:
            raise ConfigError(f"{self.model}: {exc}") from None

    def vocabulary_client(self) -> VocabularyClient:
        return VocabularyClient(self.api_key, region=self.region, workspace=self.workspace,
                                base_url=self.base_url)

    async def _vocabulary_id(self, extra: Sequence[str]) -> str | None:
        words = [*self.hotwords, *extra]
        if not words:
            return self.vocabulary_id
        if self.vocabulary_id:
            raise ConfigError("give either vocabulary_id or hotwords, not both (the service takes one list)")
        key = tuple(str(w) for w in words)
        managed = self._managed.get(key)
        if managed is None:
            hw = [Hotword(w, self.hotword_weight) if isinstance(w, str) else w for w in words]
            managed = ManagedVocabulary(self.vocabulary_client(), self.model, hw)
            self._managed[key] = managed
        return await managed.ensure()

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[TaskASRStream]:
        rate = config.sample_rate
        if not self.spec.any_rate and rate not in self.spec.sample_rates:
            raise ConfigError(f"{self.model} takes {self.spec.sample_rates} Hz audio, not {rate} Hz "
                              "(the session resamples when the plugin's rate is set)")
        vocabulary_id = await self._vocabulary_id(config.hotwords)
        params = self._parameters(rate, vocabulary_id, config.language)
        task_input: dict[str, Any] = {}
        if self.context is not None:
            task_input["context"] = self.context
        elif config.context and self.spec.context:
            task_input["context"] = [{"role": "user", "content": [{"type": "input_text",
                                                                   "text": config.context[-400:]}]}]
        assert self.api_key is not None
        recognizer = Recognizer(url=self.endpoints.inference_url, api_key=self.api_key, model=self.model,
                                parameters=params, task_input=task_input, workspace=self.workspace,
                                retry=self.retry, timeouts=self.timeouts, max_buffer_s=self.max_buffer_s)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(recognizer.run)
                stream = TaskASRStream(recognizer, rate, self.append_ms)
                try:
                    yield stream
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # the worker never raises, so this is the caller's own error: hand it back unwrapped
            inner = leaves(group)
            if len({id(x) for x in inner}) == 1:
                inner[0].__suppress_context__ = True
                raise inner[0]  # noqa: B904 - keeps the leaf's own __cause__
            raise


class TaskASRStream:
    """An open recognition stream (the voicekit ``ASRStream`` contract)."""

    def __init__(self, recognizer: Recognizer, rate: int, append_ms: int = 100) -> None:
        self.recognizer = recognizer
        self.rate = rate
        self._finished = False
        self._step = max(2, rate * append_ms // 1000 * 2)  # bytes per message
        self._buf = bytearray()  # frames gathered for the next message

    async def send_audio(self, frame: AudioFrame) -> None:
        """Frames shorter than ``append_ms`` are gathered into one message (each message costs
        the client and the service far more than its bytes)."""
        if frame.sample_rate != self.rate or frame.channels != 1:
            raise ASRError(f"stream opened for mono {self.rate} Hz audio got {frame.channels} ch "
                           f"{frame.sample_rate} Hz")
        if not self._buf and len(frame.pcm) >= self._step:
            await self.recognizer.send_audio(frame.pcm)
            return
        self._buf += frame.pcm
        if len(self._buf) >= self._step:
            await self._flush()

    async def _flush(self) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            await self.recognizer.send_audio(data)

    async def update_context(self, context: list[Mapping[str, Any]]) -> None:
        """Fun-ASR: replace the conversation context mid-stream (a ``continue-task`` message)."""
        await self._flush()
        await self.recognizer.update_context(context)

    async def speech_started(self, t: float) -> None:
        """Ignored: the service endpoints on its own."""

    async def speech_ended(self, t: float) -> None:
        """Ignored: the service endpoints on its own."""

    async def finish(self) -> None:
        if not self._finished:
            self._finished = True
            await self._flush()
            await self.recognizer.finish()

    async def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        async for result in self.recognizer.results():
            yield result
        if self.recognizer.error is not None:
            raise self.recognizer.error


class FunASRRealtime(_TaskProtocolASR):
    """Fun-ASR real-time recognition (Mandarin, dialects, English, Japanese; hotwords, context)."""

    family = "fun-asr"
    default_model = "fun-asr-realtime"
    capabilities = MODELS["fun-asr-realtime"].capabilities()
    options = _options("fun-asr", "fun-asr-realtime")


class ParaformerRealtime(_TaskProtocolASR):
    """Paraformer real-time recognition v2 (any sample rate; 8 kHz telephony with emotion)."""

    family = "paraformer"
    default_model = "paraformer-realtime-v2"
    capabilities = MODELS["paraformer-realtime-v2"].capabilities()
    options = _options("paraformer", "paraformer-realtime-v2", "cn-beijing")

    def __init__(self, model: str | None = None, *, region: str = "cn-beijing", **kwargs: Any) -> None:
        super().__init__(model, region=region, **kwargs)
