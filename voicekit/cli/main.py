"""``voicekit`` — run assistants, transcribe files, list plugins.

Vendor plugins add subcommands through the entry-point group ``voicekit.cli``: each entry point
names ``register(subparsers)``, which adds parsers whose ``func(args) -> int`` does the work.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any, NoReturn

from voicekit.errors import ConfigError, VoicekitError, one_line


def _add_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run an assistant on a microphone, a file or stdin",
                       description="Run an assistant: hear, transcribe, match an intent, answer aloud.")
    p.add_argument("assistant", nargs="?",
                   help="installed assistant name (see 'voicekit plugins') or module:attribute "
                        "(with --agent: optional, its intents become the agent's tools)")
    p.add_argument("--input", "-i", default="mic",
                   help="'mic', an audio file, or '-' for raw 16 kHz mono int16 PCM on stdin (default: mic)")
    p.add_argument("--output", "-o", default="speaker",
                   help="'speaker', a .wav file to write the replies to, or 'none' (default: speaker)")
    p.add_argument("--asr", default=None, help="ASR plugin (default: moonshine)")
    p.add_argument("--vad", default=None, help="VAD plugin (default: webrtc)")
    p.add_argument("--tts", default=None, help="TTS plugin, or 'none' (default: espeak)")
    p.add_argument("--asr-option", action="append", metavar="KEY=VALUE", help="option for the ASR plugin")
    p.add_argument("--vad-option", action="append", metavar="KEY=VALUE", help="option for the VAD plugin")
    p.add_argument("--tts-option", action="append", metavar="KEY=VALUE", help="option for the TTS plugin")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file input like a microphone (and the replies like a speaker)")
    p.add_argument("--interrupt", choices=("vad", "semantic", "none"), default=None,
                   help="barge-in policy: vad (stop on speech, default), semantic (pause, ignore backchannels), none")
    p.add_argument("--agent", default=None, metavar="MODEL",
                   help="talk to a realtime agent plugin (e.g. qwen3.5-omni-plus-realtime) instead of the "
                        "ASR -> assistant -> TTS pipeline; see docs/cli.md")
    p.add_argument("--agent-option", action="append", metavar="KEY=VALUE",
                   help="option for the agent plugin (api_key, base_url, voice, instructions, ...)")
    p.add_argument("--min-interrupt-ms", type=int, default=300,
                   help="voiced speech needed to interrupt a reply (default: 300)")
    p.add_argument("--echo", choices=("auto", "aec", "gate", "none"), default="auto",
                   help="keep the assistant from hearing itself: aec (echo cancellation), gate, none; "
                        "auto = gate for a live microphone with a speaker, else none")
    p.add_argument("--end-silence-ms", type=int, default=600,
                   help="silence that ends an utterance (default: 600)")
    p.add_argument("--grammar", action="store_true",
                   help="give the assistant's intents to the recognizer as a JSGF grammar (command mode)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.add_argument("--verbose", "-v", action="count", default=0, help="log more (-v info, -vv debug)")
    p.set_defaults(func=_cmd_run)


def _add_transcribe(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("transcribe", help="transcribe audio files",
                       description="Transcribe audio files (WAV, MP3, AAC/M4A, FLAC, Opus, ...).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--asr", default=None, help="ASR plugin (default: moonshine)")
    p.add_argument("--vad", default=None, help="VAD plugin (default: webrtc)")
    p.add_argument("--asr-option", action="append", metavar="KEY=VALUE", help="option for the ASR plugin")
    p.add_argument("--format", "-f", default="txt", choices=("txt", "json", "srt", "vtt", "rttm"))
    p.add_argument("--output", "-o", default="-",
                   help="file to write (default: stdout); with several inputs, a folder")
    p.add_argument("--language", default=None, help="language hint, e.g. en")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("--verbose", "-v", action="count", default=0)
    b = p.add_argument_group("batch jobs (one output file per input; see docs/scaling.md)")
    b.add_argument("--cluster", default=None, metavar="WHERE",
                   help="run as a batch job: 'auto' ($RAY_ADDRESS if set, else a local Ray), 'local' (start a "
                        "local Ray), 'ray://HOST:PORT' or HOST:PORT (an existing Ray cluster), or 'none' (this "
                        "process, no Ray); FILEs may be folders and quoted globs; needs -o FOLDER")
    b.add_argument("--workers", type=int, default=None, metavar="N",
                   help="Ray workers, each loading the engines once (default: the cluster's CPUs)")
    b.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="cloud models: files in flight at once (default: 4); rate limits are waited out")
    b.add_argument("--overwrite", action="store_true",
                   help="transcribe again inputs whose output is complete (default: skip them, so a re-run resumes)")
    p.set_defaults(func=_cmd_transcribe)


def _add_plugins(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plugins", help="list installed plugins, their capabilities and load errors")
    p.add_argument("name", nargs="?", help="show this plugin's options: types, defaults and help")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_plugins)


def _cmd_run(args: argparse.Namespace) -> int:
    if args.agent is not None:
        from voicekit.cli.commands import run_agent

        return run_agent(args)
    if args.assistant is None:
        raise ConfigError("voicekit run: name an assistant (see 'voicekit plugins') or module:attribute, "
                          "or talk to a realtime model with --agent MODEL")
    if args.interrupt is None:
        args.interrupt = "vad"
    from voicekit.cli.commands import run

    return run(args)


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from voicekit.cli.commands import transcribe

    return transcribe(args)


def _cmd_plugins(args: argparse.Namespace) -> int:
    from voicekit.cli.commands import plugins

    return plugins(args)


class _Parser(argparse.ArgumentParser):
    """Mentions CLI extensions that failed to load when a command is not found."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broken: dict[str, str] = {}

    def error(self, message: str) -> NoReturn:
        if self.broken and "invalid choice" in message:
            for name, err in self.broken.items():
                message += f"\n(note: the CLI extension {name!r} failed to load: {err}; see 'voicekit plugins')"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="voicekit", description="Voice assistants and transcription on trio.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=argparse.ArgumentParser)
    sub.required = True
    _add_run(sub)
    _add_transcribe(sub)
    _add_plugins(sub)
    broken: dict[str, str] = {}
    for ep in sorted(entry_points(group="voicekit.cli"), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken extension must not break the other commands
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
    parser.broken.update(broken)
    return parser


#: Exit status when the reader of stdout went away (128 + SIGPIPE, what a shell reports for `cat`).
EXIT_CLOSED_PIPE = 141


def _closed_pipe() -> int:
    """stdout's reader is gone (``voicekit ... | head``): end quietly, like any Unix filter."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the final flush at exit cannot fail again
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_CLOSED_PIPE


def _only(group: BaseExceptionGroup[BaseException], kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` leaf of ``group`` if every other leaf is a cancellation, else None."""
    import trio

    match, rest = group.split(kind)
    if match is None:
        return None
    if rest is not None:
        _cancelled, others = rest.split(trio.Cancelled)
        if others is not None:
            return None
    leaf: BaseException = match
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except VoicekitError as exc:
        print(f"voicekit: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        if _only(group, BrokenPipeError) is not None:
            return _closed_pipe()
        if _only(group, KeyboardInterrupt) is not None:
            return 130
        err = _only(group, VoicekitError)
        if err is not None:
            print(f"voicekit: error: {one_line(err)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
