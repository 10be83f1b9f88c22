"""Barge-in on the local (non-Omni) path: how fast the reply goes silent, and what short sounds do.

**Latency** (real clock, paced like a microphone and a speaker): a session hears a real recording
("go somewhere and do something"), answers with a long espeak-ng reply, and 4 s later a second real
recording ("go forward ten meters") speaks over it. The figure is *speech onset → reply silent*:
from the first voiced frame of the interrupting speech (where the VAD, run on the clip alone, first
hears speech) to the moment the last reply sample written before the reply went quiet (paused or
cut) would have finished playing.

**Short sounds** (``--sounds``; trio's virtual clock, webrtc VAD on real audio, a scripted
recognizer and a tone for the reply): each sound is played over a reply, and the table says
whether the reply was interrupted (a false interruption: none of these is a request) and for how
long it paused. The sounds:

* real non-speech: room noise, breaths and lip noise between the words of the LibriVox
  recordings (``<sil>`` spans of their alignments) and before/after the command recordings,
  from the pocketsphinx 5.1.1 source package's ``test/data`` (LibriVox: public domain; the
  command recordings: BSD, the package's licence);
* real short words, backchannel-length (one word, 0.1-0.4 s: "and", "then", "ill", "more",
  "still" ...), cut from the same LibriVox recordings by their word alignments (public domain);
* synthetic backchannels ("uh-huh", "mm-hmm", "yeah", "okay") from espeak-ng, for coverage only
  (skipped without espeak-ng).

    .venv/bin/python bench/bench_bargein.py [--trials 3] [--sounds] [--no-latency]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trio
import trio.testing

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.handlers import Assistant, Turn
from voicekit.session import Session, SessionConfig
from voicekit.session.interruption import InterruptionPolicy, SemanticInterruption, VADInterruption
from voicekit.testing import FakeASR, FakeTTS, ScriptedSource, Silence, Speech
from voicekit.testing.data import pocketsphinx_data, speech
from voicekit.vad.endpointer import Endpointer, SpeechStart
from voicekit.vad.webrtc import WebRTCVAD

RATE = 16000


def clip(name: str) -> AudioFrame:
    with wave.open(str(speech(name))) as w:
        return AudioFrame(w.readframes(w.getnframes()), w.getframerate())


def first_voiced(frame: AudioFrame) -> float:
    ep = Endpointer(WebRTCVAD(16000, 30, 2))
    for item in ep.push(frame):
        if isinstance(item, SpeechStart):
            return item.voiced_at
    raise RuntimeError("no speech in clip")


class TimedSink:
    """Records (start, end) of every write on trio's clock."""

    def __init__(self, rate: int) -> None:
        self.sample_rate = rate
        self.channels = 1
        self.realtime = False
        self.writes: list[tuple[float, float]] = []

    async def write(self, frame: AudioFrame) -> None:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        self.writes.append((now, now + frame.duration))

    async def aclose(self) -> None:
        pass

    def silent_after(self, onset: float, gap: float = 0.03) -> float | None:
        """When the reply went quiet after ``onset``: the end of the last write before the first
        pause in the writes (or before they stopped)."""
        later = [w for w in self.writes if w[1] > onset]
        for (_, end), (nxt, _) in itertools.pairwise(later):
            if nxt - end > gap:
                return end
        return later[-1][1] if later else None


def story() -> Assistant:
    a = Assistant("story")

    @a.fallback
    async def tell(turn: Turn) -> str:
        return ("Once upon a time there was a small robot that lived on a long straight line. "
                "Every morning it rolled forward to see the sun, and every evening it rolled back home.")

    return a


async def trial(policy: InterruptionPolicy | None) -> float | None:
    from voicekit.plugins.build import make_asr, make_tts

    first, second = clip("something"), clip("goforward")
    at = first.duration + 0.5 + 4.0  # the interrupting speech starts here in the input
    script = [Silence(0.5), Speech(clip=first), Silence(4.0), Speech(clip=second), Silence(3.0)]
    tts = make_tts("espeak")
    sink = TimedSink(tts.capabilities.sample_rate)
    source = ScriptedSource(script, realtime=True)
    session = Session(source, asr=make_asr("moonshine"), vad=WebRTCVAD(16000, 30, 2), assistant=story(),
                      tts=tts, sink=sink, interruption=policy, config=SessionConfig(realtime=True))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        async for _ in session.events():
            pass
    onset = start + at + first_voiced(second)
    silent = sink.silent_after(onset)
    return None if silent is None else silent - onset


# -- short sounds over a reply ----------------------------------------------------------------


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def real_sounds() -> list[tuple[str, str, np.ndarray]]:
    """(kind, name, samples): real non-speech and real one-word utterances."""
    data = pocketsphinx_data()
    out: list[tuple[str, str, np.ndarray]] = []
    lib = data / "librivox"
    for ali in sorted(lib.glob("*.json")):
        if ali.name.endswith((".phone.json", ".state.json")) or not ali.with_suffix(".wav").exists():
            continue
        audio = _read(ali.with_suffix(".wav"))
        words = json.loads(ali.read_text())["w"]
        tag = ali.stem.rsplit("-", 1)[-1]
        for w in words:
            b, d, t = w["b"], w["d"], w["t"]
            seg = audio[int(b * RATE): int((b + d) * RATE)]
            if t == "<sil>" and d >= 0.1:
                out.append(("non-speech", f"librivox {tag} pause at {b:.2f}s ({d * 1000:.0f} ms)", seg))
            elif t not in ("<sil>", "(NULL)") and 0.1 <= d <= 0.4 and len(out) < 200:
                # a margin of 30 ms each side, so the word is whole
                seg = audio[max(0, int((b - 0.03) * RATE)): int((b + d + 0.03) * RATE)]
                out.append(("short word", f"librivox {tag} '{t.split('(')[0]}' ({d * 1000:.0f} ms)", seg))
    for name in ("goforward", "something", "numbers"):
        audio = _read(data / f"{name}.wav")
        ep = Endpointer(WebRTCVAD(16000, 30, 2))
        voiced = next((i.voiced_at for i in ep.push(AudioFrame(audio.tobytes(), RATE))
                       if isinstance(i, SpeechStart)), None)
        if voiced is not None and voiced > 0.15:
            out.append(("non-speech", f"{name}.wav lead-in ({voiced * 1000:.0f} ms)",
                        audio[: int((voiced - 0.05) * RATE)]))
    return out


