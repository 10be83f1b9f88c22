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
from voicekit_dashscope_emulator.audio import decode_wav, resample_to_engine, transcribe_channel
from voicekit_dashscope_emulator.errors import Refused
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


class _NativeReply:
    """One DashScope-native answer, as one JSON body or as native SSE events."""

    def __init__(self, text: str, language: str | None, emotion: str | None, seconds: float) -> None:
        self.text = text
        self.rid = str(uuid.uuid4())
        self.annotations = [{"type": "audio_info", "language": language, "emotion": emotion or "neutral"}]
        self.usage = {"seconds": max(1, int(seconds)), "output_tokens_details": {"text_tokens": len(text.split())},
                      "input_tokens_details": {"text_tokens": 0}}

    def payload(self, content: str, finish: str | None) -> dict[str, Any]:
        return {"request_id": self.rid, "output": {"choices": [{"finish_reason": finish, "message": {
            "role": "assistant", "content": [{"text": content}], "annotations": self.annotations}}]},
            "usage": self.usage}

    def events(self, incremental: bool) -> list[str]:
        """The text word by word (each event the new word, or the text so far), ``stop`` on the last."""
        words = self.text.split()
        if not words:
            return [_native_event(1, json.dumps(self.payload("", "stop")))]
        return [_native_event(i + 1, json.dumps(self.payload(
                    ((" " if i else "") + word) if incremental else " ".join(words[: i + 1]),
                    "stop" if i == len(words) - 1 else None), ensure_ascii=False))
                for i, word in enumerate(words)]


def _native_event(n: int, data: str) -> str:
    return f"id:{n}\nevent:result\n:HTTP_STATUS/200\ndata:{data}\n\n"


def _json_body(request: HttpRequest, code: str) -> Any:
    try:
        return request.json()
    except ValueError:
        raise Refused(code, "request body is not valid JSON") from None


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (options the service reads leniently)."""
    return value if isinstance(value, dict) else {}


def _checked_messages(messages: Any) -> list[Any]:
    if not isinstance(messages, list) or not messages:
        raise Refused("InvalidParameter", "messages must be a non-empty list")
    return messages


def _contents(messages: list[Any], role: str) -> list[Any]:
    """The ``content`` of every message of ``role``, in order."""
    return [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == role]


def _audio_ref(messages: list[Any]) -> str | None:
    """The first audio reference in the user messages."""
    return next((a for c in _contents(messages, "user") if (a := _audio_of(c))), None)


def _system_context(messages: list[Any]) -> str | None:
    return " ".join(_text_of(c) for c in _contents(messages, "system")).strip() or None


def _first(values: list[str | None]) -> str | None:
    return next((v for v in values if v), None)


def _data_url_bytes(ref: str) -> bytes:
    _, _, b64 = ref.partition(",")
    try:
        return base64.b64decode(b64, validate=False)
    except ValueError:
        raise Refused("InvalidParameter", "input_audio data is not valid Base64") from None


async def _download(ref: str, policy: UrlPolicy) -> bytes:
    if not policy.allows(ref):
        raise Refused("InvalidParameter", policy.refusal(ref))
    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False) as client:
            resp = await client.get(ref)
    except httpx.HTTPError:
        raise Refused("InvalidParameter", "The audio URL cannot be downloaded.") from None
    if resp.status_code != 200:
        raise Refused("InvalidParameter", f"The audio URL answered HTTP {resp.status_code}.")
    return resp.content


def _engine_samples(data: bytes) -> np.ndarray:
    """A WAV file's first channel at the engine's rate; refused above the service's duration limit."""
    audio, rate = decode_wav(data)
    if audio.shape[0] / rate > MAX_ASR_SECONDS:
        raise Refused("AUDIO_DURATION_TOO_LONG",
                         f"audio duration ({audio.shape[0] * 1000 / rate:.1f}ms) over service process (300s)")
    return resample_to_engine(audio[:, 0], rate)


