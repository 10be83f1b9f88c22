"""Realtime voice agents on the Qwen-Omni models (see :mod:`voicekit_dashscope.agent.omni`)."""

from voicekit_dashscope.agent.omni import AgentConfig, HistoryEntry, OmniAgent
from voicekit_dashscope.agent.tools import Tool, tool, tools_from_assistant

__all__ = ["AgentConfig", "HistoryEntry", "OmniAgent", "Tool", "tool", "tools_from_assistant"]
