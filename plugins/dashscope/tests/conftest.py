"""Fixtures of the DashScope plugin tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dashscope_testkit import ToneScript, tone_script
from voicekit_dashscope_emulator import DashScopeEmulator, FixtureEngine, TaskSettings, running_emulator


@pytest.fixture
def script() -> ToneScript:
    return tone_script(4)


@pytest.fixture
async def emulator(script: ToneScript) -> AsyncIterator[DashScopeEmulator]:
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0.25)
    async with running_emulator(engine, settings=TaskSettings(vad="energy")) as emu:
        yield emu


