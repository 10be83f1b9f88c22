"""``voicekit serve``: talk to an assistant from a web browser (a ``voicekit.cli`` extension)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicekit.serve.agent import AgentRecipe
    from voicekit.serve.config import SessionRecipe

TOKEN_ENV = "VOICEKIT_SERVE_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``serve`` subcommand (entry point of the ``voicekit.cli`` group)."""
    p = subparsers.add_parser(
        "serve", help="serve a web page that talks to an assistant through the browser's microphone",
        description="Serve a small web page and a WebSocket endpoint on one port: open the page, press Start, "
                    "and talk to the assistant; its replies play in the browser. Loopback only unless a "
                    "token is set. See docs/browser.md.")
    p.add_argument("assistant", nargs="?", default=None,
                   help="installed assistant name (see 'voicekit plugins') or module:attribute; optional with "
                        "--agent, where its intents become the agent's tools")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1); any non-loopback address needs --token")
    p.add_argument("--port", type=int, default=8765, help="port for the page and the WebSocket (default: 8765)")
    p.add_argument("--token", default=None,
                   help=f"secret the page must present (default: ${TOKEN_ENV}); open the page as URL#token=...")
    p.add_argument("--max-sessions", type=int, default=4,
                   help="concurrent conversations allowed in each worker process (default: 4; with --workers N "
                        "the machine takes up to N times this)")
    p.add_argument("--workers", default="1", metavar="N",
                   help="worker processes sharing the port (SO_REUSEPORT), each with its own models and "
                        "limits, under a supervisor that restarts one that dies and drains all on SIGTERM; "
                        "'auto' = one per CPU (default: 1; see docs/scaling.md)")
    p.add_argument("--hello-timeout", type=float, default=5.0,
                   help="seconds a new connection has to say hello (default: 5)")
    p.add_argument("--request-timeout", type=float, default=10.0,
                   help="seconds a connection has to send its HTTP request head (default: 10)")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="close a conversation whose client sends nothing for this many seconds (default: 60)")
    p.add_argument("--max-pending", type=int, default=32,
                   help="connections that have not said hello yet, in all (default: 32; the oldest is dropped)")
    p.add_argument("--max-pending-per-address", type=int, default=8,
                   help="connections that have not said hello yet, per client address (default: 8; "
                        "behind a reverse proxy, see --trusted-proxy)")
    p.add_argument("--trusted-proxy", action="append", metavar="ADDRESS[/BITS]", default=[],
                   help="a reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For names the client: "
                        "its connections count against that client's address; the header is ignored from "
                        "anyone else (default: none)")
    p.add_argument("--proxy-header", choices=("x-forwarded-for", "forwarded"), default="x-forwarded-for",
                   help="the header the trusted proxies set: x-forwarded-for (HAProxy 'option forwardfor', "
                        "nginx) or forwarded (RFC 7239) (default: x-forwarded-for)")
    p.add_argument("--max-loop-lag", type=float, default=0.25, metavar="SECONDS",
                   help="refuse new conversations while the event loop runs this late, on average over the "
                        "last second (default: 0.25)")
    p.add_argument("--max-backlog", type=float, default=1.5, metavar="SECONDS",
                   help="close a conversation that falls this far behind real time, with code 1013 "
                        "(default: 1.5)")
    p.add_argument("--vad-fallback", default="auto", metavar="VAD",
                   help="a cheaper VAD a conversation switches to when it falls --vad-fallback-backlog behind "
                        "real time, before it would be shed: 'auto' (webrtc when --vad is another one), a VAD "
                        "plugin name, or 'none'")
    p.add_argument("--vad-fallback-backlog", type=float, default=0.5, metavar="SECONDS",
                   help="switch a conversation to --vad-fallback when it falls this far behind real time "
                        "(default: 0.5; below --max-backlog)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, seconds running conversations have to finish before they are closed "
                        "with code 1012 (default: 30)")
    p.add_argument("--refuse-at-upgrade", action="store_true",
                   help="when full, lagging or draining, answer the WebSocket upgrade with HTTP 503 + "
                        "Retry-After (for a proxy that retries another worker) instead of closing with "
                        "1013 after the hello")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN", default=[],
                   help="another web origin allowed to open conversations (e.g. https://app.example); "
                        "the server's own page is always allowed")
    p.add_argument("--agent", default=None, metavar="MODEL",
                   help="talk to a realtime model (a 'voicekit.agents' plugin, e.g. qwen3.5-omni-plus-realtime) "
                        "instead of ASR -> assistant -> TTS; each conversation gets its own agent")
    p.add_argument("--agent-option", action="append", metavar="KEY=VALUE",
                   help="option for the agent plugin (e.g. base_url=ws://127.0.0.1:PORT, voice=Cherry)")
    p.add_argument("--asr", default=None, help="ASR plugin (default: moonshine)")
    p.add_argument("--vad", default=None, help="VAD plugin (default: webrtc)")
    p.add_argument("--tts", default=None, help="TTS plugin, or 'none' for text-only replies (default: espeak)")
    p.add_argument("--asr-option", action="append", metavar="KEY=VALUE", help="option for the ASR plugin")
    p.add_argument("--vad-option", action="append", metavar="KEY=VALUE", help="option for the VAD plugin")
    p.add_argument("--tts-option", action="append", metavar="KEY=VALUE", help="option for the TTS plugin")
    p.add_argument("--interrupt", choices=("vad", "semantic", "none"), default=None,
                   help="barge-in policy: vad (stop on speech, default), semantic, none; with --agent: the "
                        "service's semantic or server VAD (default: semantic where the model has it)")
    p.add_argument("--min-interrupt-ms", type=int, default=None,
                   help="voiced speech needed to interrupt a reply (default: 300)")
    p.add_argument("--end-silence-ms", type=int, default=None,
                   help="silence that ends an utterance (default: 600)")
    p.add_argument("--verbose", "-v", action="count", default=0, help="log more (-v info, -vv debug)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import trio

    from voicekit.errors import VoicekitError, sole_error
    from voicekit.logging import add_redactor, configure
    from voicekit.serve.server import ServeConfig, check_bind
    from voicekit.serve.workers import make_server, parse_workers, supervise

    configure({0: "warning", 1: "info"}.get(args.verbose, "debug"))
    token = args.token if args.token is not None else (os.environ.get(TOKEN_ENV) or None)
    if token:
        secret = token
        add_redactor(lambda text: text.replace(secret, "***"))
    check_bind(args.host, token)  # before loading any model: a refused address fails at once
    workers = parse_workers(args.workers)
    if workers > 1:  # a supervisor of `workers` processes, each running this command with --workers 1
        return supervise(args, workers, token)
    config = ServeConfig(host=args.host, port=args.port, token=token, max_sessions=args.max_sessions,
                         hello_timeout=args.hello_timeout, idle_timeout=args.idle_timeout,
                         request_timeout=args.request_timeout,
                         max_pending=args.max_pending, max_pending_per_address=args.max_pending_per_address,
                         allowed_origins=tuple(args.allow_origin), max_loop_lag=args.max_loop_lag,
                         max_backlog=args.max_backlog, drain_timeout=args.drain_timeout,
                         refuse_at_upgrade=args.refuse_at_upgrade, trusted_proxies=tuple(args.trusted_proxy),
                         proxy_header=args.proxy_header, vad_fallback_backlog=args.vad_fallback_backlog)
    recipe = _agent_recipe(args) if args.agent else _pipeline_recipe(args)
    name = recipe.assistant.name if recipe.assistant is not None else args.agent
    server = make_server(recipe, config)  # a worker under `--workers N` shares the port with its siblings

    async def drain_then_stop(cancel: trio.CancelScope) -> None:
        await server.drain()
        print(f"voicekit: drained ({server.stats.drained} conversation(s) closed at the deadline); stopped",
              file=sys.stderr)
        cancel.cancel()

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(server.serve)
                hint = " (add #token=YOUR_TOKEN to the URL)" if token else ""
                print(f"voicekit: serving {name!r} at {url}{hint}; press Ctrl-C to stop", file=sys.stderr)
                if not _secure_for_browsers(args.host):
                    print("voicekit: note: browsers allow the microphone only on localhost or over HTTPS; "
                          "put a TLS proxy or a tunnel in front of this address (see docs/browser.md)",
                          file=sys.stderr)
                draining = False
                async for _ in signals:  # SIGTERM: drain; a second one stops at once
                    if draining:
                        print("voicekit: second SIGTERM: stopping now", file=sys.stderr)
                        nursery.cancel_scope.cancel()
                        break
                    draining = True
                    print(f"voicekit: SIGTERM: draining ({server.active} conversation(s) running, "
                          f"{config.drain_timeout:g} s to finish)", file=sys.stderr)
                    nursery.start_soon(drain_then_stop, nursery.cancel_scope)

    try:
        trio.run(main)
    except BaseExceptionGroup as group:
        leaf = sole_error(group)
        if isinstance(leaf, KeyboardInterrupt):
            print("voicekit: stopped", file=sys.stderr)
            return 130
        if isinstance(leaf, VoicekitError):
            raise leaf from None
        raise
    except KeyboardInterrupt:
        print("voicekit: stopped", file=sys.stderr)
        return 130
    return 0


def _pipeline_recipe(args: argparse.Namespace) -> SessionRecipe:
    """ASR -> assistant -> TTS, one session per conversation (the shared engines loaded once)."""
    from voicekit.errors import ConfigError
    from voicekit.plugins.build import (
        DEFAULT_ASR,
        DEFAULT_TTS,
        DEFAULT_VAD,
        load_assistant,
        make_asr,
        make_tts,
        make_vad,
        parse_options,
    )
    from voicekit.serve.config import SessionRecipe
    from voicekit.session.interruption import make_policy
    from voicekit.session.session import SessionConfig
    from voicekit.vad.endpointer import EndpointerConfig

    if args.agent_option:
        raise ConfigError("--agent-option needs --agent MODEL (the realtime model it configures)")
    if args.assistant is None:
        raise ConfigError("name the assistant to serve (e.g. 'voicekit serve robot'), or talk to a realtime "
                          "model with --agent MODEL")
    assistant = load_assistant(args.assistant)
    asr_name = args.asr or DEFAULT_ASR
    vad_name = args.vad or DEFAULT_VAD
    asr = make_asr(asr_name, **parse_options(args.asr_option))
    vad_options: dict[str, Any] = {"sample_rate": 16000, **parse_options(args.vad_option)}
    primary = make_vad(vad_name, **vad_options)  # fail now on a bad VAD name or option, not at the first call
    fallback_name, fallback_options = _vad_fallback(args, vad_name, primary)
    tts_name = None if args.tts == "none" else (args.tts or DEFAULT_TTS)
    tts = make_tts(tts_name, **parse_options(args.tts_option)) if tts_name else None
    interrupt = args.interrupt or "vad"
    min_interrupt_ms = 300 if args.min_interrupt_ms is None else args.min_interrupt_ms
    end_silence_ms = 600 if args.end_silence_ms is None else args.end_silence_ms
    policy_options: dict[str, Any] = {"min_speech_ms": min_interrupt_ms} if interrupt == "vad" else {}
    make_policy(interrupt, **policy_options)
    return SessionRecipe(
        asr=asr, vad_factory=lambda: make_vad(vad_name, **vad_options), assistant=assistant, tts=tts,
        config=SessionConfig(endpointer=EndpointerConfig(end_silence_ms=end_silence_ms), realtime=True,
                             audio_policy="drop_oldest"),
        interruption=lambda: make_policy(interrupt, **policy_options),
        names={"asr": asr_name, "vad": vad_name, "tts": tts_name or "none",
               **({"vad_fallback": fallback_name} if fallback_name else {})},
        vad_fallback=(lambda: make_vad(fallback_name, **fallback_options)) if fallback_name else None)


def _vad_fallback(args: argparse.Namespace, vad_name: str, primary: Any) -> tuple[str | None, dict[str, Any]]:
    """The cheaper VAD for conversations that lag (``--vad-fallback``), checked now: the same
    sample rate and frame length as the primary. ``auto``: webrtc, when it fits."""
    from voicekit.errors import ConfigError
    from voicekit.plugins.build import make_vad

    wanted = args.vad_fallback
    if args.vad_fallback_backlog >= args.max_backlog:
        raise ConfigError(f"--vad-fallback-backlog ({args.vad_fallback_backlog:g} s) must be below --max-backlog "
                          f"({args.max_backlog:g} s): a conversation is shed at --max-backlog")
    name = "webrtc" if wanted == "auto" else wanted
    if wanted == "none" or name == vad_name:
        return None, {}
    options: dict[str, Any] = {"sample_rate": primary.sample_rate, "frame_ms": primary.frame_ms}
    try:
        make_vad(name, **options)
    except ConfigError as exc:
        if wanted == "auto":
            from voicekit.logging import get_logger

            get_logger("voicekit.serve").info("no VAD fallback", vad=vad_name, reason=str(exc))
            return None, {}
        raise ConfigError(f"--vad-fallback {name} cannot take {vad_name}'s {primary.sample_rate} Hz, "
                          f"{primary.frame_ms} ms frames ({exc}) — pick --vad-option frame_ms=10, 20 or 30, "
                          "or --vad-fallback none") from None
    return name, options


def _agent_recipe(args: argparse.Namespace) -> AgentRecipe:
    """A realtime agent per conversation (``--agent MODEL``), as ``voicekit run --agent`` builds it."""
    from voicekit.cli.agent import PIPELINE_ONLY, agent_setup
    from voicekit.serve.agent import agent_recipe

    serve_only = (("min_interrupt_ms", "--min-interrupt-ms"), ("end_silence_ms", "--end-silence-ms"))
    _, options, assistant = agent_setup(args, PIPELINE_ONLY + serve_only)
    return agent_recipe(args.agent, assistant, **options)


def _secure_for_browsers(host: str) -> bool:
    from voicekit.serve.server import is_loopback

    return is_loopback(host)
