"""What ``voicekit run --agent`` and ``voicekit serve --agent`` share: checking the flags and
building the agent's options (imported only when a command runs)."""

from __future__ import annotations

import argparse
from typing import Any

from voicekit.errors import ConfigError

#: Flags of the ASR → handler → TTS pipeline, which a realtime agent replaces.
PIPELINE_ONLY: tuple[tuple[str, str], ...] = (
    ("asr", "--asr"), ("vad", "--vad"), ("tts", "--tts"), ("asr_option", "--asr-option"),
    ("vad_option", "--vad-option"), ("tts_option", "--tts-option"))


def agent_setup(args: argparse.Namespace,
                pipeline_only: tuple[tuple[str, str], ...] = PIPELINE_ONLY) -> tuple[Any, dict[str, Any], Any]:
    """``(factory, options, assistant)`` for ``--agent MODEL``: pipeline flags refused, the agent's
    options typed by its schema, ``--interrupt`` mapped to the service's turn detection."""
    from voicekit.plugins.build import load_assistant, parse_options
    from voicekit.plugins.options import coerce_options
    from voicekit.plugins.registry import load

    for attr, flag in pipeline_only:
        if getattr(args, attr, None) is not None:
            raise ConfigError(f"{flag} has no effect with --agent (the realtime model hears and speaks "
                              "itself); set the agent with --agent-option KEY=VALUE")
    factory = load("agents", args.agent)
    options = coerce_options(f"agent plugin {args.agent!r}", factory, parse_options(args.agent_option))
    if args.interrupt == "none":
        raise ConfigError("--interrupt none is not available with --agent: the realtime service always lets "
                          "the user cut in; use --interrupt semantic or vad")
    if args.interrupt is not None:
        td = "semantic_vad" if args.interrupt == "semantic" else "server_vad"
        if options.get("turn_detection") not in (None, td):
            raise ConfigError(f"--interrupt {args.interrupt} contradicts --agent-option "
                              f"turn_detection={options['turn_detection']}; give one of them")
        options["turn_detection"] = td
    assistant = load_assistant(args.assistant) if args.assistant else None
    return factory, options, assistant
