"""Near-real-time ASR over the synchronous ``qwen3-asr-flash`` API (entry point ``qwen3-asr-flash``).

The session's VAD markers cut the audio into utterances; each utterance (cut again within every
``max_chunk_s`` seconds, 5 s by default, at the quietest point of the window's second half so no
word is split, so a long turn still gives early text) is sent as one
short WAV to the synchronous recognizer — the OpenAI-compatible chat completions endpoint with an
``input_audio`` part (``api="compat"``, streamed SSE) or the DashScope-native
``multimodal-generation`` call (``api="native"``; the only form offered in the US region). Up to
``concurrency`` requests run at once; results are yielded in audio order, one final per chunk,
with the language and emotion the service annotates. ``ASRConfig.context`` (or ``context=``) goes
in the system message: the model's prompt biasing (there are no hotword lists on this API).

Audio outside speech (before ``speech_started`` / after ``speech_ended``) is not sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx
import numpy as np
import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError
from voicekit.logging import get_logger
from voicekit.plugins.options import Option
from voicekit_dashscope.asr.models import guide_record
from voicekit_dashscope.auth import ApiKey
from voicekit_dashscope.client.compat import ChatResult, CompatClient, wav_data_url
from voicekit_dashscope.options import connection
from voicekit_dashscope.protocol.files import QWEN_LANGS
from voicekit_dashscope.regions import DEFAULT_REGION, check_model_region, get_region, regional_model_name

log = get_logger("voicekit.dashscope.nearrealtime")
MAX_SYNC_SECONDS = 300.0


def pause_cut(window: bytes, rate: int, *, search_from: float = 0.5, frame_ms: int = 20) -> int:
    """Where to cut a full window of PCM16 mono: the quietest point of its second half (in bytes).

    A long turn must be cut to be sent, and a cut inside a word loses it on both sides (the
    recognizer hears "pru-" and "-dently"). The quietest ``frame_ms`` stretch between
    ``search_from`` of the window and its end is almost always a pause between words; the cut is
    made in its middle. Without a clearly quieter stretch (under half the median energy) the window
    is cut at its end. Returns an even byte offset > 0.
    """
    samples = np.frombuffer(window, dtype=np.int16).astype(np.float32)
    n = len(samples)
    frame = max(1, rate * frame_ms // 1000)
    hop = max(1, frame // 4)
    start = int(n * search_from)
    if n - start < frame:
        return n * 2
    energy = np.concatenate(([0.0], np.cumsum(samples * samples, dtype=np.float64)))
    starts = np.arange(start, n - frame + 1, hop)
    sums = energy[starts + frame] - energy[starts]
    i = int(np.argmin(sums))
    if sums[i] >= 0.5 * float(np.median(sums)):
        return n * 2  # no quieter stretch than the speech around it (a held tone, noise): cut at the limit
    return max(1, int(starts[i]) + frame // 2) * 2


class _Stream:
    def __init__(self, owner: Qwen3ASRFlash, config: ASRConfig, nursery: trio.Nursery) -> None:
        self.owner = owner
        self.rate = config.sample_rate
        self.language = config.language or owner.language
        self.context = config.context or owner.context
        self.nursery = nursery
        self.limiter = trio.CapacityLimiter(owner.concurrency)
        self._send, self._recv = trio.open_memory_channel[TranscriptResult](256)
        self.buf = bytearray()
        self.start = 0.0
        self.in_speech = False
        self.seq = 0
        self.ready: dict[int, TranscriptResult | None] = {}
        self.next_out = 0
        self.pending = 0
        self.idle = trio.Event()
        self.idle.set()

    @property
    def cap_bytes(self) -> int:
        return int(self.owner.max_chunk_s * self.rate) * 2

    async def send_audio(self, frame: AudioFrame) -> None:
        if frame.sample_rate != self.rate:
            raise ConfigError(f"{self.owner.capabilities.name}: frames at {frame.sample_rate} Hz on a "
                              f"{self.rate} Hz stream; resample first")
        if not self.in_speech:
            return
        pcm = frame.to_array()[:, 0].tobytes() if frame.channels > 1 else frame.pcm
        self.buf += pcm
        while len(self.buf) >= self.cap_bytes:
            cut = pause_cut(bytes(self.buf[: self.cap_bytes]), self.rate)
            chunk, self.buf = bytes(self.buf[:cut]), self.buf[cut:]
            self._submit(chunk)

    async def speech_started(self, t: float) -> None:
        if not self.in_speech:
            self.in_speech, self.start, self.buf = True, t, bytearray()

    async def speech_ended(self, t: float) -> None:
        if self.in_speech:
            self.in_speech = False
            if self.buf:
                self._submit(bytes(self.buf))
            self.buf = bytearray()

    def _submit(self, pcm: bytes) -> None:
        seq, start = self.seq, self.start
        self.seq += 1
        self.start += len(pcm) / 2 / self.rate
        self.pending += 1
        self.idle = trio.Event() if self.idle.is_set() else self.idle
        self.nursery.start_soon(self._work, seq, pcm, start)

    async def _work(self, seq: int, pcm: bytes, start: float) -> None:
        async with self.limiter:
            res = await self.owner.recognize(pcm, self.rate, context=self.context, language=self.language)
        end = start + len(pcm) / 2 / self.rate
        self.ready[seq] = (TranscriptResult(res.text, True, seq + 1, start, end, language=res.language,
                                            emotion=res.emotion) if res.text else None)
        while self.next_out in self.ready:
            r = self.ready.pop(self.next_out)
            self.next_out += 1
            if r is not None:
                await self._send.send(r)
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()

    async def finish(self) -> None:
        if self.in_speech and self.buf:
            self._submit(bytes(self.buf))
        self.in_speech, self.buf = False, bytearray()
        await self.idle.wait()
        await self._send.aclose()

    def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        return self._recv.__aiter__()


class Qwen3ASRFlash:
    """``qwen3-asr-flash`` as a near-real-time voicekit ASR plugin."""

    capabilities: ClassVar[ASRCapabilities] = guide_record(ASRCapabilities(
        name="qwen3-asr-flash", family="qwen3-asr", mode="near-realtime", api="http", languages=QWEN_LANGS,
        hotwords=False, prompt_context=True, emotion=True, diarization=False, word_timestamps=False,
        partials=False, sample_rates=(16000, 8000, 24000, 48000), max_duration_s=MAX_SYNC_SECONDS,
        max_file_bytes=10 * 1024 * 1024, regions=("cn-beijing", "ap-southeast-1", "us-east-1"), offline=False,
        notes="utterances (cut at 5 s) sent to the synchronous API; US region: native form only"))
    model: ClassVar[str] = "qwen3-asr-flash"
    options: ClassVar[tuple[Option, ...]] = (
        *connection(),
        Option("api", "enum", "compat", "compat: OpenAI-compatible chat completions; native: DashScope's own "
                                        "(the only form in the US region)", choices=("compat", "native")),
        Option("max_chunk_s", "float", 5.0, "longest piece sent at once, seconds; a long turn is cut at a pause "
                                           "inside the last part of the window", minimum=0.5, maximum=MAX_SYNC_SECONDS),
        Option("concurrency", "int", 4, "requests in flight at once", minimum=1, maximum=64),
        Option("language", "str", None, "language code of the speech, e.g. en (default: detect)"),
        Option("context", "str", None, "text that biases recognition: names, terms, the topic"),
        Option("model", "str", None, "model name to call (default: qwen3-asr-flash, -us in the US region)"),
        Option("transport", "object", None, "an httpx transport (Python only; tests)"),
    )

    def __init__(self, api_key: str | ApiKey | None = None, *, region: str = DEFAULT_REGION,
                 workspace: str | None = None, base_url: str | None = None, api: str = "compat",
                 max_chunk_s: float = 5.0, concurrency: int = 4, language: str | None = None,
                 context: str | None = None, model: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        check_model_region(model or self.model, region)  # also with base_url: the region decides what the key reaches
        if api not in ("compat", "native"):
            raise ConfigError(f"api must be 'compat' (OpenAI-compatible) or 'native', not {api!r}")
        if get_region(region).id == "us-east-1" and api == "compat":
            raise ConfigError("qwen3-asr-flash has no OpenAI-compatible endpoint in the US region; use api='native'")
        if not 0.5 <= max_chunk_s <= MAX_SYNC_SECONDS:
            raise ConfigError(f"max_chunk_s must be between 0.5 and {MAX_SYNC_SECONDS:g} s")
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        self.client = CompatClient(api_key, region=region, workspace=workspace, base_url=base_url,
                                   transport=transport)
        self.api = api
        self.max_chunk_s = max_chunk_s
        self.concurrency = concurrency
        self.language = language
        self.context = context
        self.model_name = model or regional_model_name(self.model, region)

    async def recognize(self, pcm: bytes, rate: int, *, context: str | None = None,
                        language: str | None = None) -> ChatResult:
        """One chunk of PCM16 mono through the synchronous API."""
        url = wav_data_url(pcm, rate)
        if self.api == "native":
            return await self.client.native_asr(self.model_name, url, context=context, language=language)
        messages: list[dict[str, Any]] = []
        if context:
            messages.append({"role": "system", "content": [{"text": context}]})
        messages.append({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": url}}]})
        body: dict[str, Any] = {"model": self.model_name, "messages": messages,
                                "asr_options": {"enable_itn": False, **({"language": language} if language else {})}}
        return await self.client.chat(body)

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[_Stream]:
        async with trio.open_nursery() as nursery:
            yield _Stream(self, config, nursery)
