"""The conformance kit accepts a correct plugin and catches broken ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import numpy as np
import pytest

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.testing import FakeASR
from voicekit.testing.conformance import ConformanceError, check_asr_plugin

CLIP = AudioFrame.from_array(np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)


async def test_fake_asr_conforms() -> None:
    results = await check_asr_plugin(lambda: FakeASR(["go forward", "go forward"]), speech=CLIP,
                                     expect_words=["go forward"])
    assert [r.text for r in results if r.is_final] == ["go forward", "go forward"]


class _PartialAfterFinal(FakeASR):
    """Broken on purpose: sends a stale partial after each final."""

    capabilities: ClassVar[ASRCapabilities] = FakeASR.capabilities

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[object]:  # type: ignore[override]
        async with super().open_stream(config) as inner:
            original = inner.speech_ended

            async def ended(t: float) -> None:
                await original(t)
                await inner._send.send(TranscriptResult("late", False, inner._utt))

            inner.speech_ended = ended  # type: ignore[method-assign]
            yield inner


async def test_catches_a_partial_after_its_final() -> None:
    with pytest.raises(ConformanceError, match="after its final"):
        await check_asr_plugin(lambda: _PartialAfterFinal(["a", "b"]), speech=CLIP)


async def test_catches_missing_words_and_bad_rates() -> None:
    with pytest.raises(ConformanceError, match="misses"):
        await check_asr_plugin(lambda: FakeASR(["go back", "go back"]), speech=CLIP, expect_words=["forward"])
    with pytest.raises(ConformanceError, match="mono audio"):
        await check_asr_plugin(lambda: FakeASR(["x", "x"]), speech=AudioFrame(bytes(800), 8000))
