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

from voicekit.asr.base import ASRCapabilities, ASRConfig
from voicekit.errors import ConfigError, leaves
from voicekit.logging import get_logger
from voicekit.plugins.options import Option
from voicekit_dashscope.asr.realtime_stream import RealtimeASRStream
from voicekit_dashscope.auth import ApiKey, resolve_api_key
from voicekit_dashscope.client.realtime import (
    Connector,
    realtime_base_url,
    websocket_connector,
)
from voicekit_dashscope.client.task import RetryPolicy, Timeouts
from voicekit_dashscope.options import connection, model_option
from voicekit_dashscope.protocol.realtime import (
    MODELS,
    RealtimeModel,
    SessionConfig,
    Transcription,
    TurnDetection,
    check_session,
    get_realtime_model,
)
from voicekit_dashscope.regions import DEFAULT_REGION, check_model_region

log = get_logger("voicekit.dashscope.realtime")
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


class RealtimeASRBase:
    """What the realtime ASR plugins share: options, the model and its region, the session they
    ask for; :meth:`open_stream` gives a :class:`~voicekit_dashscope.asr.realtime_stream.RealtimeASRStream`."""

    family: ClassVar[str]
    default_model: ClassVar[str]
    capabilities: ASRCapabilities  # the class's default model; an instance's own chosen model
    options: ClassVar[tuple[Option, ...]]
    uses_response: bool = False  # the final transcript is a model response (Omni prompt-context mode)
    # results a stream holds for a reader that is busy (its hand-over then waits). For tests: 0
    # makes every hand-over wait for the reader, e.g. while a connection fails
    result_queue: int = 512

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


class Qwen3ASRRealtime(RealtimeASRBase):
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


class OmniRealtimeASR(RealtimeASRBase):
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
