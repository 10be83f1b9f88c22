"""The Omni voice agent as a ``voicekit.agents`` plugin: what ``voicekit run --agent MODEL`` builds.

One entry point per Omni realtime model. Each is an :class:`AgentFactory`: called with the
assistant whose intents become the agent's tools and with the ``--agent-option`` values (checked
against :attr:`AgentFactory.options`), it returns an :class:`~voicekit_dashscope.agent.omni.OmniAgent`
connected to Model Studio, or to ``base_url`` (e.g. the emulator's ``ws://127.0.0.1:PORT``).
"""

from __future__ import annotations

from typing import Any

from voicekit.handlers.assistant import Assistant
from voicekit.plugins.options import Option
from voicekit_dashscope.agent.omni import AgentConfig, OmniAgent
from voicekit_dashscope.protocol.realtime import get_realtime_model
from voicekit_dashscope.regions import DEFAULT_REGION

OPTIONS: tuple[Option, ...] = (
    Option("api_key", "secret", None, "DashScope API key (default: $DASHSCOPE_API_KEY)"),
    Option("base_url", "str", None, "service URL, e.g. the emulator's ws://127.0.0.1:PORT "
           "(default: $DASHSCOPE_WEBSOCKET_BASE_URL, else the region's host)"),
    Option("region", "str", DEFAULT_REGION, "singapore (ap-southeast-1) or beijing (cn-beijing)"),
    Option("workspace", "str", None, "Model Studio workspace id"),
    Option("instructions", "str", None, "system prompt (default: a short-answers prompt naming the "
           "assistant and its description)"),
    Option("voice", "str", None, "reply voice, e.g. Tina or Cherry (default: the model's)"),
    Option("turn_detection", "enum", None, "semantic_vad (backchannels do not interrupt) or server_vad "
           "(default: semantic where the model has it; --interrupt semantic|vad sets it too)",
           choices=("semantic_vad", "server_vad")),
    Option("barge_in", "enum", "immediate", "immediate: stop on the service's speech_started; confirm: "
           "pause, stop only when the service confirms a new turn", choices=("immediate", "confirm")),
    Option("vad_threshold", "float", None, "server VAD threshold (-1.0 to 1.0)", minimum=-1.0, maximum=1.0),
    Option("silence_duration_ms", "int", None, "silence that ends the user's turn, ms", minimum=0),
    Option("output_rate", "int", 24000, "reply audio rate from the service, Hz", minimum=8000, maximum=48000),
    Option("tool_timeout_s", "float", 10.0, "longest a tool (an intent handler) may take, seconds", minimum=0.1),
)


def default_instructions(assistant: Assistant | None) -> str:
    base = AgentConfig().instructions
    if assistant is None:
        return base
    about = f" You are {assistant.name}" + (f", {assistant.description}" if assistant.description else "") + "."
    return base + about + " Use your tools to act on requests."


class AgentFactory:
    """Builds an :class:`OmniAgent` on one model (a ``voicekit.agents`` entry point)."""

    options: tuple[Option, ...] = OPTIONS

    def __init__(self, model: str) -> None:
        self.model = model
        spec = get_realtime_model(model)
        interrupt = "semantic or server VAD" if spec.semantic_vad else "server VAD"
        self.description = f"Qwen-Omni realtime voice agent ({model}): hears, answers in speech, calls " \
                           f"the assistant's intents as tools; barge-in by {interrupt}"
        self.__doc__ = self.description

    def __call__(self, assistant: Assistant | None = None, **options: Any) -> OmniAgent:
        conn = {k: options.pop(k) for k in ("api_key", "base_url", "region", "workspace") if k in options}
        instructions = options.pop("instructions", None) or default_instructions(assistant)
        config = AgentConfig(model=self.model, instructions=instructions,
                             **{k: v for k, v in options.items() if v is not None})
        return OmniAgent.connect(config, api_key=conn.get("api_key"), region=conn.get("region") or DEFAULT_REGION,
                                 workspace=conn.get("workspace"), base_url=conn.get("base_url"),
                                 assistant=assistant)

    def __repr__(self) -> str:
        return f"AgentFactory({self.model!r})"


qwen35_omni_plus_realtime = AgentFactory("qwen3.5-omni-plus-realtime")
qwen35_omni_flash_realtime = AgentFactory("qwen3.5-omni-flash-realtime")
qwen3_omni_flash_realtime = AgentFactory("qwen3-omni-flash-realtime")
