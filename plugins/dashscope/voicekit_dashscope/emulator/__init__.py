"""A local emulator of the DashScope speech services (task protocol and vocabulary API)."""

from voicekit_dashscope.emulator.app import DashScopeEmulator, running_emulator
from voicekit_dashscope.emulator.engines import FixtureEngine, tone_audio
from voicekit_dashscope.emulator.faults import FaultPlan
from voicekit_dashscope.emulator.task import TaskSettings

__all__ = ["DashScopeEmulator", "FaultPlan", "FixtureEngine", "TaskSettings", "running_emulator", "tone_audio"]
