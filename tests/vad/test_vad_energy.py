"""``EnergyVAD`` lives in ``voicekit.vad`` (product code such as the DashScope emulator uses it);
``voicekit.testing`` still offers it under its old names."""

from __future__ import annotations

import numpy as np

from voicekit.vad import EnergyVAD


def test_energy_vad_is_a_vad_and_the_testing_kit_re_exports_it() -> None:
    import voicekit.testing
    import voicekit.testing.scripted

    assert voicekit.testing.EnergyVAD is EnergyVAD
    assert voicekit.testing.scripted.EnergyVAD is EnergyVAD
    assert EnergyVAD.__module__ == "voicekit.vad.energy"


def test_energy_vad_calls_loud_frames_speech() -> None:
    vad = EnergyVAD(sample_rate=16000, frame_ms=20, threshold=0.02)
    n = 320
    quiet = np.zeros(n, np.int16).tobytes()
    loud = (np.sin(np.arange(n) / 3) * 8000).astype(np.int16).tobytes()
    barely = np.full(n, int(0.019 * 32768), np.int16).tobytes()
    assert [vad.is_speech(quiet), vad.is_speech(loud), vad.is_speech(barely), vad.is_speech(b"")] == \
        [False, True, False, False]
