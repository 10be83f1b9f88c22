"""Device selection, rate negotiation and glitch arithmetic of voicekit.audio.device (no device needed)."""

from __future__ import annotations

import sys

import pytest

from voicekit.audio.device import (
    FALLBACK_RATES,
    DeviceInfo,
    DeviceNotFoundError,
    MicrophoneSource,
    OverrunDetector,
    SpeakerSink,
    UnderrunDetector,
    channel_candidates,
    list_devices,
    rate_candidates,
    select_device,
)
from voicekit.errors import AudioError, ConfigError

DEVICES = [
    DeviceInfo(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "ALSA", 2, 2, 48000),
    DeviceInfo(1, "HDA Intel PCH: HDMI 0 (hw:0,3)", "ALSA", 0, 8, 44100),
    DeviceInfo(2, "USB Headset: Audio (hw:1,0)", "ALSA", 1, 2, 44100),
    DeviceInfo(3, "pulse", "ALSA", 32, 32, 44100),
    DeviceInfo(4, "default", "ALSA", 32, 32, 44100, default_input=True, default_output=True),
]


def test_default_device_is_the_systems_default() -> None:
    assert select_device(DEVICES, None, "input").index == 4
    assert select_device(DEVICES, "  ", "output").index == 4


def test_without_a_default_the_first_usable_device_is_taken() -> None:
    no_default = [d for d in DEVICES if d.index != 4]
    assert select_device(no_default, None, "input").index == 0
    assert select_device(no_default[1:], None, "input").index == 2  # HDMI cannot record


def test_select_by_index_int_or_digits() -> None:
    assert select_device(DEVICES, 2, "input").name.startswith("USB Headset")
    assert select_device(DEVICES, " 1 ", "output").index == 1


def test_select_by_index_that_cannot_record() -> None:
    with pytest.raises(DeviceNotFoundError, match=r"audio device 1 .*HDMI.* has no input channels"):
        select_device(DEVICES, 1, "input")


def test_select_unknown_index() -> None:
    with pytest.raises(DeviceNotFoundError, match=r"no audio device with index 9 .*voicekit devices"):
        select_device(DEVICES, 9, "output")


def test_select_by_name_substring_case_insensitive() -> None:
    assert select_device(DEVICES, "usb headset", "input").index == 2
    assert select_device(DEVICES, "HDMI", "output").index == 1


def test_exact_name_wins_over_partial_matches() -> None:
    devices = [*DEVICES, DeviceInfo(5, "pulse monitor", "ALSA", 2, 0, 48000)]
    assert select_device(devices, "Pulse", "input").index == 3


def test_ambiguous_name_lists_candidates() -> None:
    with pytest.raises(DeviceNotFoundError, match=r"matches several devices \(0: .*1: .*give the index"):
        select_device(DEVICES, "HDA Intel", "output")


def test_unknown_name_lists_what_exists() -> None:
    with pytest.raises(DeviceNotFoundError, match=r"no input audio device matches 'blue yeti' \(available: "
                                                 r"'HDA Intel PCH.*'USB Headset"):
        select_device(DEVICES, "blue yeti", "input")


def test_no_input_device_at_all() -> None:
    speakers_only = [DEVICES[1]]
    with pytest.raises(AudioError) as info:
        select_device(speakers_only, None, "input")
    assert str(info.value) == ("no input audio device found; on a server use --input FILE, "
                               "or set up ALSA/PulseAudio")
    with pytest.raises(AudioError, match=r"no output audio device found; on a server use --output FILE\.wav"):
        select_device([], "anything", "output")


def test_bool_is_not_a_device() -> None:
    with pytest.raises(ConfigError):
        select_device(DEVICES, True, "input")


def test_rate_candidates_requested_then_default_then_fallbacks() -> None:
    assert rate_candidates(16000, 48000) == [16000, 48000, 44100]
    assert rate_candidates(22050, 44100) == [22050, 44100, 48000, 16000]
    assert rate_candidates(48000, 48000) == [48000, 44100, 16000]
    assert rate_candidates(16000, 44100, forced=32000) == [32000]
    assert set(FALLBACK_RATES) <= set(rate_candidates(8000, 8000))


