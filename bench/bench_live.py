"""Live-path latency through real PortAudio/ALSA devices, with no sound card.

Runs ``voicekit run robot --input mic --output speaker --json`` in a child process against the
real-time ALSA pipe devices of :mod:`voicekit.testing.alsa`, says "go forward ten meters" (a real
recording) into the microphone, then talks over the reply with the same words, louder. Every time
below is taken in this process on one monotonic clock, at the devices:

* **reply latency** — from the end of the request's last voiced stretch (webrtcvad on the clip)
  going into the microphone to the first audible sample of the reply coming out of the speaker.
  It includes the endpointer's end-of-speech silence (``--end-silence-ms``, 600 ms by default), ASR
  finalisation, the handler, TTS and the device buffers.
* **barge-in latency** — from the onset of the interrupting speech (its first run of 100 ms of
  voiced frames; the clicks before the words are cut from this clip) going into the microphone to
  the last audible sample of the interrupted reply coming out of the speaker. It includes VAD
  onset, the interruption policy's ``--min-interrupt-ms`` (300 ms of voiced speech by default)
  and up to 0.128 s of audio already queued in the speaker (its pipe).
* **mic lost** — seconds of microphone audio the child did not read in time (overruns).
* **cut → silence** — from the child printing ``reply_interrupted`` to the last audible reply
  sample (what the speaker still had queued when the reply was cancelled).

    .venv/bin/python bench/bench_live.py               # 3 conversations
    .venv/bin/python bench/bench_live.py --trials 5 --min-interrupt-ms 200

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

from voicekit.testing.alsa import LiveAssistant, VirtualSoundCard, played_segments
from voicekit.testing.data import speech

RATE = 16000
FRAME = 320  # 20 ms


def _clip(gain: float) -> bytes:
    with wave.open(str(speech("goforward"))) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) * gain
    return np.clip(a, -32768, 32767).astype("<i2").tobytes()


def _voiced_span(pcm: bytes, min_run: int = 5) -> tuple[float, float]:
    """Speech onset and end in the clip, in seconds: the start of the first and the end of the last
    run of at least ``min_run`` voiced 20 ms frames (webrtcvad, mode 2). Shorter runs — the
    recording's clicks before the words — do not count."""
    vad = webrtcvad.Vad(2)
    flags = [vad.is_speech(pcm[2 * i: 2 * (i + FRAME)], RATE) for i in range(0, len(pcm) // 2 - FRAME + 1, FRAME)]
    runs: list[tuple[int, int]] = []
    start = None
    for k, voiced in enumerate([*flags, False]):
        if voiced and start is None:
            start = k
        elif not voiced and start is not None:
            if k - start >= min_run:
                runs.append((start, k))
            start = None
    if not runs:
        raise SystemExit("the clip has no speech")
    return runs[0][0] * FRAME / RATE, runs[-1][1] * FRAME / RATE


def _from_onset(pcm: bytes, lead: float = 0.1) -> bytes:
    """The clip from ``lead`` seconds before its speech onset (drops the clicks before the words)."""
    onset, _ = _voiced_span(pcm)
    return pcm[2 * max(0, int((onset - lead) * RATE)):]


def _wait(pred: Any, until: float) -> bool:
    while time.monotonic() < until:
        if pred():
            return True
        time.sleep(0.01)
    return False


def conversation(folder: Path, extra: list[str]) -> dict[str, float]:
    request, interruption = _clip(1.0), _from_onset(_clip(2.0))
    req_span, int_span = _voiced_span(request), _voiced_span(interruption)
    until = time.monotonic() + 90
    with VirtualSoundCard(folder, paced=True) as card:
        with LiveAssistant(card, extra=tuple(extra)) as live:
            if not card.mic_reading.wait(60):
                raise SystemExit("the child never opened the microphone")
            time.sleep(0.3)
            card.say(request)
            if not _wait(lambda: played_segments(card.played), until):
                raise SystemExit(f"no reply was played; events: {live.kinds()}")
            time.sleep(0.2)
            card.say(interruption)
            if not _wait(lambda: "reply_finished" in live.kinds(), until):
                raise SystemExit(f"no second reply; events: {live.kinds()}")
            time.sleep(0.3)
        segments = played_segments(card.played)
        # microphone audio the child failed to read in time (an overrun), before we stopped it
        dropped = sum(1 for t in card.mic_drop_times if t < live.stopped_at) * card.tick
    events = live.events
    cut = next((e for e in events if e["event"] == "reply_interrupted"), None)
    if cut is None or len(segments) < 2:
        raise SystemExit(f"the reply was not interrupted; events: {[e['event'] for e in events]}")
    first = segments[0]
    speech_end = card.clip_times[0] + req_span[1]
    barge_start = card.clip_times[1] + int_span[0]
    return {
        "reply_latency": first[0] - speech_end,
        "barge_in_latency": first[1] - barge_start,
        "cut_to_silence": first[1] - cut["wall"],
        "mic_lost_s": dropped,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--min-interrupt-ms", type=int, default=None)
    ap.add_argument("--end-silence-ms", type=int, default=None)
    ap.add_argument("--echo", default="none",
                    help="echo guard for the child (default none: the pipe devices have no echo path)")
    args = ap.parse_args()
    extra: list[str] = ["--echo", args.echo]
    if args.min_interrupt_ms is not None:
        extra += ["--min-interrupt-ms", str(args.min_interrupt_ms)]
    if args.end_silence_ms is not None:
        extra += ["--end-silence-ms", str(args.end_silence_ms)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.trials):
            row = conversation(Path(tmp) / f"t{i}", extra)
            rows.append(row)
            print(f"trial {i + 1}: " + "  ".join(f"{k}={v * 1000:.0f} ms" if not k.endswith("_s") else
                                                 f"{k}={v:.3f} s" for k, v in row.items()), flush=True)
    print()
    print(f"live path, {args.trials} conversations (ALSA pipe devices, moonshine + espeak, robot assistant)")
    for key, label in (("reply_latency", "end of speech -> reply starts playing"),
                       ("barge_in_latency", "interrupting speech -> reply silent"),
                       ("cut_to_silence", "reply_interrupted event -> reply silent")):
        values = [r[key] * 1000 for r in rows]
        print(f"  {label:42s} median {statistics.median(values):6.0f} ms   "
              f"min {min(values):6.0f}   max {max(values):6.0f}")


if __name__ == "__main__":
    main()
