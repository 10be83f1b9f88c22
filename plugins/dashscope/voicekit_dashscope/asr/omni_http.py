"""Qwen-Omni over HTTP (OpenAI-compatible chat completions, streamed SSE).

Two uses:

* an ASR plugin (entry points ``qwen3.5-omni-plus``, ``qwen3.5-omni-flash``, ``qwen3-omni-flash``):
  utterances cut like :mod:`voicekit_dashscope.asr.nearrealtime`, each sent with a system prompt
  asking for a verbatim transcript and carrying ``ASRConfig.context`` (domain terms, names) —
  prompt-context biasing; text output only;
* a handler backend (:class:`OmniChatHandler`): an assistant fallback that answers the turn with
  the model, streaming the reply text sentence by sentence, keeping the conversation in the
  session context; :meth:`OmniChatHandler.answer_audio` sends audio and gets text and speech back
  (PCM16, 24 kHz, mono).

The Omni models only serve ``stream: true`` requests; the client always streams.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from voicekit.asr.base import ASRCapabilities
from voicekit.plugins.options import Option
from voicekit_dashscope.asr.nearrealtime import Qwen3ASRFlash
from voicekit_dashscope.auth import ApiKey
from voicekit_dashscope.client.compat import ChatResult, CompatClient, wav_data_url
from voicekit_dashscope.options import without
from voicekit_dashscope.protocol.realtime import ASR_LANGUAGES, OMNI3_LANGUAGES
from voicekit_dashscope.regions import DEFAULT_REGION, check_model_region

TRANSCRIBE_PROMPT = ("Transcribe the following audio exactly as spoken. Output only the transcription text. "
                     "Ignore non-speech sounds.")
OMNI_RATE = 24000
_LANGS_35 = ASR_LANGUAGES  # the documented codes (the model lists 113 languages/dialects in all)
_LANGS_3 = OMNI3_LANGUAGES


def _caps(name: str, languages: tuple[str, ...], max_s: float, max_bytes: int) -> ASRCapabilities:
    from voicekit_dashscope.asr.models import guide_record

    return guide_record(ASRCapabilities(
        name=name, family="qwen-omni", mode="near-realtime", api="http", languages=languages, hotwords=False,
        prompt_context=True, emotion=False, diarization=False, word_timestamps=False, partials=False,
        sample_rates=(16000, 24000, 48000, 8000), max_duration_s=max_s, max_file_bytes=max_bytes,
        regions=("cn-beijing", "ap-southeast-1"), offline=False,
        notes="Omni as a transcriber: system-prompt context, no timestamps/hotwords/diarization"))


class OmniHTTPASR(Qwen3ASRFlash):
    """An Omni model as a near-real-time recognizer (prompt-context transcription)."""

    capabilities: ClassVar[ASRCapabilities] = _caps("qwen3.5-omni-plus", _LANGS_35, 3 * 3600.0, 2 * 1024 ** 3)
    model: ClassVar[str] = "qwen3.5-omni-plus"
    options: ClassVar[tuple[Option, ...]] = (
        *without(Qwen3ASRFlash.options, "api", "model"),
        Option("prompt", "str", TRANSCRIBE_PROMPT, "system prompt that asks the model for a verbatim transcript"),
    )

    def __init__(self, api_key: str | ApiKey | None = None, *, region: str = DEFAULT_REGION,
                 base_url: str | None = None, prompt: str = TRANSCRIBE_PROMPT, **kwargs: Any) -> None:
        check_model_region(self.model, region)  # before the compat check: the model is not in the US at all
        super().__init__(api_key, region=region, base_url=base_url, api="compat", **kwargs)
        self.prompt = prompt
        self.model_name = self.model

    async def recognize(self, pcm: bytes, rate: int, *, context: str | None = None,
                        language: str | None = None) -> ChatResult:
        system = self.prompt + (f"\nContext (names and terms that may occur): {context}" if context else "")
        if language:
            system += f"\nThe speech is in language '{language}'."
        body = {"model": self.model_name, "modalities": ["text"], "stream_options": {"include_usage": True},
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": [
                                 {"type": "input_audio", "input_audio": {"data": wav_data_url(pcm, rate),
                                                                         "format": "wav"}},
                                 {"type": "text", "text": "Transcribe this audio."}]}]}
        res = await self.client.chat(body)
        return ChatResult(res.text, b"", language or res.language, None, res.usage)


class Qwen35OmniFlashHTTP(OmniHTTPASR):
    capabilities: ClassVar[ASRCapabilities] = _caps("qwen3.5-omni-flash", _LANGS_35, 3 * 3600.0, 2 * 1024 ** 3)
    model: ClassVar[str] = "qwen3.5-omni-flash"


class Qwen3OmniFlashHTTP(OmniHTTPASR):
    # the docs give both 20 min and 150 s for audio; the safer 150 s is recorded
    capabilities: ClassVar[ASRCapabilities] = _caps("qwen3-omni-flash", _LANGS_3, 150.0, 100 * 1024 ** 2)
    model: ClassVar[str] = "qwen3-omni-flash"


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


class OmniChatHandler:
    """An assistant handler backed by an Omni model over HTTP.

    Use as ``assistant.fallback(OmniChatHandler(...))``: the reply streams sentence by sentence.
    """

    def __init__(self, api_key: str | ApiKey | None = None, *, model: str = "qwen3.5-omni-flash",
                 region: str = DEFAULT_REGION, base_url: str | None = None, instructions: str | None = None,
                 voice: str | None = None, max_history: int = 20) -> None:
        self.client = CompatClient(api_key, region=region, base_url=base_url)
        self.model = model
        self.instructions = instructions or "You are a helpful voice assistant. Answer briefly."
        self.voice = voice or ("Cherry" if model.startswith("qwen3-omni") else "Tina")
        self.max_history = max_history

    def _messages(self, history: list[dict[str, Any]], user: Any) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.instructions}, *history[-self.max_history:],
                {"role": "user", "content": user}]

    async def __call__(self, turn: Any) -> AsyncIterator[str]:
        history: list[dict[str, Any]] = turn.context.setdefault("omni_history", [])
        body = {"model": self.model, "modalities": ["text"], "messages": self._messages(history, turn.text)}
        return self._stream(body, history, turn.text)

    async def _stream(self, body: dict[str, Any], history: list[dict[str, Any]], user: str) -> AsyncIterator[str]:
        pending, full = "", ""
        async for chunk in self.client.stream_chat(body):
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content") or ""
                pending += piece
                full += piece
                parts = _SENTENCE_END.split(pending)
                for sentence in parts[:-1]:
                    if sentence.strip():
                        yield sentence.strip()
                pending = parts[-1]
        if pending.strip():
            yield pending.strip()
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": full.strip()}]

    async def answer_audio(self, pcm: bytes, rate: int, *, speak: bool = True) -> ChatResult:
        """Send an utterance's audio; get the reply text and (with ``speak``) PCM16 24 kHz mono speech."""
        body: dict[str, Any] = {"model": self.model, "modalities": ["text", "audio"] if speak else ["text"],
                                "messages": self._messages([], [{"type": "input_audio", "input_audio": {
                                    "data": wav_data_url(pcm, rate), "format": "wav"}}])}
        if speak:
            body["audio"] = {"voice": self.voice, "format": "wav"}
        return await self.client.chat(body)
