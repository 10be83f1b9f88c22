"""The testing kit: deterministic pieces for testing sessions and plugins on trio's virtual clock.

* :class:`ScriptedSource` — audio built from a script (silence, "speech", real clips), paced on
  trio's clock, so a ten-minute conversation runs in well under a second under ``MockClock``;
* :class:`EnergyVAD` — a VAD that calls a frame speech when it is loud enough (exact on
  scripted audio);
* :class:`FakeASR` — an ASR plugin that answers each utterance with the next scripted text,
  with word-by-word partials;
* :class:`FakeTTS` — a TTS plugin that "speaks" a fixed time per word;
* :class:`Timeline` — helpers to assert on a session's event stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "EnergyVAD",
    "FakeASR",
    "FakeTTS",
    "ScriptedSource",
    "Silence",
    "Speech",
    "Timeline",
    "collect",
]

_EXPORTS = {
    "EnergyVAD": "voicekit.testing.scripted",
    "FakeASR": "voicekit.testing.fakes",
    "FakeTTS": "voicekit.testing.fakes",
    "ScriptedSource": "voicekit.testing.scripted",
    "Silence": "voicekit.testing.scripted",
    "Speech": "voicekit.testing.scripted",
    "Timeline": "voicekit.testing.timeline",
    "collect": "voicekit.testing.timeline",
}

if TYPE_CHECKING:
    from voicekit.testing.fakes import FakeASR as FakeASR
    from voicekit.testing.fakes import FakeTTS as FakeTTS
    from voicekit.testing.scripted import EnergyVAD as EnergyVAD
    from voicekit.testing.scripted import ScriptedSource as ScriptedSource
    from voicekit.testing.scripted import Silence as Silence
    from voicekit.testing.scripted import Speech as Speech
    from voicekit.testing.timeline import Timeline as Timeline
    from voicekit.testing.timeline import collect as collect
else:  # imported on first use, so importing the package stays cheap (voicekit._lazy)
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
