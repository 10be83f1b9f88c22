"""HTTP clients of DashScope's synchronous audio APIs: OpenAI-compatible chat completions (SSE) and
the native ``multimodal-generation`` call. Used by the near-real-time and Omni-over-HTTP plugins.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voicekit_dashscope.auth import ApiKey, excerpt, resolve_api_key
from voicekit_dashscope.client.files import decode_json
from voicekit_dashscope.errors import DashScopeError, ServiceUnavailableError, http_error, transport_problem
from voicekit_dashscope.protocol._util import ProtocolError
from voicekit_dashscope.protocol.compat import (
    COMPAT_PATH,
    DONE,
    NATIVE_PATH,
    ChatResult,
    error_fields,
    gather,
    native_asr_body,
    parse_native_answer,
    sse_data,
    wav_data_url,
)
from voicekit_dashscope.protocol.files import BadResponseError
from voicekit_dashscope.regions import DEFAULT_REGION, Endpoints

__all__ = ["COMPAT_PATH", "NATIVE_PATH", "ChatResult", "CompatClient", "wav_data_url"]


def _compat_failure(status: int, data: Any, what: str) -> DashScopeError:
    code, message = error_fields(data)
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
                                           f"{resp.headers.get('content-type')}: {excerpt(resp.text, 120)!r}")
                async for line in resp.aiter_lines():
                    try:
                        obj = sse_data(line)
                    except ProtocolError as exc:
                        raise BadResponseError(f"{what}: {exc}") from None
                    if obj is None:
                        continue
                    if obj == DONE:
                        return
                    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
                        raise _compat_failure(400, obj, what + " (mid-stream)")
                    yield obj
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"{what}: {url} unreachable: {transport_problem(exc)}") from None

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        """Run a streaming chat completion to its end and gather text, audio and annotations."""
        chunks = [chunk async for chunk in self.stream_chat(body)]
        try:
            return gather(chunks)
        except ProtocolError as exc:
            raise BadResponseError(f"chat completion ({body.get('model')}): {exc}") from None

    async def native_asr(self, model: str, audio_url: str, *, context: str | None = None,
                         language: str | None = None) -> ChatResult:
        """``qwen3-asr-flash`` in the DashScope-native form (one JSON answer)."""
        body = native_asr_body(model, audio_url, context=context, language=language)
        url = self.host_url + NATIVE_PATH
        what = f"recognition ({model})"
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as client:
                resp = await client.post(url, content=json.dumps(body).encode(), headers=self._headers())
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"{what}: {url} unreachable: {transport_problem(exc)}") from None
        data = decode_json(resp, what)
        if resp.status_code != 200:
            raise _compat_failure(resp.status_code, data, what)
        try:
            return parse_native_answer(data, what)
        except ProtocolError as exc:
            raise BadResponseError(str(exc)) from None
