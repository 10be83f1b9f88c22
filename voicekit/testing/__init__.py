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

from voicekit.testing.fakes import FakeASR, FakeTTS
from voicekit.testing.scripted import EnergyVAD, ScriptedSource, Silence, Speech
from voicekit.testing.timeline import Timeline, collect

__all__ = ["EnergyVAD", "FakeASR", "FakeTTS", "ScriptedSource", "Silence", "Speech", "Timeline", "collect"]
