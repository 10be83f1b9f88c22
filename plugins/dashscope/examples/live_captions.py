"""Live captions: stream a recording at real-time pace and print partial and final captions.

With ``DASHSCOPE_API_KEY`` set it talks to the real service (``--region`` picks the host);
without one — or with ``--emulator`` — it starts the local DashScope emulator in this process,
which transcribes with the embedded ``moonshine`` engine, so it runs offline with no key::

    python plugins/dashscope/examples/live_captions.py                     # a LibriVox clip
    python plugins/dashscope/examples/live_captions.py talk.mp3 --speed 4  # any audio file
    DASHSCOPE_API_KEY=sk-... python plugins/dashscope/examples/live_captions.py talk.wav --region beijing

Partial captions are redrawn in place on a terminal; finals are printed with their times.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AsyncExitStack

import trio
from voicekit_dashscope.asr.task import FunASRRealtime

from voicekit.asr.base import ASRConfig
from voicekit.audio.sources import FileSource
from voicekit.errors import VoicekitError


def _default_file() -> str:
    from voicekit.testing.data import librivox_clips

    return str(librivox_clips()[0][0])


async def captions(path: str, *, model: str, region: str, use_emulator: bool, speed: float,
                   hotwords: list[str]) -> None:
    tty = sys.stdout.isatty()
    async with AsyncExitStack() as stack:
        base_url = None
        api_key = None
        if use_emulator:
            from voicekit_dashscope_emulator import running_emulator

            emu = await stack.enter_async_context(running_emulator())
            base_url, api_key = emu.base_url, "sk-local-emulator-key"
            print(f"(local emulator on {emu.base_url}, engine: moonshine)")
        asr = FunASRRealtime(model, api_key=api_key, region=region, base_url=base_url, hotwords=hotwords)
        source = FileSource(path, sample_rate=16000, chunk_ms=100)
        async with asr.open_stream(ASRConfig(sample_rate=16000)) as stream:
            async def feed() -> None:
                t0 = trio.current_time()
                async for frame in source.frames():
                    await trio.sleep_until(t0 + frame.end / speed)  # real time (or faster)
                    await stream.send_audio(frame)
                await stream.finish()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                async for r in stream:
                    if r.is_final:
                        line = f"[{r.start or 0:6.2f}–{r.end or 0:6.2f}] {r.text}"
                        print(("\r\033[K" if tty else "") + line, flush=True)
                    elif tty:
                        print(f"\r\033[K  … {r.text}", end="", flush=True)
                    else:
                        print(f"  … {r.text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Print live captions of an audio file with Fun-ASR real-time.")
    ap.add_argument("file", nargs="?", help="audio file (default: a LibriVox clip from the test data)")
    ap.add_argument("--model", default="fun-asr-realtime")
    ap.add_argument("--region", default="singapore", help="singapore (default) or beijing")
    ap.add_argument("--emulator", action="store_true", help="use the local emulator even if a key is set")
    ap.add_argument("--speed", type=float, default=1.0, help="pace multiplier (1 = real time)")
    ap.add_argument("--hotword", action="append", default=[], help="bias recognition towards a word")
    args = ap.parse_args(argv)
    use_emulator = args.emulator or not os.environ.get("DASHSCOPE_API_KEY")
    from voicekit.logging import configure

    configure("warning")  # keep the captions readable (the key is redacted in any log line)
    try:
        trio.run(lambda: captions(args.file or _default_file(), model=args.model, region=args.region,
                                  use_emulator=use_emulator, speed=args.speed, hotwords=args.hotword))
    except VoicekitError as exc:
        print(f"live_captions: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
