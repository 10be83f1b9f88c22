"""Self-hearing: in a simulated room the speaker's sound reaches the microphone. Without a guard
the assistant interrupts itself; the WebRTC echo canceller and the playback gate prevent it,
while the user can still barge in."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from voicekit import events as ev
from voicekit.audio.echo import PlaybackGate, WebRTCEchoCanceller, make_echo_guard
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError
from voicekit.handlers import Assistant, Turn
from voicekit.session import Session, SessionConfig, VADInterruption
from voicekit.testing import EnergyVAD, FakeASR, FakeTTS, Silence, Speech, collect
from voicekit.testing.room import Room, RoomMicrophone
from voicekit.vad.endpointer import EndpointerConfig

EP = EndpointerConfig(pre_roll_ms=200, start_ms=60, start_window_ms=100, end_silence_ms=600)


def story_assistant() -> Assistant:
    a = Assistant("story")

    @a.intent("tell me a story")
    async def story(turn: Turn) -> str:
        return " ".join(["once upon a time there was a robot"] * 3)  # 24 words, 7.2 s

    return a


def room_session(script: list[object], texts: list[str], echo: object | None) -> tuple[Session, Room]:
    room = Room(script, echo_gain=0.6, delay_ms=40)  # type: ignore[arg-type]
    session = Session(RoomMicrophone(room), asr=FakeASR(texts), vad=EnergyVAD(frame_ms=20),
                      assistant=story_assistant(), tts=FakeTTS(seconds_per_word=0.3), sink=room,
                      interruption=VADInterruption(min_speech_ms=300),
                      config=SessionConfig(endpointer=EP, realtime=True, echo=echo))  # type: ignore[arg-type]
    return session, room


QUIET_USER = [Silence(1.0), Speech(1.5), Silence(10.0)]


async def test_without_a_guard_the_assistant_interrupts_itself(autojump_clock: trio.testing.MockClock) -> None:
    session, _ = room_session(QUIET_USER, ["tell me a story", "", "", ""], echo=None)
    tl = await collect(session)
    assert tl.of(ev.ReplyInterrupted), "the echo of the reply should have triggered barge-in"


@pytest.mark.parametrize("guard", ["aec", "gate"])
async def test_guard_prevents_self_interruption(autojump_clock: trio.testing.MockClock, guard: str) -> None:
    session, _ = room_session(QUIET_USER, ["tell me a story", "", "", ""], echo=make_echo_guard(guard))
    tl = await collect(session)
    assert not tl.of(ev.ReplyInterrupted)
    assert tl.first(ev.ReplyFinished).samples_played == round(24 * 0.3 * 16000)
    assert len(tl.of(ev.SpeechStarted)) == 1  # only the user's own utterance


@pytest.mark.parametrize("guard", ["aec", "gate"])
async def test_user_can_still_barge_in(autojump_clock: trio.testing.MockClock, guard: str) -> None:
    script = [Silence(1.0), Speech(1.5), Silence(3.0), Speech(1.0, amplitude=0.5), Silence(6.0)]
    session, _ = room_session(script, ["tell me a story", "stop"], echo=make_echo_guard(guard))
    tl = await collect(session)
    cut = tl.first(ev.ReplyInterrupted)
    assert cut.t == pytest.approx(5.5 + 0.3, abs=0.06)  # the user's speech starts at 5.5 s


def test_echo_canceller_attenuates_echo_of_real_audio() -> None:
    rng = np.random.default_rng(3)
    far = (rng.standard_normal(16000 * 4) * 3000).astype(np.float32)
    echo = np.zeros_like(far)
    echo[640:] = far[:-640] * 0.5  # 40 ms later, half as loud
    aec = WebRTCEchoCanceller(delay_ms=40)
    out = []
    for i in range(0, len(far), 320):
        aec.reference(AudioFrame.from_array(far[i : i + 320].astype(np.int16), 16000))
        mic = AudioFrame.from_array(echo[i : i + 320].astype(np.int16), 16000, timestamp=i / 16000)
        done = aec.process(mic)
        assert done.samples == mic.samples and done.timestamp == mic.timestamp
        out.append(done.to_array()[:, 0].astype(np.float32))
    residual = np.concatenate(out)[16000 * 2 :]
    erle = 10 * np.log10(np.mean(echo[16000 * 2 :] ** 2) / max(np.mean(residual**2), 1e-9))
    print(f"echo return loss enhancement: {erle:.1f} dB")
    assert erle > 15, f"echo return loss enhancement only {erle:.1f} dB"


def test_gate_and_errors() -> None:
    gate = PlaybackGate(coupling=0.5, margin_db=6, hold_ms=0, delay_ms=0)
    loud = AudioFrame.from_array(np.full(320, 4000, np.int16), 16000)
    gate.reference(loud)
    heard = gate.process(AudioFrame.from_array(np.full(320, 1000, np.int16), 16000))
    assert not heard.to_array().any()  # quieter than the expected echo: silenced
    gate.reference(loud)
    heard = gate.process(AudioFrame.from_array(np.full(320, 9000, np.int16), 16000))
    assert heard.to_array().any()  # clearly louder: the user speaking over the reply
    with pytest.raises(ConfigError):
        make_echo_guard("cancel-everything")
    with pytest.raises(ConfigError):
        gate.process(AudioFrame(bytes(640), 8000))
