"""``voicekit emulate dashscope`` — run the local emulator (entry-point group ``voicekit.cli``).

The command returns the exit code: 0 when stopped with Ctrl-C, 1 when it cannot listen, 2 for bad
settings (one line on stderr naming the setting).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import trio

from voicekit.errors import VoicekitError
from voicekit.logging import configure_command


def _build(args: argparse.Namespace) -> tuple[Any, set[str] | None]:
    from voicekit_dashscope_emulator.app import DashScopeEmulator, check_exposure, read_api_keys
    from voicekit_dashscope_emulator.engines import FixtureEngine, load_plugin_engine
    from voicekit_dashscope_emulator.omni import realtime_options
    from voicekit_dashscope_emulator.task import TaskSettings

    keys = read_api_keys(args.api_key, args.api_keys_file)
    check_exposure(args.host, keys)  # before loading a model
    if args.fixtures:
        engine: Any = FixtureEngine.from_file(args.fixtures)
        vad = args.vad or "energy"
    else:
        engine = load_plugin_engine(args.engine)
        vad = args.vad or "webrtc"
    emu = DashScopeEmulator(engine, host=args.host, port=args.port, faults=args.faults, api_keys=keys,
                            settings=TaskSettings(vad=vad),
                            realtime=realtime_options(voice=args.omni_voice, script_path=args.omni_script, vad=vad),
                            region=args.region, allow_url_prefixes=tuple(args.allow_url_prefix))
    return emu, keys


def _run_emulator(args: argparse.Namespace) -> int:
    configure_command(quiet="info")  # the emulator logs what it serves
    try:
        emu, keys = _build(args)
    except VoicekitError as exc:
        print(f"voicekit emulate dashscope: {exc}", file=sys.stderr)
        return 2

    async def go() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(emu.serve)
            # voicekit's plugins and the official SDKs read these variables (an explicit base_url wins)
            key_line = ("" if keys else "  export DASHSCOPE_API_KEY=sk-emulator  # any key is accepted\n")
            print(f"DashScope emulator on {emu.host}:{emu.port}\n"
                  f"  export DASHSCOPE_WEBSOCKET_BASE_URL={emu.ws_base_url}\n"
                  f"  export DASHSCOPE_HTTP_BASE_URL={emu.http_base_url}\n"
                  f"{key_line}"
                  f"  or per plugin: --asr-option base_url={emu.base_url}", flush=True)

    try:
        trio.run(go)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"voicekit emulate dashscope: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``emulate dashscope`` (entry point of the ``voicekit.cli`` group)."""
    esub = _emulate_subparsers(subparsers)
    e = esub.add_parser("dashscope", help="the DashScope speech services (task protocol, vocabulary API)")
    e.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1); any other needs an API key list")
    e.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    e.add_argument("--faults", help="fault spec, e.g. 'drop@5,close1011/7' (see the docs)")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--engine", default="moonshine", help="local ASR plugin to transcribe with")
    src.add_argument("--fixtures", help="JSON file of scripted sentences instead of an engine")
    e.add_argument("--vad", choices=("webrtc", "energy"), help="endpointing VAD (default depends on engine)")
    e.add_argument("--api-key", action="append", help="accept only this key (repeatable; default: any key, "
                                                      "on loopback only)")
    e.add_argument("--api-keys-file", help="accept only the keys in this file, one per line "
                                           "(also: $DASHSCOPE_EMULATOR_API_KEYS)")
    e.add_argument("--allow-url-prefix", action="append", default=[], metavar="PREFIX",
                   help="file URLs under this prefix may be fetched (repeatable; default: only loopback "
                        "URLs and the emulator's own uploads)")
    e.add_argument("--omni-voice", choices=("espeak", "tone"), default="espeak",
                   help="how emulated Omni replies sound (default espeak)")
    e.add_argument("--omni-script", help="JSON file of scripted Omni replies and tool rules (see the docs)")
    e.add_argument("--region", help="emulate one region's host: beijing, singapore or us; models it does not "
                                    "offer are answered like unknown models (default: every model)")
    e.set_defaults(func=_run_emulator)


def _emulate_subparsers(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """``emulate`` may already exist (another plugin registered it first): add to it."""
    emulate: argparse.ArgumentParser | None = subparsers.choices.get("emulate")
    if emulate is None:
        emulate = subparsers.add_parser("emulate", help="run a local emulator of a cloud service")
    for action in emulate._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return emulate.add_subparsers(dest="emulate_service", required=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m voicekit_dashscope_emulator [emulate dashscope] ...`` without the core CLI."""
    parser = argparse.ArgumentParser(prog="voicekit")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
