"""PocketSphinx through voicekit: speed and accuracy on real speech.

* dictation (bundled US English language model) on the five LibriVox clips of the pocketsphinx
  source distribution: word error rate and CPU seconds per audio second, with the default
  decoder settings and with a faster, narrower beam (``maxhmmpf=3000, fwdflat=False``);
* command mode (the ``goforward.gram`` grammar) and keyword spotting on ``goforward``.

Each clip is streamed in 20 ms frames with a start marker at 0 and an end marker at the clip's
end, exactly as a session would. CPU time covers the whole process (the decoder runs in worker
threads).

    python bench/bench_pocketsphinx.py
"""

from __future__ import annotations

import time
import wave
from pathlib import Path

import trio
from voicekit_pocketsphinx import PocketSphinxASR

from voicekit.asr.base import ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.testing.data import librivox_clips, pocketsphinx_data, speech
from voicekit.testing.wer import wer


def read(path: Path) -> AudioFrame:
    with wave.open(str(path)) as w:
        return AudioFrame(w.readframes(w.getnframes()), w.getframerate())


async def transcribe(engine: PocketSphinxASR, config: ASRConfig, clip: AudioFrame) -> TranscriptResult:
    async with engine.open_stream(config) as stream:
        await stream.speech_started(0.0)
        for frame in clip.split(320):
            await stream.send_audio(frame)
        await stream.speech_ended(clip.duration)
        await stream.finish()
        finals = [r async for r in stream if r.is_final]
    return finals[-1]


async def measure(label: str, engine: PocketSphinxASR, config: ASRConfig,
                  items: list[tuple[AudioFrame, str]]) -> None:
    await transcribe(engine, config, items[0][0])  # load the models outside the measurement
    t0 = time.process_time()
    hyps = [(await transcribe(engine, config, clip)).text for clip, _ in items]
    cpu = time.process_time() - t0
    audio = sum(clip.duration for clip, _ in items)
    print(f"{label:<46} WER {wer([r for _, r in items], hyps):6.1%}   "
          f"{cpu / audio:5.2f} CPU s / audio s   ({audio:.1f} s of audio)")


async def main() -> None:
    libri = [(read(p), ref) for p, ref in librivox_clips()]
    await measure("dictation, LibriVox, default", PocketSphinxASR(), ASRConfig(), libri)
    fast = PocketSphinxASR(decoder_options={"maxhmmpf": 3000, "fwdflat": False})
    await measure("dictation, LibriVox, maxhmmpf=3000 no fwdflat", fast, ASRConfig(), libri)
    go = [(read(speech("goforward")), "go forward ten meters")]
    grammar = (pocketsphinx_data() / "goforward.gram").read_text()
    await measure("grammar goforward.gram, goforward", PocketSphinxASR(), ASRConfig(grammar=grammar), go)
    await measure("keyword 'forward', goforward", PocketSphinxASR(), ASRConfig(keywords=("forward",)),
                  [(go[0][0], "forward")])


if __name__ == "__main__":
    trio.run(main)
