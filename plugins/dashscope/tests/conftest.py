"""Fixtures of the DashScope plugin tests, grouped by layer:

* ``protocol/``: the sans-IO protocol modules (no sockets);
* ``client/``: voicekit's clients and plugins against the emulator (loopback or in memory);
* ``emulator/``: the emulator's own behaviour (faults, security, realtime endpoint, embedded engine);
* ``sdk/``: the official ``dashscope`` SDK, unchanged, against the emulator;
* ``cli/``: the command line (``voicekit emulate dashscope``, ``hotwords``, regions, the bench script);
* ``journeys/``: end-to-end journeys against one long-lived emulator process.

Helpers live in the ``testkit`` package beside this file (this folder is on ``sys.path`` because this
conftest is, in pytest's default ``prepend`` import mode): tests import ``from testkit.<module>``,
never from another test module. Test file names stay unique across the whole checkout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from testkit.common import ToneScript, tone_script
from voicekit_dashscope_emulator import DashScopeEmulator, FixtureEngine, TaskSettings, running_emulator


@pytest.fixture
def script() -> ToneScript:
    return tone_script(4)


@pytest.fixture
async def emulator(script: ToneScript) -> AsyncIterator[DashScopeEmulator]:
    engine = FixtureEngine(script.sentences, key="tone", partial_every=0.25)
    async with running_emulator(engine, settings=TaskSettings(vad="energy")) as emu:
        yield emu


