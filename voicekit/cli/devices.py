"""``voicekit devices``: list the audio devices PortAudio sees (a ``voicekit.cli`` extension)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``devices`` subcommand (entry point of the ``voicekit.cli`` group)."""
    p = subparsers.add_parser(
        "devices", help="list microphones and speakers (index, name, channels, default rate)",
        description="List the audio devices PortAudio sees. Pick one with --device INDEX or NAME "
                    "in the library, or VOICEKIT_INPUT_DEVICE / VOICEKIT_OUTPUT_DEVICE for 'voicekit run'.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--input", action="store_true", help="only devices that can record")
    which.add_argument("--output", action="store_true", help="only devices that can play")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voicekit.audio.device import list_devices
    from voicekit.errors import AudioError

    devices = list_devices()
    if args.input:
        devices = [d for d in devices if d.max_input_channels > 0]
    elif args.output:
        devices = [d for d in devices if d.max_output_channels > 0]
    if args.json:
        print(json.dumps([attrs.asdict(d) for d in devices], indent=2))
        return 0
    if not devices:
        kind = "input " if args.input else "output " if args.output else ""
        raise AudioError(f"no {kind}audio devices found; on a server use --input FILE and --output FILE.wav, "
                         "or set up ALSA/PulseAudio")
    print(_table(devices))
    return 0


def _table(devices: list[Any]) -> str:
    rows = [("index", "in", "out", "rate", "api", "name")]
    for d in devices:
        marks = [m for m, on in (("default input", d.default_input), ("default output", d.default_output)) if on]
        name = d.name + (f"  [{', '.join(marks)}]" if marks else "")
        rows.append((str(d.index), str(d.max_input_channels), str(d.max_output_channels),
                     str(d.default_sample_rate), d.host_api, name))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for r in rows:
        cells = [r[0].rjust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3].rjust(widths[3]),
                 r[4].ljust(widths[4]), r[5]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