def test_channel_candidates() -> None:
    assert channel_candidates(1, 2) == [1, 2]
    assert channel_candidates(2, 1) == [1]  # a mono microphone: open mono, up-mix in software
    assert channel_candidates(1, 8) == [1, 2, 8]
    assert channel_candidates(2, 0) == [1]


def test_overrun_detector_steady_reads_are_not_overruns() -> None:
    d = OverrunDetector(16000, tolerance=0.2)
    t = 100.0
    for n in range(1, 500):  # 20 ms reads with jitter up to 50 ms late
        t = 100.0 + n * 0.02 + (0.05 if n % 7 == 0 else 0.0)
        assert d.update(t, n * 320) == 0.0
    assert d.overruns == 0


def test_overrun_detector_counts_a_stall_once() -> None:
    d = OverrunDetector(16000, tolerance=0.2)
    d.update(0.02, 320)
    d.update(0.04, 640)
    lost = d.update(1.06, 960)  # nobody read for a second: 1 s of audio is gone
    assert lost == pytest.approx(1.0, abs=1e-6)
    assert d.overruns == 1
    for n in range(4, 50):  # reading resumes normally
        d.update(1.06 + (n - 3) * 0.02, n * 320)
    assert d.overruns == 1
    assert d.lost_seconds == pytest.approx(1.0, abs=1e-6)


def test_overrun_detector_faster_than_real_time_is_fine() -> None:
    d = OverrunDetector(16000, tolerance=0.2)
    for n in range(1, 1000):  # a file-backed device: a second of audio per millisecond
        d.update(n * 0.001, n * 16000)
    assert d.overruns == 0


def test_underrun_detector_gap_mid_playback() -> None:
    d = UnderrunDetector(tolerance=0.02, idle=0.5)
    t = 0.0
    for _ in range(10):  # 20 ms chunks, written as fast as the device takes them
        s = d.before_write(t)
        d.after_write(t, t, 0.02, s)
        t += 0.02
    t += 0.25  # the writer was late by a quarter second: the speaker ran dry
    s = d.before_write(t)
    assert s == pytest.approx(0.25)
    assert d.after_write(t, t, 0.02, s)
    assert d.underruns == 1
    t += 2.0  # a long pause (end of a reply) is silence, not an underrun
    s = d.before_write(t)
    assert not d.after_write(t, t, 0.02, s)
    assert d.underruns == 1


def test_underrun_detector_writes_ahead_of_the_device_are_fine() -> None:
    d = UnderrunDetector(tolerance=0.02, idle=0.5)
    for n in range(100):  # a buffered device takes 20 ms chunks faster than it plays them at first
        t = n * 0.005
        d.after_write(t, t, 0.02, d.before_write(t))
    assert d.underruns == 0
    assert d.before_write(0.5) == 0.0  # 2 s written by t=0.5 s: far from starved


@pytest.mark.parametrize("make", [lambda: MicrophoneSource(), lambda: SpeakerSink(22050), list_devices])
def test_missing_pyaudio_names_the_fix(monkeypatch: pytest.MonkeyPatch, make: object) -> None:
    monkeypatch.setitem(sys.modules, "pyaudio", None)  # "import pyaudio" now raises ImportError
    with pytest.raises(AudioError, match=r"PyAudio is not installed .*install voicekit\[audio\] and apt "
                                         r"portaudio19-dev"):
        make()  # type: ignore[operator]


@pytest.mark.parametrize("kwargs", [{"sample_rate": 0}, {"chunk_ms": -5}, {"channels": True},
                                    {"device": 1.5}, {"device_rate": "48000"}])
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        MicrophoneSource(**kwargs)  # type: ignore[arg-type]
    if "sample_rate" not in kwargs:
        with pytest.raises(ConfigError):
            SpeakerSink(16000, **kwargs)  # type: ignore[arg-type]


def test_devices_command_is_registered() -> None:
    from voicekit.cli.main import build_parser

    args = build_parser().parse_args(["devices", "--input", "--json"])
    assert args.input and args.json and not args.output
    assert callable(args.func)
