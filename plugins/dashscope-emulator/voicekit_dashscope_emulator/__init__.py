"""A local emulator of the DashScope speech services (distribution ``voicekit-dashscope-emulator``).

It speaks every protocol ``voicekit-dashscope`` uses — the WebSocket task and realtime protocols,
file transcription with task polling, temporary uploads, the vocabulary API and the
OpenAI-compatible chat completions — built on the plugin's I/O-free protocol modules
(:mod:`voicekit_dashscope.protocol`) and voicekit's public API. ``voicekit emulate dashscope`` runs
it; :func:`running_emulator` starts one in a test; :mod:`voicekit_dashscope_emulator.testing`
reaches its realtime endpoint in memory.
"""

from voicekit_dashscope_emulator.app import DashScopeEmulator, running_emulator
from voicekit_dashscope_emulator.engines import FixtureEngine, tone_audio
from voicekit_dashscope_emulator.faults import FaultPlan
from voicekit_dashscope_emulator.omni import EspeakVoice, OmniScript, RealtimeSettings, ToneVoice, ToolRule
from voicekit_dashscope_emulator.realtime import RealtimeService
from voicekit_dashscope_emulator.task import TaskSettings

__all__ = [
    "DashScopeEmulator",
    "EspeakVoice",
    "FaultPlan",
    "FixtureEngine",
    "OmniScript",
    "RealtimeService",
    "RealtimeSettings",
    "TaskSettings",
    "ToneVoice",
    "ToolRule",
    "running_emulator",
    "tone_audio",
]
