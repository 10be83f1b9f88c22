"""``voicekit dashscope transcribe FILE_OR_URL...`` — the cloud file-transcription APIs.

Local files are uploaded to DashScope's temporary store (streamed, with a progress line on
stderr); URLs are passed through. The transcript is rendered with voicekit's formats (txt, json,
srt, vtt, rttm), with speaker labels when ``--diarize`` is on. A file that failed is reported on
stderr with its error code and the exit status is 1; the others are still printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from voicekit.errors import VoicekitError
from voicekit.logging import configure_command
from voicekit_dashscope.regions import DEFAULT_REGION


def _progress() -> Any:
    last: dict[str, int] = {}

    def report(name: str, sent: int, total: int) -> None:
        pct = int(100 * sent / total) if total else 100
        if pct // 10 != last.get(name, -10) // 10 or sent == total:
            last[name] = pct
            print(f"uploading {name}: {pct}%", file=sys.stderr, flush=True)

    return report


def _run_transcribe(args: argparse.Namespace) -> int:
    from voicekit.formats import render
    from voicekit_dashscope.client.files import FileTranscriber
    from voicekit_dashscope.protocol.files import FileOptions, build_submit
    from voicekit_dashscope.upload import transcribe_sources

    configure_command(args.verbose)
    try:
        options = FileOptions(vocabulary_id=args.vocabulary_id, channel_id=tuple(args.channel or ()),
                              diarization=args.diarize, speaker_count=args.speakers, language=args.language,
                              disfluency_removal=args.remove_disfluency, context=args.context,
                              word_timestamps=not args.no_words)
        # refuse options the model does not take now, before any upload or network work
        build_submit(args.model, ["https://file.invalid/check.wav"], options)
        client = FileTranscriber(args.api_key, region=args.region, workspace=args.workspace,
                                 base_url=args.base_url, poll_first=args.poll, poll_cap=max(args.poll, 5.0))
        results = trio.run(lambda: transcribe_sources(client, args.model, args.sources, options,
                                                      progress=_progress(), deadline=args.deadline))
    except VoicekitError as exc:
        print(f"voicekit dashscope transcribe: {exc}", file=sys.stderr)
        return 2
    status = 0
    for src, r in zip(args.sources, results, strict=False):
        if r.transcript is None:
            print(f"{src}: failed: {r.outcome.code}: {r.outcome.message}", file=sys.stderr)
            status = 1
            continue
        sys.stdout.write(render(r.transcript.results(), args.format, source=str(src)))
    return status


def register_files(dashscope_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = dashscope_sub.add_parser("transcribe", help="transcribe files or URLs with the cloud file APIs")
    t.add_argument("sources", nargs="+", help="local files (uploaded) or http(s)/oss URLs")
    t.add_argument("--model", default="fun-asr",
                   help="fun-asr (default), fun-asr-mtl, paraformer-v2, paraformer-8k-v2, qwen3-asr-flash-filetrans")
    t.add_argument("--format", default="txt", choices=("txt", "json", "srt", "vtt", "rttm"))
    t.add_argument("--diarize", action="store_true", help="label speakers (fun-asr, paraformer)")
    t.add_argument("--speakers", type=int, help="expected number of speakers (2-100), with --diarize")
    t.add_argument("--language", help="language code hint, e.g. en")
    t.add_argument("--vocabulary-id", help="hotword list id (voicekit hotwords create)")
    t.add_argument("--context", help="context text for qwen3-asr-flash-filetrans (domain terms)")
    t.add_argument("--channel", type=int, action="append", help="channel index to transcribe (repeatable)")
    t.add_argument("--remove-disfluency", action="store_true", help="drop filler words")
    t.add_argument("--no-words", action="store_true", help="no word timestamps (qwen3-asr-flash-filetrans)")
    t.add_argument("--deadline", type=float, default=3600.0, help="seconds to wait for the result (default 3600)")
    t.add_argument("--poll", type=float, default=1.0, help="first poll interval in seconds (default 1)")
    t.add_argument("--region", default=DEFAULT_REGION, help="singapore (default) or beijing")
    t.add_argument("--workspace", help="workspace id (workspace-dedicated domain)")
    t.add_argument("--base-url", help="override the host, e.g. http://127.0.0.1:8765 for the emulator")
    t.add_argument("--api-key", help="API key (default: $DASHSCOPE_API_KEY)")
    t.add_argument("--verbose", "-v", action="count", default=0, help="log more on stderr (-v info, -vv debug)")
    t.set_defaults(func=_run_transcribe)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds ``voicekit dashscope ...`` (or joins it if it already exists)."""
    ds: argparse.ArgumentParser | None = subparsers.choices.get("dashscope")
    if ds is None:
        ds = subparsers.add_parser("dashscope", help="DashScope cloud file transcription")
    for action in ds._actions:
        if isinstance(action, argparse._SubParsersAction):
            register_files(action)
            return
    register_files(ds.add_subparsers(dest="dashscope_command", required=True))
