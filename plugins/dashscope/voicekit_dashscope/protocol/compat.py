"""DashScope's synchronous audio APIs, as values and pure functions: OpenAI-compatible chat
completions (``POST /compatible-mode/v1/chat/completions``, SSE when streaming) and the native
``multimodal-generation`` call.

* request shapes: :func:`wav_data_url` (audio inside a message), :func:`native_asr_body`;
* what a request carries: :func:`text_of` / :func:`audio_of` read a message's content parts;
* answers: :func:`sse_data` reads one SSE line, :func:`gather` turns ``chat.completion.chunk``
  objects into a :class:`ChatResult`, :func:`parse_native_answer` reads the native answer;
* errors: :func:`error_fields` reads either error layout, :func:`compat_error_body` and
  :func:`native_error_body` write them.

The client (:mod:`voicekit_dashscope.client.compat`) and the emulator
(:mod:`voicekit_dashscope.emulator.compat`) share the paths, model sets and shapes from here.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import wave
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from voicekit_dashscope.protocol._util import ProtocolError

COMPAT_PATH = "/compatible-mode/v1/chat/completions"
NATIVE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
ASR_MODELS = frozenset({"qwen3-asr-flash", "qwen3-asr-flash-2025-09-08", "qwen3-asr-flash-2026-02-10",
                        "qwen3-asr-flash-us", "qwen3-asr-flash-2025-09-08-us"})
OMNI_MODELS = frozenset({"qwen3.5-omni-plus", "qwen3.5-omni-flash", "qwen3-omni-flash", "qwen3-omni-flash-2025-12-01"})
MAX_ASR_SECONDS = 300.0  # qwen3-asr-flash takes at most 5 minutes of audio per request
OMNI_RATE = 24000  # the Omni models' output audio: PCM16 mono at 24 kHz
DONE = "[DONE]"  # the last SSE data line of a chat completion stream
OMNI_STREAM_ONLY = ("This model only support stream mode, please enable the stream parameter to access the "
                    "model. ")


@attrs.frozen
class ChatResult:
    """A finished chat completion: the text, any audio (PCM16 24 kHz mono), language and emotion."""

    text: str
    audio: bytes = b""
    language: str | None = None
    emotion: str | None = None
    usage: dict[str, Any] | None = None


# -- requests ----------------------------------------------------------------------------------

def wav_data_url(pcm: bytes, rate: int) -> str:
    """PCM16 mono as a ``data:audio/wav;base64,...`` URL."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def native_asr_body(model: str, audio_url: str, *, context: str | None = None,
                    language: str | None = None) -> dict[str, Any]:
    """``qwen3-asr-flash`` in the DashScope-native form: a system context and one audio message."""
    messages: list[dict[str, Any]] = []
    if context:
        messages.append({"role": "system", "content": [{"text": context}]})
    messages.append({"role": "user", "content": [{"audio": audio_url}]})
    asr: dict[str, Any] = {"enable_itn": False}
    if language:
        asr["language"] = language
    return {"model": model, "input": {"messages": messages},
            "parameters": {"result_format": "message", "asr_options": asr}}


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the ``text`` parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict) and "text" in c)
    return ""


def audio_of(content: Any) -> str | None:
    """The first audio reference of a message's content (``input_audio.data`` or native ``audio``)."""
    if not isinstance(content, list):
        return None
    for c in content:
        if not isinstance(c, dict):
            continue
        if isinstance(c.get("input_audio"), dict):
            return str(c["input_audio"].get("data") or "") or None
        if isinstance(c.get("audio"), str):
            return str(c["audio"])
    return None


# -- answers -----------------------------------------------------------------------------------

def sse_data(line: str) -> Any:
    """The JSON object of one SSE ``data:`` line; ``None`` for other lines, :data:`DONE` at the end."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == DONE:
        return DONE
    try:
        return json.loads(data)
    except ValueError:
        raise ProtocolError(f"a stream event is not JSON: {data[:120]!r}") from None


def gather(chunks: Iterable[Mapping[str, Any]]) -> ChatResult:
    """The text, audio, language, emotion and usage of a whole stream of chunks."""
    text: list[str] = []
    audio: list[bytes] = []
    language = emotion = None
    usage = None
    for chunk in chunks:
        if not isinstance(chunk, Mapping):
            raise ProtocolError(f"a stream event is not a JSON object: {str(chunk)[:120]!r}")
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text.extend(_delta_text(delta))
            audio.extend(_delta_audio(delta))
            for ann in delta.get("annotations") or ():
                language = ann.get("language", language)
                emotion = ann.get("emotion", emotion)
    return ChatResult("".join(text).strip(), b"".join(audio), language, emotion, usage)


def _delta_text(delta: Mapping[str, Any]) -> list[str]:
    if delta.get("content"):
        return [delta["content"]]
    a = delta.get("audio")
    return [a["transcript"]] if isinstance(a, dict) and a.get("transcript") else []


def _delta_audio(delta: Mapping[str, Any]) -> list[bytes]:
    a = delta.get("audio")
    if not isinstance(a, dict) or not a.get("data"):
        return []
    try:
        return [base64.b64decode(a["data"])]
    except (binascii.Error, ValueError, TypeError):
        raise ProtocolError("a stream event's delta.audio.data is not valid base64") from None


def parse_native_answer(data: Any, what: str) -> ChatResult:
    """The native answer's first choice (``output.choices[0].message``) as a :class:`ChatResult`."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{what}: answer is not a JSON object: {str(data)[:200]}")
    out: Any = data["output"] if isinstance(data.get("output"), dict) else data  # workspace layout fallback
    try:
        msg = out["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise ProtocolError(f"{what}: answer has no output.choices[0].message: {str(data)[:200]}") from None
    content = msg.get("content")
    text = "".join(c.get("text", "") for c in content) if isinstance(content, list) else str(content or "")
    ann = (msg.get("annotations") or [{}])[0]
    return ChatResult(text.strip(), b"", ann.get("language"), ann.get("emotion"), data.get("usage"))


# -- errors ------------------------------------------------------------------------------------

def error_fields(data: Any) -> tuple[str | None, str | None]:
    """``(code, message)`` of an error answer in either layout (``{"error": {...}}`` or flat)."""
    if not isinstance(data, dict):
        return None, None
    err: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else {}
    return err.get("code") or data.get("code"), err.get("message") or data.get("message")


def compat_error_body(code: str, message: str, request_id: str,
                      kind: str = "invalid_request_error") -> dict[str, Any]:
    """An OpenAI-compatible error answer."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}, "request_id": request_id}


def native_error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """A DashScope-native error answer."""
    return {"request_id": request_id, "code": code, "message": message}