def synthetic_backchannels() -> list[tuple[str, str, np.ndarray]]:
    espeak = shutil.which("espeak-ng") or shutil.which("espeak")
    if espeak is None:
        return []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for text in ("uh-huh", "mm-hmm", "yeah", "okay"):
            path = Path(tmp) / "b.wav"
            subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True)
            with wave.open(str(path)) as w:
                rate = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            idx = np.round(np.arange(0, len(pcm), rate / RATE)).astype(int)
            out.append(("synthetic backchannel", f"espeak '{text}'", pcm[idx[idx < len(pcm)]]))
    return out


def long_reply() -> Assistant:
    a = Assistant("long")

    @a.fallback
    async def tell(turn: Turn) -> str:
        return " ".join(["once upon a time there was a robot"] * 3)  # 24 words, 7.2 s

    return a


async def over_reply(sound: np.ndarray, policy: InterruptionPolicy | None) -> tuple[bool, float]:
    """Play ``sound`` 1 s into a reply; (interrupted, seconds the reply was paused)."""
    # the request (a real command) ends near 3.1 s, the reply starts 0.6 s later and lasts 7.2 s
    script = [Silence(0.5), Speech(clip=clip("goforward")), Silence(2.0),
              Speech(clip=AudioFrame(sound.tobytes(), RATE)), Silence(9.0)]
    sink = TimedSink(RATE)
    session = Session(ScriptedSource(script), asr=FakeASR(["tell me a story", ""], partial_every=0),
                      vad=WebRTCVAD(16000, 30, 2), assistant=long_reply(), tts=FakeTTS(), sink=sink,
                      interruption=policy, config=SessionConfig(realtime=True))
    interrupted = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        async for event in session.events():
            interrupted |= isinstance(event, ev.ReplyInterrupted)
    gaps = [nxt - end for (_, end), (nxt, _) in itertools.pairwise(sink.writes)]
    return interrupted, sum(g for g in gaps if g > 1e-6)


def sounds_table() -> None:
    sounds = real_sounds() + synthetic_backchannels()
    policies: list[tuple[str, Callable[[], InterruptionPolicy | None]]] = [
        ("VADInterruption(300), no pause (before)", lambda: VADInterruption(300)),
        ("default: VADInterruption(300, pause=True)", lambda: None),
    ]
    for kind in ("non-speech", "short word", "synthetic backchannel"):
        group = [s for s in sounds if s[0] == kind]
        if not group:
            continue
        print(f"\n{kind}: {len(group)} sounds")
        for name, make in policies:
            results = [trio.run(over_reply, s, make(), clock=trio.testing.MockClock(autojump_threshold=0))
                       for _, _, s in group]
            cut = [g[1] for g, r in zip(group, results, strict=True) if r[0]]
            paused = [r[1] for r in results if not r[0] and r[1] > 0]
            print(f"  {name}: interrupted {len(cut)}/{len(group)}"
                  + (f" ({', '.join(cut[:6])}{' ...' if len(cut) > 6 else ''})" if cut else "")
                  + (f"; paused and resumed {len(paused)}, pause median {statistics.median(paused) * 1000:.0f} ms "
                     f"max {max(paused) * 1000:.0f} ms" if paused else ""))


def main() -> None:
    import voicekit.logging

    voicekit.logging.configure("warning")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--sounds", action="store_true", help="also the short-sounds table")
    parser.add_argument("--no-latency", action="store_true", help="skip the real-clock latency trials")
    args = parser.parse_args()
    if not args.no_latency:
        policies: list[tuple[str, Callable[[], InterruptionPolicy | None]]] = [
            ("default (vad, pause at speech start, cut after 300 ms)", lambda: None),
            ("vad, min_speech_ms=0", lambda: VADInterruption(0)),
            ("vad, min_speech_ms=100, no pause", lambda: VADInterruption(100)),
            ("vad, min_speech_ms=300, no pause (the default before)", lambda: VADInterruption(300)),
            ("semantic (pause at once, decide on partials)", lambda: SemanticInterruption()),
        ]
        for name, make in policies:
            results = [trio.run(trial, make()) for _ in range(args.trials)]
            got = [r * 1000 for r in results if r is not None]
            if not got:
                print(f"{name}: the reply never went silent")
                continue
            print(f"{name}: speech onset -> reply silent median {statistics.median(got):.0f} ms "
                  f"(min {min(got):.0f}, max {max(got):.0f}; {len(got)} trials)", flush=True)
    if args.sounds:
        sounds_table()


if __name__ == "__main__":
    main()