class CompatService:
    region: str | None = None  # the region emulated (None: all); set by the emulator
    def __init__(self, *, engine: Any, owner: Any, vad: str = "webrtc", stats: dict[str, int] | None = None) -> None:
        self.engine = engine
        self.owner = owner
        self.vad = vad
        self.stats = stats if stats is not None else {}

    async def _load(self, ref: str) -> np.ndarray:
        if ref.startswith("data:"):
            return _engine_samples(_data_url_bytes(ref))
        if ref.startswith(("http://", "https://")):
            policy = getattr(self, "url_policy", None) or UrlPolicy()  # loopback only unless allowed
            return _engine_samples(await _download(ref, policy))
        raise Refused("InvalidParameter", "input_audio data must be a data: URL or an http(s) URL")

    def _engine_language(self) -> str | None:
        caps = getattr(self.engine, "capabilities", None)
        return None if caps is None else str(caps.languages[0])

    async def _recognize(self, messages: Any, language: str | None) -> tuple[str, str | None, str | None, float]:
        messages = _checked_messages(messages)
        context = _system_context(messages)
        ref = _audio_ref(messages)
        if ref is None:
            raise Refused("InvalidParameter", "no input_audio in the user message")
        samples = await self._load(ref)
        finals = await transcribe_channel(self.engine, samples, vad=self.vad, end_silence_ms=400, language=language,
                                          context=context)
        text = " ".join(t for r in finals if (t := r.text.strip()))
        emotion = _first([r.emotion for r in finals])
        lang = language or _first([r.language for r in finals]) or self._engine_language()
        return text, lang, emotion, samples.size / ENGINE_RATE

    # -- OpenAI-compatible

    async def chat(self, request: HttpRequest) -> HttpResponse:
        try:
            body, model, omni = self._chat_request(request)
            language = _object(body.get("asr_options")).get("language")
            answer = await self._chat_answer(body.get("messages"), omni, language)
        except Refused as exc:
            return _compat_error(exc.status, exc.code, exc.message)
        self.stats["compat_requests"] = self.stats.get("compat_requests", 0) + 1
        reply = _ChatReply(model, omni, *answer)
        if not body.get("stream"):
            return HttpResponse.json(200, reply.completion())
        events = await reply.chunks(body)
        return HttpResponse(200, "".join(events).encode(), "text/event-stream",
                            (("cache-control", "no-cache"),))

    def _chat_request(self, request: HttpRequest) -> tuple[dict[str, Any], str, bool]:
        """The checked request: (body, model, whether the model is an Omni model)."""
        if self.owner(request.header("authorization")) is None:
            raise Refused("invalid_api_key", "Incorrect API key provided.", 401)
        body = _json_body(request, "invalid_parameter_error")
        model = body.get("model") if isinstance(body, dict) else None
        known = model in ASR_MODELS or model in OMNI_MODELS
        if not known or emulator_refuses(str(model), self.region, openai_compatible=True):
            raise Refused("model_not_found", f"The model `{model}` does not exist or you do not have access to it.",
                          404)
        omni = model in OMNI_MODELS
        if omni and not body.get("stream"):
            raise Refused("invalid_parameter_error", OMNI_STREAM_ONLY)
        return body, str(model), omni

    async def _chat_answer(self, messages: Any, omni: bool,
                           language: str | None) -> tuple[str, str | None, str | None, float]:
        """(text, language, emotion, audio seconds) of the answer to ``messages``."""
        if omni and _audio_ref(_checked_messages(messages)) is None:
            # no language model here: a text-only Omni turn is answered by echoing the last user text
            last = next((_text_of(c) for c in reversed(_contents(messages, "user"))), "")
            return f"You said: {last.strip()}. Noted.", None, None, 0.0
        return await self._recognize(messages, language)

    # -- DashScope-native

    async def native(self, request: HttpRequest) -> HttpResponse:
        try:
            inp, params = self._native_request(request)
            opts = _object(params.get("asr_options"))
            answer = await self._recognize(inp.get("messages"), opts.get("language"))
        except Refused as exc:
            return _native_error(exc.status, exc.code, exc.message)
        reply = _NativeReply(*answer)
        if (request.header("x-dashscope-sse") or "").lower() != "enable":
            return HttpResponse.json(200, reply.payload(reply.text, "stop"))
        events = reply.events(bool(params.get("incremental_output")))
        return HttpResponse(200, "".join(events).encode(), "text/event-stream")

    def _native_request(self, request: HttpRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """The checked request's ``input`` and ``parameters``, in the order the service checks them."""
        if self.owner(request.header("authorization")) is None:
            raise Refused("InvalidApiKey", "Invalid API-key provided.", 401)
        body = _json_body(request, "InvalidParameter")
        if not isinstance(body, dict) or not body.get("model"):
            raise Refused("BadRequest.EmptyModel", "Required parameter 'model' missing from request.")
        if body["model"] not in ASR_MODELS or emulator_refuses(str(body["model"]), self.region):
            raise Refused("InvalidParameter", f"Model not found: {body['model']}")
        if not isinstance(body.get("input"), dict):
            raise Refused("BadRequest.EmptyInput", "Required parameter 'input' missing from request.")
        return body["input"], _object(body.get("parameters"))


def add_compat_routes(emulator: Any, vad: str) -> CompatService:
    service = CompatService(engine=emulator.engine, owner=emulator._owner, vad=vad, stats=emulator.stats)
    emulator.server.add_route("POST", COMPAT_PATH, service.chat)
    emulator.server.add_route("POST", NATIVE_PATH, service.native)
    return service
