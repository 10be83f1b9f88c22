"""HTTP clients of DashScope's synchronous audio APIs: OpenAI-compatible chat completions (SSE) and
the native ``multimodal-generation`` call. Used by the near-real-time and Omni-over-HTTP plugins.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx

from voicekit_dashscope.auth import ApiKey, resolve_api_key, scrub
from voicekit_dashscope.client.files import decode_json
from voicekit_dashscope.errors import DashScopeError, ServiceUnavailableError, http_error
from voicekit_dashscope.protocol.files import BadResponseError
from voicekit_dashscope.regions import DEFAULT_REGION, Endpoints

COMPAT_PATH = "/compatible-mode/v1/chat/completions"
NATIVE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"


def wav_data_url(pcm: bytes, rate: int) -> str:
    """PCM16 mono as a ``data:audio/wav;base64,...`` URL."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


@attrs.frozen
class ChatResult:
    """A finished chat completion: the text, any audio (PCM16 24 kHz mono), language and emotion."""

    text: str
    audio: bytes = b""
    language: str | None = None
    emotion: str | None = None
    usage: dict[str, Any] | None = None


def _compat_failure(status: int, data: Any, what: str) -> DashScopeError:
    err: dict[str, Any] = data["error"] if isinstance(data, dict) and isinstance(data.get("error"), dict) else {}
    code = err.get("code") or (data.get("code") if isinstance(data, dict) else None)
    message = err.get("message") or (data.get("message") if isinstance(data, dict) else None)
    return http_error(status, code, message, what)


class CompatClient:
    def __init__(self, api_key: str | ApiKey | None = None, *, region: str = DEFAULT_REGION,
                 workspace: str | None = None, base_url: str | None = None, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        key = resolve_api_key(api_key)
        assert key is not None
        self._key = key
        self.host_url = Endpoints.resolve(region, workspace=workspace, base_url=base_url).http_host
        self.timeout = timeout
        self._transport = transport

    def __repr__(self) -> str:
        return f"CompatClient(host_url={self.host_url!r}, api_key={self._key!r})"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._key.bearer(), "Content-Type": "application/json",
                "user-agent": "voicekit-dashscope/0.1"}

    async def stream_chat(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST a streaming chat completion; yields each ``chat.completion.chunk`` object."""
        url = self.host_url + COMPAT_PATH
        what = f"chat completion ({body.get('model')})"
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as client, \
                    client.stream("POST", url, content=json.dumps({**body, "stream": True}).encode(),
                                  headers=self._headers() | {"Accept": "text/event-stream"}) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise _compat_failure(resp.status_code, decode_json(resp, what), what)
                if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                    await resp.aread()
                    raise BadResponseError(f"{what}: expected an event stream, got "
                                           f"{resp.headers.get('content-type')}: {resp.text[:120]!r}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        obj = json.loads(data)
                    except ValueError:
                        raise BadResponseError(f"{what}: a stream event is not JSON: {data[:120]!r}") from None
                    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
                        raise _compat_failure(400, obj, what + " (mid-stream)")
                    yield obj
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"{what}: {url} unreachable: {scrub(str(exc))}") from None

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        """Run a streaming chat completion to its end and gather text, audio and annotations."""
        text: list[str] = []
        audio: list[bytes] = []
        language = emotion = None
        usage = None
        async for chunk in self.stream_chat(body):
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    text.append(delta["content"])
                a = delta.get("audio")
                if isinstance(a, dict):
                    if a.get("data"):
                        audio.append(base64.b64decode(a["data"]))
                    if a.get("transcript") and not delta.get("content"):
                        text.append(a["transcript"])
                for ann in delta.get("annotations") or ():
                    language = ann.get("language", language)
                    emotion = ann.get("emotion", emotion)
        return ChatResult("".join(text).strip(), b"".join(audio), language, emotion, usage)

    async def native_asr(self, model: str, audio_url: str, *, context: str | None = None,
                         language: str | None = None) -> ChatResult:
        """``qwen3-asr-flash`` in the DashScope-native form (one JSON answer)."""
        messages: list[dict[str, Any]] = []
        if context:
            messages.append({"role": "system", "content": [{"text": context}]})
        messages.append({"role": "user", "content": [{"audio": audio_url}]})
        asr: dict[str, Any] = {"enable_itn": False}
        if language:
            asr["language"] = language
        body = {"model": model, "input": {"messages": messages},
                "parameters": {"result_format": "message", "asr_options": asr}}
        url = self.host_url + NATIVE_PATH
        what = f"recognition ({model})"
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as client:
                resp = await client.post(url, content=json.dumps(body).encode(), headers=self._headers())
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"{what}: {url} unreachable: {scrub(str(exc))}") from None
        data = decode_json(resp, what)
        if resp.status_code != 200:
            raise _compat_failure(resp.status_code, data, what)
        out = data.get("output") if isinstance(data.get("output"), dict) else data  # workspace layout fallback
        try:
            msg = out["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise BadResponseError(f"{what}: answer has no output.choices[0].message: {str(data)[:200]}") from None
        content = msg.get("content")
        text = "".join(c.get("text", "") for c in content) if isinstance(content, list) else str(content or "")
        ann = (msg.get("annotations") or [{}])[0]
        return ChatResult(text.strip(), b"", ann.get("language"), ann.get("emotion"), data.get("usage"))
