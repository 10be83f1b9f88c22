"""ScriptedSource plays a long clip to many sessions without copying it once per session."""

from __future__ import annotations

import tracemalloc
from contextlib import AsyncExitStack

import numpy as np
import trio
import trio.testing

from voicekit.audio.frame import AudioFrame
from voicekit.testing.scripted import ScriptedSource, Silence, Speech


def long_clip(seconds: float = 30.0, rate: int = 16000) -> AudioFrame:
    t = np.arange(int(seconds * rate)) / rate
    return AudioFrame.from_array((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)


def test_a_hundred_sources_over_one_clip_share_its_samples() -> None:
    clip = long_clip()
    script = [Silence(0.05), Speech(clip=clip), Silence(0.1)]
    got: list[list[bytes]] = []
    held = 0

    async def main() -> None:
        nonlocal held
        warm = ScriptedSource(script, realtime=False).frames()  # lazy imports happen before we measure
        await warm.__anext__()
        await warm.aclose()  # type: ignore[attr-defined]
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            async with AsyncExitStack() as stack:
                for _ in range(100):
                    gen = ScriptedSource(script, realtime=False).frames()
                    stack.push_async_callback(gen.aclose)  # type: ignore[attr-defined]
                    # every source is inside the clip, its generator suspended there
                    got.append([(await gen.__anext__()).pcm for _ in range(5)])
                held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # one copy of the clip per source would be 100 x 960 kB; the sources hold only small pieces
    assert held < len(clip.pcm), f"100 sources hold {held / 2**20:.1f} MB for a {len(clip.pcm) / 2**20:.1f} MB clip"
    # and they play it: 50 ms of silence, then the clip from its first sample
    first = got[0]
    assert first[0] == first[1] == bytes(640)
    assert first[2] == bytes(320) + clip.pcm[:320]
    assert first[3] == clip.pcm[320:960]
    assert all(g == first for g in got)


def test_the_whole_script_is_played_exactly() -> None:
    clip = long_clip(1.013)
    script = [Silence(0.031), Speech(clip=clip), Silence(0.0), Speech(seconds=0.05), Silence(0.017)]
    src = ScriptedSource(script, chunk_ms=20)
    frames: list[AudioFrame] = []

    async def main() -> None:
        async for f in src.frames():
            frames.append(f)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    pcm = b"".join(f.pcm for f in frames)
    total = round(0.031 * 16000) + len(clip.pcm) // 2 + round(0.05 * 16000) + round(0.017 * 16000)
    assert len(pcm) == 2 * total
    start = round(0.031 * 16000) * 2
    assert pcm[:start] == bytes(start)
    assert pcm[start : start + len(clip.pcm)] == clip.pcm
    assert all(len(f.pcm) == 640 for f in frames[:-1])
    # timestamps are exact audio positions
    assert [f.timestamp for f in frames] == [i * 320 / 16000 for i in range(len(frames))]
