"""Tools an Omni model may call, answered by voicekit handlers.

Two ways to give the agent tools:

* plain async functions with a JSON schema for their arguments — :func:`tool`;
* the intents of a :class:`voicekit.handlers.Assistant` — :func:`tools_from_assistant`: each
  intent becomes a function named after it, its template slots become parameters (``{x}`` a
  string, ``{x:number}`` a number, ``{x:a|b}`` an enum), and a call runs the intent's handler
  with a :class:`~voicekit.handlers.assistant.Turn` built from the arguments; what the handler
  returns (text, a ``Reply``, or streamed pieces) goes back to the model as the tool's output.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from voicekit.errors import ConfigError
from voicekit.handlers.assistant import Assistant, Reply, Turn
from voicekit_dashscope.protocol.realtime import ToolSpec


def _mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@attrs.frozen
class Tool:
    """A function the model may call: its schema and the async handler that answers it."""

    name: str
    description: str
    parameters: Mapping[str, Any] = attrs.field(converter=_mapping, hash=False)
    handler: ToolHandler = attrs.field(hash=False)

    def __attrs_post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")
        if self.parameters.get("type") != "object":
            raise ConfigError(f"tool {self.name!r}: parameters must be a JSON schema with \"type\": \"object\"")

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, dict(self.parameters))

    async def call(self, arguments: str) -> str:
        """Run the handler on the model's JSON ``arguments``; the result as text for the model."""
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return json.dumps({"error": f"arguments for {self.name} were not valid JSON"})
        if not isinstance(args, dict):
            return json.dumps({"error": f"arguments for {self.name} must be a JSON object"})
        return as_text(await self.handler(args))


def as_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, Reply):
        return result.text
    return json.dumps(result, ensure_ascii=False, default=str)


def tool(*, parameters: Mapping[str, Any] | None = None, name: str | None = None,
         description: str | None = None) -> Callable[[ToolHandler], Tool]:
    """Decorator: ``@tool(parameters={...})`` on ``async def get_weather(args: dict) -> str``."""

    def wrap(fn: ToolHandler) -> Tool:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(f"tool {getattr(fn, '__name__', fn)!r} must be an async function")
        return Tool(name or fn.__name__, description or (inspect.getdoc(fn) or "").strip(),
                    dict(parameters or {"type": "object", "properties": {}}), fn)

    return wrap


def _slot_schema(source: str, slot: str, kind: str) -> dict[str, Any]:
    if kind == "number":
        return {"type": "number"}
    if kind == "choice":
        m = re.search(r"\{" + re.escape(slot) + r":([^}]*)\}", source)
        choices = [c.strip() for c in m.group(1).split("|")] if m else []
        return {"type": "string", "enum": choices}
    return {"type": "string"}


async def _collect(result: Any) -> Any:
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, AsyncIterator) or hasattr(result, "__aiter__"):
        pieces = [str(p) async for p in result]
        return " ".join(pieces)
    return result


def tools_from_assistant(assistant: Assistant, *, context: dict[str, Any] | None = None) -> list[Tool]:
    """One tool per intent of ``assistant`` (see the module doc)."""
    ctx = context if context is not None else {}
    tools: list[Tool] = []
    for intent in assistant.intents:
        properties: dict[str, Any] = {}
        for t in intent.templates:
            for slot, kind in t.slots.items():
                properties.setdefault(slot, _slot_schema(t.source, slot, kind))
        properties["utterance"] = {"type": "string", "description": "the user's request, in their words"}
        examples = "; ".join(t.source for t in intent.templates) or "; ".join(intent.phrases)
        description = f"{intent.name} ({assistant.name})" + (f": for requests like {examples}" if examples else "")
        handler_fn = intent.handler
        name = re.sub(r"[^A-Za-z0-9_-]", "_", intent.name)[:64]

        def make(intent_name: str, fn: Any) -> ToolHandler:
            async def handle(args: dict[str, Any]) -> Any:
                slots = {k: v for k, v in args.items() if k != "utterance"}
                text = str(args.get("utterance") or " ".join(str(v) for v in slots.values()))
                turn = Turn(text=text, intent=intent_name, slots=slots, turn_id=0, context=ctx,
                            language=assistant.language)
                return await _collect(fn(turn))

            return handle

        schema: dict[str, Any] = {"type": "object", "properties": properties}
        tools.append(Tool(name, description, schema, make(intent.name, handler_fn)))
    return tools


def resolve_tools(tools: Sequence[Tool] = (), assistant: Assistant | None = None) -> dict[str, Tool]:
    out: dict[str, Tool] = {}
    for t in [*tools, *(tools_from_assistant(assistant) if assistant is not None else [])]:
        if t.name in out:
            raise ConfigError(f"two tools are named {t.name!r}; tool names must be unique")
        out[t.name] = t
    return out
