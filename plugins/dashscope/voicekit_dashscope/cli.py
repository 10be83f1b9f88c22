"""Command-line commands of the DashScope plugin (entry-point group ``voicekit.cli``).

* ``voicekit hotwords create|list|show|update|delete`` — the vocabulary API;
* ``voicekit dashscope transcribe`` — the file-transcription APIs (:mod:`voicekit_dashscope.files_cli`).

``voicekit emulate dashscope`` comes with the separate distribution ``voicekit-dashscope-emulator``
(:mod:`voicekit_dashscope_emulator.cli`).

Each command is a sync function returning the exit code; errors print one line and exit 1 (2
for bad usage).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from voicekit.errors import VoicekitError
from voicekit.logging import configure_command
from voicekit_dashscope.auth import scrub
from voicekit_dashscope.regions import DEFAULT_REGION
from voicekit_dashscope.vocabulary import Hotword, VocabularyClient


def _words(args: argparse.Namespace) -> list[Hotword]:
    words: list[Hotword] = []
    for w in args.word or []:
        text, _, weight = w.rpartition(":") if ":" in w else (w, "", "")
        if weight and weight.isdigit():
            words.append(Hotword(text, int(weight), args.lang))
        else:
            words.append(Hotword(w, args.weight, args.lang))
    if args.file:
        path = Path(args.file)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise VoicekitError(f"cannot read hotword file {path}: {exc.strerror}") from None
        if path.suffix == ".json":
            try:
                items = json.loads(raw)
            except ValueError as exc:
                raise VoicekitError(f"hotword file {path} is not valid JSON: {exc}") from None
            if not isinstance(items, list):
                raise VoicekitError(f"hotword file {path} must hold a JSON list of {{text, weight}} objects")
            words.extend(Hotword(i, args.weight, args.lang) if isinstance(i, str) else Hotword.from_json(i)
                         for i in items)
        else:
            words.extend(Hotword(line.strip(), args.weight, args.lang) for line in raw.splitlines()
                         if line.strip() and not line.startswith("#"))
    return words


def _client(args: argparse.Namespace) -> VocabularyClient:
    return VocabularyClient(args.api_key, region=args.region, workspace=args.workspace, base_url=args.base_url)


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, ensure_ascii=False, indent=2))


def _run_hotwords(args: argparse.Namespace) -> int:
    configure_command(args.verbose)
    async def go() -> int:
        client = _client(args)
        cmd = args.hotwords_command
        if cmd == "create":
            vid = await client.create(args.model, args.prefix, _words(args))
            print(vid)
        elif cmd == "list":
            items = await client.list_all(args.prefix)
            if args.json:
                _print([{"vocabulary_id": i.vocabulary_id, "status": i.status, "gmt_create": i.gmt_create,
                         "gmt_modified": i.gmt_modified} for i in items], True)
            else:
                for i in items:
                    print(f"{i.vocabulary_id}\t{i.status}\t{i.gmt_modified or ''}")
        elif cmd == "show":
            info = await client.query(args.vocabulary_id)
            if args.json:
                _print({"vocabulary_id": info.vocabulary_id, "status": info.status,
                        "target_model": info.target_model, "vocabulary": [w.to_json() for w in info.words]}, True)
            else:
                print(f"{info.vocabulary_id}  model={info.target_model}  status={info.status}")
                for w in info.words:
                    print(f"  {w.text}\tweight={w.weight}" + (f"\tlang={w.lang}" if w.lang else ""))
        elif cmd == "update":
            await client.update(args.vocabulary_id, _words(args))
            print(f"updated {args.vocabulary_id}")
        elif cmd == "delete":
            await client.delete(args.vocabulary_id)
            print(f"deleted {args.vocabulary_id}")
        return 0

    try:
        return trio.run(go)
    except VoicekitError as exc:
        print(f"voicekit hotwords {args.hotwords_command}: {scrub(str(exc))}", file=sys.stderr)
        return 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", default=DEFAULT_REGION, help="singapore (default), beijing or us")
    p.add_argument("--workspace", help="workspace id (workspace-dedicated domain)")
    p.add_argument("--base-url", help="override the host, e.g. http://127.0.0.1:8765 for the emulator")
    p.add_argument("--api-key", help="API key (default: $DASHSCOPE_API_KEY)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verbose", "-v", action="count", default=0, help="log more on stderr (-v info, -vv debug)")


def _word_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--word", action="append", help="a hotword, optionally TEXT:WEIGHT (repeatable)")
    p.add_argument("--file", help="a file of hotwords: one per line, or a JSON list of {text, weight, lang}")
    p.add_argument("--weight", type=int, default=4, help="weight 1-5 for words without one (default 4)")
    p.add_argument("--lang", help="language code of the words, e.g. en")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hot = subparsers.add_parser("hotwords", help="manage DashScope hotword vocabularies")
    hsub = hot.add_subparsers(dest="hotwords_command", required=True)
    p = hsub.add_parser("create", help="create a vocabulary; prints its id")
    p.add_argument("--model", required=True, help="the ASR model that will use it, e.g. fun-asr-realtime")
    p.add_argument("--prefix", required=True, help="a short name: lowercase letters and digits")
    _word_args(p)
    _common(p)
    p = hsub.add_parser("list", help="list vocabularies")
    p.add_argument("--prefix", help="only those with this prefix")
    _common(p)
    p = hsub.add_parser("show", help="show one vocabulary and its words")
    p.add_argument("vocabulary_id")
    _common(p)
    p = hsub.add_parser("update", help="replace a vocabulary's words")
    p.add_argument("vocabulary_id")
    _word_args(p)
    _common(p)
    p = hsub.add_parser("delete", help="delete a vocabulary")
    p.add_argument("vocabulary_id")
    _common(p)
    for name in ("create", "list", "show", "update", "delete"):
        hsub.choices[name].set_defaults(func=_run_hotwords)

    from voicekit_dashscope.files_cli import register as register_files

    register_files(subparsers)  # voicekit dashscope transcribe ...


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m voicekit_dashscope.cli``) while the core CLI is not there."""
    parser = argparse.ArgumentParser(prog="voicekit")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
