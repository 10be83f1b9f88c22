"""What the emulated realtime service is told to be: its settings where the documentation is
silent, the Omni model's scripted replies and tool rules, and the voice that speaks them.

:func:`realtime_options` builds all three from command-line settings (``--omni-voice``,
``--omni-script``, ``--vad``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
import numpy as np

from voicekit.audio.resample import StreamResampler
from voicekit.errors import ConfigError

WORDS = re.compile(r"\S+")  # the words of a reply, as spoken and as streamed


@attrs.frozen
class RealtimeSettings:
    """How the emulated realtime service behaves where the documentation is silent or unsure."""

    session_limit_s: float | None = None  # None: the model's documented limit (120 min for Omni)
    vad: str = "webrtc"  # or "energy" (exact on synthetic audio)
    vad_mode: int = 2
    start_ms: int = 90  # voiced audio that starts speech
    pre_roll_ms: int = 300
    session_finish: str = "finished"  # or "error": answer session.finish with "invalid event type"
    cancelled_status: str = "cancelled"  # status of an interrupted response.done: or "incomplete"
    semantic_speech_started: str = "hold"  # "hold": no speech_started for a backchannel; or "emit"
    semantic_min_words: int = 2
    semantic_stable_partials: int = 2  # decisive partials in a row that make a real turn
    semantic_min_speech_s: float = 0.5  # voiced speech before partials may decide
    backchannel_max_s: float = 1.2  # voiced speech longer than this is a real turn
    accept_truncate: bool = False  # accept OpenAI's conversation.item.truncate (undocumented here)
    ack_item_create: bool = True  # answer conversation.item.create with conversation.item.created
    lock_format_after_audio: bool = True
    audio_chunk_ms: int = 100
    pace: float = 1.0  # 1.0: reply audio at real-time pace; 0: as fast as possible
    audio_lead_s: float = 1.0  # how far ahead of real time reply audio may be sent (generation is faster)
    transcript_timeout_s: float = 15.0

    def __attrs_post_init__(self) -> None:
        if self.vad not in ("webrtc", "energy"):
            raise ConfigError(f"realtime emulator vad must be 'webrtc' or 'energy', not {self.vad!r}")
        if self.session_finish not in ("finished", "error"):
            raise ConfigError("session_finish must be 'finished' or 'error'")
        if self.cancelled_status not in ("cancelled", "incomplete"):
            raise ConfigError("cancelled_status must be 'cancelled' or 'incomplete'")
        if self.semantic_speech_started not in ("hold", "emit"):
            raise ConfigError("semantic_speech_started must be 'hold' or 'emit'")


def _mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _tuple(value: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(value)


@attrs.frozen
class ToolRule:
    """When the user's transcript contains ``keyword`` (case-insensitive) and the session offers
    a tool named ``tool``, the model calls it with ``arguments``."""

    keyword: str
    tool: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)


@attrs.frozen
class OmniScript:
    """What the emulated Omni model answers.

    ``replies`` are used in order (then ``default_reply``); ``{transcript}`` is the user's words.
    After a tool call, the next response speaks ``after_tool`` with ``{output}`` = the tool's
    output. When the session is text-only and its instructions ask for a transcription, the
    model answers with the user's words verbatim (that is how the Omni ASR plugin uses it).
    """

    replies: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    default_reply: str = "You said: {transcript}."
    tool_rules: tuple[ToolRule, ...] = attrs.field(default=(), converter=_tuple)
    after_tool: str = "{output}"

    def reply(self, index: int, transcript: str) -> str:
        template = self.replies[index] if index < len(self.replies) else self.default_reply
        return template.replace("{transcript}", transcript.strip().rstrip(".!?。"))

    def tool_for(self, transcript: str, tools: Sequence[str]) -> ToolRule | None:
        low = transcript.lower()
        for rule in self.tool_rules:
            if rule.keyword.lower() in low and rule.tool in tools:
                return rule
        return None


class ReplyVoice(Protocol):
    async def render(self, text: str, rate: int) -> list[tuple[str, bytes]]:
        """The words of ``text`` with the PCM16 audio of each, at ``rate`` Hz."""
        ...


class ToneVoice:
    """Deterministic speech stand-in: each word is a tone of ``word_s`` seconds plus a short gap."""

    def __init__(self, word_s: float = 0.3, gap_s: float = 0.05, base_hz: float = 300.0,
                 amplitude: float = 0.3) -> None:
        self.word_s = word_s
        self.gap_s = gap_s
        self.base_hz = base_hz
        self.amplitude = amplitude

    async def render(self, text: str, rate: int) -> list[tuple[str, bytes]]:
        out = []
        for i, word in enumerate(WORDS.findall(text)):
            n = round(self.word_s * rate)
            t = np.arange(n) / rate
            tone = np.sin(2 * np.pi * (self.base_hz + 40 * (i % 5)) * t) * self.amplitude
            gap = np.zeros(round(self.gap_s * rate))
            pcm = (np.concatenate([tone, gap]) * 32767).astype("<i2").tobytes()
            out.append((word, pcm))
        return out


class EspeakVoice:
    """Real synthesized speech: the core's espeak TTS, resampled to the output rate, with the
    audio divided between the words in proportion to their length."""

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175) -> None:
        from voicekit.plugins import load

        self.tts = load("tts", "espeak")(voice=voice, rate_wpm=rate_wpm)

    async def render(self, text: str, rate: int) -> list[tuple[str, bytes]]:
        words = WORDS.findall(text)
        if not words:
            return []
        resampler: StreamResampler | None = None
        chunks: list[bytes] = []
        async for frame in self.tts.synthesize(text):
            if frame.sample_rate != rate:
                resampler = resampler or StreamResampler(frame.sample_rate, rate)
                out = resampler.process(frame)
                if out is not None:
                    chunks.append(out.pcm)
            else:
                chunks.append(frame.pcm)
        if resampler is not None and (tail := resampler.flush()) is not None:
            chunks.append(tail.pcm)
        audio = b"".join(chunks)
        total = len(audio) // 2
        weights = np.array([len(w) + 1 for w in words], float)
        bounds = np.round(np.concatenate([[0], np.cumsum(weights)]) / weights.sum() * total).astype(int)
        return [(w, audio[bounds[i] * 2: bounds[i + 1] * 2]) for i, w in enumerate(words)]


def realtime_options(*, voice: str = "espeak", script_path: str | None = None, vad: str = "webrtc") -> dict[str, Any]:
    """The ``realtime=`` options of the emulator from command-line settings.

    ``voice`` is ``espeak`` (synthesized speech) or ``tone`` (deterministic tones); ``script_path``
    a JSON file ``{"replies": [...], "default_reply": "...", "after_tool": "...",
    "tool_rules": [{"keyword": "...", "tool": "...", "arguments": {...}}]}``.
    """
    script = _read_script(script_path) if script_path else OmniScript()
    if voice not in ("espeak", "tone"):
        raise ConfigError(f"the emulator's Omni voice must be 'espeak' or 'tone', not {voice!r}")
    return {"settings": RealtimeSettings(vad=vad), "script": script,
            "voice": EspeakVoice() if voice == "espeak" else ToneVoice()}


def _read_script(path: str) -> OmniScript:
    try:
        with open(path, encoding="utf-8") as f:
            return _script_of(json.load(f))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read the Omni script {path}: {exc} — expected a JSON object with "
                          "replies, default_reply, after_tool and tool_rules") from None


def _script_of(data: Any) -> OmniScript:
    """An Omni script's JSON object as an :class:`OmniScript`; TypeError, KeyError or AttributeError if malformed."""
    rules = tuple(ToolRule(r["keyword"], r["tool"], r.get("arguments", {})) for r in data.get("tool_rules", ()))
    # keys left out keep OmniScript's defaults (a slotted attrs class has no class-level defaults to read)
    given = {k: data[k] for k in ("default_reply", "after_tool") if k in data}
    for k, v in given.items():
        if not isinstance(v, str):
            raise TypeError(f"{k} must be a string, not {type(v).__name__}")
    replies = tuple(data.get("replies", ()))
    if not all(isinstance(r, str) for r in replies):
        raise TypeError("replies must be a list of strings")
    return OmniScript(replies=replies, tool_rules=rules, **given)
