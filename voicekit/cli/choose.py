"""``voicekit choose`` (pick an ASR engine for your needs) and ``voicekit models`` (compare them).

Both read the capability records of the installed ASR plugins (see :mod:`voicekit.chooser`).
"""

from __future__ import annotations

import argparse
import json
import sys

from voicekit.chooser import NoEngineError, Requirements, choose, format_table, table_rows


def _run_choose(args: argparse.Namespace) -> int:
    req = Requirements(live=not args.batch, language=args.language,
                       terms=tuple(t.strip() for t in (args.terms or "").split(",")), terms_via=args.terms_via,
                       diarization=args.diarize, emotion=args.emotion, word_timestamps=args.words,
                       region=args.region, duration_s=args.duration, offline=args.offline,
                       semantic_interruption=args.semantic_interruption, openai_compatible=args.openai_compatible)
    try:
        pick = choose(req)
    except NoEngineError as exc:
        print(f"voicekit choose: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"best": pick.best.name, "reasons": pick.best.reasons,
                          "runners_up": [{"name": c.name, "score": c.score, "reasons": c.reasons}
                                         for c in pick.runners_up],
                          "rejected": [{"name": n, "why": w} for n, w in pick.rejected]}, indent=2))
    else:
        print(pick.explain(runners_up=args.show))
    return 0


def _run_models(args: argparse.Namespace) -> int:
    rows = table_rows()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``voicekit choose`` (entry point of the ``voicekit.cli`` group)."""
    p = subparsers.add_parser("choose", help="pick the best installed ASR engine for your requirements",
                              description="Explains the pick, the runners-up and why others do not fit.")
    p.add_argument("--batch", action="store_true",
                   help="recorded files, non-real-time (default: real-time results in a live session)")
    p.add_argument("--language", help="language code, e.g. en")
    p.add_argument("--terms", help="comma-separated domain terms / names to recognise")
    p.add_argument("--terms-via", choices=("any", "hotwords", "context"), default="any",
                   help="insist on hotword lists (stable vocabularies) or on prompt context (most flexible)")
    p.add_argument("--diarize", action="store_true", help="label speakers")
    p.add_argument("--emotion", action="store_true", help="label emotion")
    p.add_argument("--words", action="store_true", help="word timestamps")
    p.add_argument("--semantic-interruption", action="store_true",
                   help="the server decides interruptions by meaning (a realtime conversational model)")
    p.add_argument("--openai-compatible", action="store_true", help="reachable through an OpenAI-compatible HTTP API")
    p.add_argument("--region", help="cloud region the audio may go to: beijing, singapore, us")
    p.add_argument("--duration", type=float, help="audio length in seconds (batch)")
    p.add_argument("--offline", action="store_true", help="must run on this machine")
    p.add_argument("--show", type=int, default=3, help="runners-up to show (default 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_choose)


def register_models(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``voicekit models`` (entry point of the ``voicekit.cli`` group)."""
    p = subparsers.add_parser("models", help="compare the installed ASR engines (capability table)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_models)
