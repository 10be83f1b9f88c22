"""The emulated synchronous audio APIs: OpenAI-compatible chat completions and the native form.

* ``POST /compatible-mode/v1/chat/completions`` — ``qwen3-asr-flash`` (stream or not) and the Omni
  models ``qwen3.5-omni-plus``, ``qwen3.5-omni-flash``, ``qwen3-omni-flash`` (``stream`` must be
  true, like the service). SSE framing ``data: {json}`` + blank line, ending ``data: [DONE]``; a
  usage chunk with ``choices: []`` only when ``stream_options.include_usage`` is set.
* ``POST /api/v1/services/aigc/multimodal-generation/generation`` — ``qwen3-asr-flash`` in the
  DashScope-native form (``X-DashScope-SSE: enable`` for native SSE events).

The audio (a ``data:`` URL with Base64 WAV, or an http(s) URL) is decoded, endpointed and
transcribed by the emulator's engine, with the system message as ``ASRConfig.context``.
The emulated Omni model answers with the transcript of the audio (it is the transcriber the
emulator has), and a text-only turn with ``You said: <text>. Noted.``; with ``modalities``
containing ``audio`` it also sends tone audio, PCM16 24 kHz
mono in Base64 fragments. The emulator's HTTP server writes each response in one piece, so the
SSE events arrive together; clients must not rely on their timing.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from typing import Any

import httpx
import numpy as np

from voicekit_dashscope.protocol.compat import (
    ASR_MODELS,
    COMPAT_PATH,
    MAX_ASR_SECONDS,
    NATIVE_PATH,
    OMNI_MODELS,
    OMNI_RATE,
    OMNI_STREAM_ONLY,
    compat_error_body,
    native_error_body,
)
from voicekit_dashscope.protocol.compat import audio_of as _audio_of
from voicekit_dashscope.protocol.compat import text_of as _text_of
from voicekit_dashscope.regions import emulator_refuses
from voicekit_dashscope_emulator.audio import FileError, decode_wav, resample_to_engine, transcribe_channel
from voicekit_dashscope_emulator.http import HttpRequest, HttpResponse
from voicekit_dashscope_emulator.task import ENGINE_RATE
from voicekit_dashscope_emulator.urls import UrlPolicy


def _compat_error(status: int, code: str, message: str, kind: str = "invalid_request_error") -> HttpResponse:
    return HttpResponse.json(status, compat_error_body(code, message, str(uuid.uuid4()), kind))


def _native_error(status: int, code: str, message: str) -> HttpResponse:
    return HttpResponse.json(status, native_error_body(code, message, str(uuid.uuid4())))


class _ChatReply:
    """One chat-completions answer, as a completion or as SSE chunks."""

    def __init__(self, model: str, omni: bool, text: str, language: str | None, emotion: str | None,
                 seconds: float) -> None:
        self.model = model
        self.omni = omni
        self.text = text
        self.cid, self.created = f"chatcmpl-{uuid.uuid4()}", int(time.time())
        self.annotations = [{"type": "audio_info", "language": language, "emotion": emotion or "neutral"}]
        self.usage = self._usage(seconds)

    def _usage(self, seconds: float) -> dict[str, Any]:
        audio_tokens = max(1, math.ceil(seconds)) * (7 if self.model.startswith("qwen3.5") else
                                                     25 if not self.omni else 13)
        words = len(self.text.split())
        usage: dict[str, Any] = {"prompt_tokens": audio_tokens, "completion_tokens": words,
                                 "total_tokens": audio_tokens + words,
                                 "prompt_tokens_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
                                 "completion_tokens_details": {"text_tokens": words}}
        if not self.omni:
            usage["seconds"] = max(1, int(seconds))
        return usage

    def completion(self) -> dict[str, Any]:
        return {"id": self.cid, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": self.text, "annotations": self.annotations}}],
                "usage": self.usage}

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return "data: " + json.dumps({"id": self.cid, "object": "chat.completion.chunk", "created": self.created,
                                      "model": self.model, "choices": choices, "usage": None,
                                      "system_fingerprint": None, **extra}, ensure_ascii=False) + "\n\n"

    async def chunks(self, body: dict[str, Any]) -> list[str]:
        """The SSE events: role, the text word by word, Omni audio if asked, stop, usage if asked, [DONE]."""
        events = [self.chunk({"role": "assistant", "content": ""})]
        for i, word in enumerate(self.text.split()):
            delta: dict[str, Any] = {"content": (" " if i else "") + word}
            if i == 0 and not self.omni:
                delta["annotations"] = self.annotations
            events.append(self.chunk(delta))
        if self.omni and "audio" in (body.get("modalities") or ["text"]):
            events += await self._audio_chunks()
        events.append(self.chunk({"content": ""}, "stop"))
        if isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage"):
            events.append(self.chunk(None, usage=self.usage))
        events.append("data: [DONE]\n\n")
        return events

    async def _audio_chunks(self) -> list[str]:
        from voicekit_dashscope_emulator.omni import ToneVoice

        aid = f"audio_{self.cid.removeprefix('chatcmpl-')}"
        return [self.chunk({"audio": {"data": base64.b64encode(pcm).decode(), "id": aid,
                                      "expires_at": self.created + 86400}})
                for _, pcm in await ToneVoice().render(self.text or "okay", OMNI_RATE)]


class CompatService:
    region: str | None = None  # the region emulated (None: all); set by the emulator
    def __init__(self, *, engine: Any, owner: Any, vad: str = "webrtc", stats: dict[str, int] | None = None) -> None:
        self.engine = engine
        self.owner = owner
        self.vad = vad
        self.stats = stats if stats is not None else {}

    async def _load(self, ref: str) -> np.ndarray:
        if ref.startswith("data:"):
            _, _, b64 = ref.partition(",")
            try:
                data = base64.b64decode(b64, validate=False)
            except ValueError:
                raise FileError("InvalidParameter", "input_audio data is not valid Base64") from None
        elif ref.startswith(("http://", "https://")):
            policy = getattr(self, "url_policy", None) or UrlPolicy()  # loopback only unless allowed
            if not policy.allows(ref):
                raise FileError("InvalidParameter", policy.refusal(ref))
            try:
                async with httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False) as client:
                    resp = await client.get(ref)
            except httpx.HTTPError:
                raise FileError("InvalidParameter", "The audio URL cannot be downloaded.") from None
            if resp.status_code != 200:
                raise FileError("InvalidParameter", f"The audio URL answered HTTP {resp.status_code}.")
            data = resp.content
        else:
            raise FileError("InvalidParameter", "input_audio data must be a data: URL or an http(s) URL")
        audio, rate = decode_wav(data)
        if audio.shape[0] / rate > MAX_ASR_SECONDS:
            raise FileError("AUDIO_DURATION_TOO_LONG",
                             f"audio duration ({audio.shape[0] * 1000 / rate:.1f}ms) over service process (300s)")
        return resample_to_engine(audio[:, 0], rate)

    async def _recognize(self, messages: Any, language: str | None) -> tuple[str, str | None, str | None, float]:
        if not isinstance(messages, list) or not messages:
            raise FileError("InvalidParameter", "messages must be a non-empty list")
        context = " ".join(_text_of(m.get("content")) for m in messages
                           if isinstance(m, dict) and m.get("role") == "system").strip() or None
        ref = next((a for m in messages if isinstance(m, dict) and m.get("role") == "user"
                    and (a := _audio_of(m.get("content")))), None)
        if ref is None:
            raise FileError("InvalidParameter", "no input_audio in the user message")
        samples = await self._load(ref)
        finals = await transcribe_channel(self.engine, samples, vad=self.vad, end_silence_ms=400, language=language,
                                          context=context)
        text = " ".join(r.text.strip() for r in finals if r.text.strip())
        emotion = next((r.emotion for r in finals if r.emotion), None)
        lang = language or next((r.language for r in finals if r.language), None)
        if lang is None and getattr(self.engine, "capabilities", None) is not None:
            lang = self.engine.capabilities.languages[0]
        return text, lang, emotion, samples.size / ENGINE_RATE

    @staticmethod
    def _has_audio(messages: Any) -> bool:
        if not isinstance(messages, list) or not messages:
            raise FileError("InvalidParameter", "messages must be a non-empty list")
        return any(isinstance(m, dict) and m.get("role") == "user" and _audio_of(m.get("content"))
                   for m in messages)

    # -- OpenAI-compatible

    async def chat(self, request: HttpRequest) -> HttpResponse:
        if self.owner(request.header("authorization")) is None:
            return _compat_error(401, "invalid_api_key", "Incorrect API key provided.")
        try:
            body = request.json()
        except ValueError:
            return _compat_error(400, "invalid_parameter_error", "request body is not valid JSON")
        model = body.get("model") if isinstance(body, dict) else None
        if (model not in ASR_MODELS and model not in OMNI_MODELS) or emulator_refuses(
                str(model), self.region, openai_compatible=True):
            return _compat_error(404, "model_not_found", f"The model `{model}` does not exist or you do not have "
                                                         "access to it.")
        stream = bool(body.get("stream"))
        omni = model in OMNI_MODELS
        if omni and not stream:
            return _compat_error(400, "invalid_parameter_error", OMNI_STREAM_ONLY)
        opts = body.get("asr_options") if isinstance(body.get("asr_options"), dict) else {}
        try:
            answer = await self._chat_answer(body.get("messages"), omni, opts.get("language"))
        except FileError as exc:
            return _compat_error(400, exc.code, exc.message)
        self.stats["compat_requests"] = self.stats.get("compat_requests", 0) + 1
        reply = _ChatReply(str(model), omni, *answer)
        if not stream:
            return HttpResponse.json(200, reply.completion())
        events = await reply.chunks(body)
        return HttpResponse(200, "".join(events).encode(), "text/event-stream",
                            (("cache-control", "no-cache"),))

    async def _chat_answer(self, messages: Any, omni: bool,
                           language: str | None) -> tuple[str, str | None, str | None, float]:
        """(text, language, emotion, audio seconds) of the answer to ``messages``."""
        if omni and not self._has_audio(messages):
            # no language model here: a text-only Omni turn is answered by echoing the last user text
            last = next((_text_of(m.get("content")) for m in reversed(messages)
                         if isinstance(m, dict) and m.get("role") == "user"), "")
            return f"You said: {last.strip()}. Noted.", None, None, 0.0
        return await self._recognize(messages, language)

    # -- DashScope-native

    async def native(self, request: HttpRequest) -> HttpResponse:
        if self.owner(request.header("authorization")) is None:
            return _native_error(401, "InvalidApiKey", "Invalid API-key provided.")
        try:
            body = request.json()
        except ValueError:
            return _native_error(400, "InvalidParameter", "request body is not valid JSON")
        if not isinstance(body, dict) or not body.get("model"):
            return _native_error(400, "BadRequest.EmptyModel", "Required parameter 'model' missing from request.")
        if body["model"] not in ASR_MODELS or emulator_refuses(str(body["model"]), self.region):
            return _native_error(400, "InvalidParameter", f"Model not found: {body['model']}")
        inp = body.get("input") if isinstance(body.get("input"), dict) else None
        if inp is None:
            return _native_error(400, "BadRequest.EmptyInput", "Required parameter 'input' missing from request.")
        params: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        opts: dict[str, Any] = params["asr_options"] if isinstance(params.get("asr_options"), dict) else {}
        try:
            text, lang, emotion, seconds = await self._recognize(inp.get("messages"), opts.get("language"))
        except FileError as exc:
            return _native_error(400, exc.code, exc.message)
        rid = str(uuid.uuid4())
        annotations = [{"type": "audio_info", "language": lang, "emotion": emotion or "neutral"}]

        def payload(content: str, finish: str | None) -> dict[str, Any]:
            return {"request_id": rid, "output": {"choices": [{"finish_reason": finish, "message": {
                "role": "assistant", "content": [{"text": content}], "annotations": annotations}}]},
                "usage": {"seconds": max(1, int(seconds)), "output_tokens_details": {"text_tokens": len(text.split())},
                          "input_tokens_details": {"text_tokens": 0}}}

        if (request.header("x-dashscope-sse") or "").lower() != "enable":
            return HttpResponse.json(200, payload(text, "stop"))
        words = text.split()
        incremental = bool(params.get("incremental_output"))
        events = []
        for i, _ in enumerate(words):
            piece = ((" " if i else "") + words[i]) if incremental else " ".join(words[: i + 1])
            last = i == len(words) - 1
            events.append(f"id:{i + 1}\nevent:result\n:HTTP_STATUS/200\ndata:"
                          f"{json.dumps(payload(piece, 'stop' if last else None), ensure_ascii=False)}\n\n")
        if not words:
            events.append(f"id:1\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(payload('', 'stop'))}\n\n")
        return HttpResponse(200, "".join(events).encode(), "text/event-stream")


def add_compat_routes(emulator: Any, vad: str) -> CompatService:
    service = CompatService(engine=emulator.engine, owner=emulator._owner, vad=vad, stats=emulator.stats)
    emulator.server.add_route("POST", COMPAT_PATH, service.chat)
    emulator.server.add_route("POST", NATIVE_PATH, service.native)
    return service
